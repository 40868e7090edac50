"""DeviceCapability, Time and SelfDevice: what every client reads first, and who this server is."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response

from gridshare.server.shared.request_unit import read_unit, xml
from gridshare.server.shared.timeinfo import time_fields
from gridshare.server.wire import encode, hrefs
from gridshare.store.queries.metering import count_mups
from gridshare.store.queries.sites import count_sites

router = APIRouter()


@router.api_route(hrefs.DCAP_T.path, methods=["GET", "HEAD"])
def device_capability(request: Request) -> Response:
    with read_unit(request) as u:
        u.depends_on_visible_sites()  # the MirrorUsagePoint count changes with device reports
        edev_count = count_sites(u.session, u.scope) + (1 if u.scope.is_aggregator else 0)
        response = xml(
            encode.device_capability(
                u.poll_rate("dcap"),
                u.ctx.self_identity is not None,
                edev_count,
                count_mups(u.session, u.scope),
            )
        )
        u.cacheable()
        return response


@router.api_route(hrefs.TIME_T.path, methods=["GET", "HEAD"])
def time_resource(request: Request) -> Response:
    with read_unit(request) as u:
        now_s = u.now_s()
        fields = time_fields(now_s, u.ctx.settings.timezone)
        # The same body for every admitted client, true for the second it names.
        u.cacheable(valid_from_s=now_s, valid_until_s=now_s + 1, shared=True)
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


@router.api_route(hrefs.SELF_DEVICE_T.path, methods=["GET", "HEAD"])
def self_device(request: Request) -> Response:
    with read_unit(request) as u:
        me = u.ctx.self_identity
        if me is None:
            raise HTTPException(404, "this server has no certificate of its own to describe")
        return xml(encode.self_device(me, u.poll_rate("dcap")))


@router.api_route(hrefs.SELF_DEVICE_INFO_T.path, methods=["GET", "HEAD"])
def self_device_information(request: Request) -> Response:
    with read_unit(request) as u:
        me = u.ctx.self_identity
        if me is None:
            raise HTTPException(404, "this server has no certificate of its own to describe")
        return xml(encode.device_information(me, u.ctx.settings.pen, u.poll_rate("dcap")))
