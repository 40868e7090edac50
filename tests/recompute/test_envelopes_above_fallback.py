"""No published envelope is below the device's own DefaultDERControl.

A device that loses contact drops to its default while its neighbours keep polling their envelopes,
which were shared on the assumption that it sits at its envelope. An envelope below the default would
let the two together exceed what they share. Forecast-aware envelopes cap a site at its forecast, far
below its default at night or without load: the engine must still keep every envelope at the default
or above (envelopes/minimum.py, docs/fallback.md). What devices read is that envelope rounded down to
the site's publication step (1 % of a large site's size), so it is at least the default rounded down
to the same step: rounding only ever makes the device itself more cautious.
"""

from __future__ import annotations

import math

from gridshare.envelopes.resolution import resolutions_w
from gridshare.grid.examples import demo_feeder_path
from gridshare.grid.netfile import load_network_file
from gridshare.process.demo import seed_demo
from gridshare.recompute.scheduler import Recomputer
from tests.support.engine import default_control, published_limits_w, site_row
from tests.support.servers import RunningServer


def test_forecast_aware_envelopes_never_go_below_the_default(server: RunningServer) -> None:
    settings = server.ctx.settings
    settings.envelope_horizon_s = 12 * 3600  # through the evening: PV forecasts fall to nothing
    settings.forecast_aware_envelopes = True
    seed_demo(server.ctx, server.pki)
    assert Recomputer(server.ctx).run_once("test").status == "published"
    sites = load_network_file(demo_feeder_path()).sites
    step_w = resolutions_w(sites, settings.envelope_resolution_w, settings.envelope_resolution_pct)
    by_nmi = {s.nmi: s.id for s in sites}
    raised = 0
    for device in server.pki.devices:
        step = step_w[by_nmi[site_row(server, device.name).nmi]]
        default = default_control(server, device.name)
        assert default["export"] is not None and default["import"] is not None
        least_export_w = math.floor(float(default["export"]) / step) * step
        least_import_w = math.floor(float(default["import"]) / step) * step
        limits = published_limits_w(server, device.name)
        assert limits, device.name
        for export_w, import_w in limits:
            assert import_w is not None, device.name
            assert export_w >= least_export_w, (device.name, export_w, default, step)
            assert import_w >= least_import_w, (device.name, import_w, default, step)
        raised += sum(1 for _, import_w in limits if import_w == least_import_w)
    assert raised > 0, "no envelope sits at its default: the forecast caps never reached it"
