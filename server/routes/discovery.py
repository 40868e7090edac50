"""DeviceCapability and Time: the two resources every client reads first."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gridshare.server.routes.common import read_unit, xml
from gridshare.server.timeinfo import time_fields
from gridshare.server.wire import encode
from gridshare.store.queries.metering import count_mups
from gridshare.store.queries.sites import count_sites, site_by_lfdi

router = APIRouter()


@router.api_route("/dcap", methods=["GET", "HEAD"])
def device_capability(request: Request) -> Response:
    with read_unit(request) as u:
        self_site = None if u.scope.is_aggregator else site_by_lfdi(u.session, u.scope, u.scope.lfdi)
        edev_count = count_sites(u.session, u.scope) + (1 if u.scope.is_aggregator else 0)
        return xml(
            encode.device_capability(
                u.poll_rate("dcap"),
                self_site.id if self_site else None,
                edev_count,
                count_mups(u.session, u.scope),
            )
        )


@router.api_route("/tm", methods=["GET", "HEAD"])
def time_resource(request: Request) -> Response:
    with read_unit(request) as u:
        now_s = u.now_s()
        fields = time_fields(now_s, u.ctx.settings.timezone)
        return xml(
            encode.time_resource(
                now_s,
                fields.tz_offset_s,
                fields.dst_offset_s,
                fields.dst_start_s,
                fields.dst_end_s,
                fields.local_time_s,
                u.poll_rate("dcap"),
            )
        )
