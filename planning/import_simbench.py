"""SimBench benchmark grids with their yearly 15-minute profiles, offline from the `simbench` wheel.

SimBench (simbench.de) ships each grid with a year (2016, 35,136 quarter-hours) of load and
generation profiles, normalised per element and scaled by its `p_mw`. The grid goes through the
pandapower importer; the profiles become a ProfileTable whose columns are each site's own
generation shape (`pv:<site>`, a share of its installed power) and each node's background load
and generation (`load:node:<name>`, `pv:node:<name>`, shares of the node's peak). SimBench labels
its 366 x 96 uniform quarter-hours in German wall-clock time (CET/CEST: the labels skip 02:00-03:00 on
27 March and repeat it on 30 October), so the table starts at 2016-01-01 00:00 CET and steps 15
minutes in real time; the network's zone is Europe/Berlin.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from gridshare.planning.errors import MissingDependency, NetworkInputError
from gridshare.planning.import_pandapower import (
    DEFAULT_POWER_FACTOR,
    ImportedNetwork,
    SiteChoice,
    import_pandapower,
)
from gridshare.planning.profiles import ProfileTable, _naive_local_to_utc

SIMBENCH_TZ = "Europe/Berlin"
SIMBENCH_LOCATION = (51.0, 10.0)  # central Germany: only the built-in PV shape would use it


def require_simbench() -> Any:
    import logging

    logging.getLogger("pandapower").setLevel(logging.WARNING)  # it narrates optional imports at INFO
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import simbench
    except ImportError as exc:
        raise MissingDependency(
            "SimBench grids need the simbench package: pip install 'gridshare[planning]'"
        ) from exc
    return simbench


def import_simbench(
    code: str, *, sites: SiteChoice = "sgen", power_factor: float = DEFAULT_POWER_FACTOR
) -> tuple[ImportedNetwork, ProfileTable]:
    """The grid `code` (e.g. `1-MV-rural--0-sw`) and its year of profiles."""
    sb = require_simbench()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net = sb.get_simbench_net(code)
    except Exception as exc:  # simbench raises ValueError/KeyError/IndexError for unknown codes
        raise NetworkInputError(f"is not a SimBench grid code ({exc})", f"simbench:{code}") from None
    imported = import_pandapower(
        net,
        name=code,
        source=f"simbench:{code}",
        sites=sites,
        power_factor=power_factor,
        timezone=SIMBENCH_TZ,
        latitude_deg=SIMBENCH_LOCATION[0],
        longitude_deg=SIMBENCH_LOCATION[1],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        absolute = sb.get_absolute_values(net, profiles_instead_of_study_cases=True)
    table = simbench_profiles(imported, net, absolute)
    return imported, table


def _times(net: Any) -> np.ndarray:
    import pandas as pd

    for key in ("load", "renewables", "powerplants"):
        frame = net.profiles.get(key)
        if frame is not None and len(frame) and "time" in frame:
            first = pd.to_datetime(frame["time"].iloc[0], format="%d.%m.%Y %H:%M")
            naive = np.array([first.to_datetime64().astype("datetime64[s]").astype(np.int64)])
            start = int(_naive_local_to_utc(naive, SIMBENCH_TZ)[0])
            step = 900  # the labels are wall-clock times across DST; the steps are uniform
            return start + step * np.arange(len(frame), dtype=np.int64)
    raise NetworkInputError("has no profiles", "simbench", "profiles")


def simbench_profiles(imported: ImportedNetwork, net: Any, absolute: dict[Any, Any]) -> ProfileTable:
    """Shares of each site's installed power and each node's background peak, per quarter-hour."""
    epoch = _times(net)
    n = len(epoch)
    load_mw = absolute[("load", "p_mw")]
    sgen_mw = absolute[("sgen", "p_mw")]
    shapes: dict[str, np.ndarray] = {}
    sites = {s["id"]: s for s in imported.doc["sites"]}
    for site_id, element in imported.site_elements.items():
        series = np.clip(sgen_mw[element].to_numpy(dtype=float)[:n] * 1000.0, 0.0, None)
        shapes[f"pv:{site_id}"] = _share(series, sites[site_id]["forecast"]["pv_kw"])
    nodes = {node["name"]: node for node in imported.doc["network"]["nodes"]}
    for name, loads in imported.background_loads.items():
        series = np.clip(load_mw[loads].to_numpy(dtype=float).sum(axis=1)[:n] * 1000.0, 0.0, None)
        peak = max(float(series.max(initial=0.0)), float(nodes[name].get("load_kw", 0.0)))
        nodes[name]["load_kw"] = round(peak, 3)
        shapes[f"load:node:{name}"] = _share(series, peak)
    for name, gens in imported.background_sgens.items():
        series = np.clip(sgen_mw[gens].to_numpy(dtype=float).sum(axis=1)[:n] * 1000.0, 0.0, None)
        peak = max(float(series.max(initial=0.0)), float(nodes[name].get("pv_kw", 0.0)))
        nodes[name]["pv_kw"] = round(peak, 3)
        shapes[f"pv:node:{name}"] = _share(series, peak)
    step = int(epoch[1] - epoch[0])
    return ProfileTable(epoch, step, shapes, f"SimBench {imported.doc['name']} profiles (2016)")


def _share(series_kw: np.ndarray, peak_kw: float) -> np.ndarray:
    return series_kw / peak_kw if peak_kw > 0 else np.zeros_like(series_kw)
