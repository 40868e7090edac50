"""A subscribed resource rendered exactly as its subscriber would GET it, for comparison and for sending.

These mirror the GET handlers in server/routes (same queries, same encoders, same scope) with the
subscription's `limit` as the page size. One deliberate difference: the aggregator's own EndDevice
(/edev/0) carries the certificate's registration time as changedTime instead of "now", so an
EndDeviceList does not look changed every time it is rendered.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import HTTPException
from lxml import etree

from gridshare.server.shared import metering_views
from gridshare.server.shared.control_status import ACTIVE, derive_states
from gridshare.server.shared.request_unit import Unit
from gridshare.server.subscriptions.targets import Kind, Target
from gridshare.server.wire import encode, hrefs
from gridshare.store.models import Site
from gridshare.store.queries import programs as q
from gridshare.store.queries.sites import get_der, list_sites


def render(u: Unit, target: Target, limit: int, aggregator_since_s: int) -> etree._Element | None:
    """The representation, or None if it does not exist (or is not visible to this subscriber) now.

    `limit` is the number of list items (0 gives an empty page with the right `all`); `aggregator_since_s`
    is the changedTime of the aggregator's own EndDevice.
    """
    try:
        return _RENDERERS[target.kind](u, target, limit, aggregator_since_s)
    except HTTPException:
        return None


def _end_device_list(u: Unit, _t: Target, limit: int, since_s: int) -> etree._Element:
    own = Site(
        id=hrefs.AGGREGATOR_EDEV_ID,
        lfdi=u.scope.lfdi,
        sfdi=u.scope.sfdi,
        device_category=0,
        enabled=True,
        changed_s=since_s,
        created_s=since_s,
        registration_pin=0,
    )
    total, sites = list_sites(u.session, u.scope, start=0, limit=max(limit - 1, 0), changed_after_s=None)
    items = ([encode.end_device(None, own, virtual=True)] if limit > 0 else []) + [
        encode.end_device(None, site) for site in sites
    ]
    el = encode.list_root(
        "EndDeviceList", hrefs.EDEV_LIST, total + 1, len(items), u.poll_rate("edev"), encode.SUBSCRIBABLE
    )
    return encode.append_all(el, items)


def _fsa_list(u: Unit, t: Target, limit: int, _since_s: int) -> etree._Element:
    u.site(t.site_id)
    total, fsas = q.list_fsas(u.session, start=0, limit=limit)
    el = encode.list_root(
        "FunctionSetAssignmentsList",
        hrefs.fsa_list(t.site_id),
        total,
        len(fsas),
        u.poll_rate("fsa"),
        encode.SUBSCRIBABLE,
    )
    for f in fsas:
        encode.fsa(el, t.site_id, f, q.count_programs(u.session, f.id))
    return el


def _program_list(u: Unit, t: Target, limit: int, _since_s: int) -> etree._Element | None:
    site = u.site(t.site_id)
    if q.get_fsa(u.session, t.fsa_id) is None:
        return None
    total, programs = q.list_programs(u.session, t.fsa_id, start=0, limit=limit)
    el = encode.list_root(
        "DERProgramList",
        hrefs.derp_list(t.site_id, t.fsa_id),
        total,
        len(programs),
        u.poll_rate("derp"),
        encode.SUBSCRIBABLE,
    )
    now_s = u.now_s()
    for program in programs:
        live = derive_states(
            q.program_controls(u.session, site, program.id, now_s, u.ctx.settings.pen), now_s
        )
        encode.der_program(el, t.site_id, program, len(live), q.count_curves(u.session, program.id))
    return el


def _control_list(u: Unit, t: Target, limit: int, _since_s: int) -> etree._Element | None:
    site = u.site(t.site_id)
    if q.get_program(u.session, t.program_id) is None:
        return None
    now_s = u.ctx.clock.now()
    states = derive_states(
        q.program_controls(u.session, site, t.program_id, now_s, u.ctx.settings.pen), now_s
    )
    if t.kind is Kind.active_control_list:
        states = [s for s in states if s.status == ACTIVE]
        href = hrefs.active_derc_list(t.site_id, t.program_id)
    else:
        href = hrefs.derc_list(t.site_id, t.program_id)
    return encode.der_control_list(href, states[:limit], len(states), t.program_id)


def _default_control(u: Unit, t: Target, _limit: int, _since_s: int) -> etree._Element | None:
    site = u.site(t.site_id)
    if q.get_program(u.session, t.program_id) is None:
        return None
    d = q.default_control(u.session, site, t.program_id)
    return None if d is None else encode.default_der_control(t.site_id, d)


def _der_document(u: Unit, t: Target, _limit: int, _since_s: int) -> etree._Element | None:
    d = get_der(u.session, u.site(t.site_id), t.der_index)
    column = {"derg": "settings", "ders": "status", "dera": "availability"}[t.doc]
    stored = None if d is None else getattr(d, f"{column}_xml")
    return (
        None
        if stored is None
        else encode.stored_document(stored, hrefs.der_doc(t.site_id, t.der_index, t.doc))
    )


def _usage_point_list(u: Unit, _t: Target, limit: int, _since_s: int) -> etree._Element:
    return metering_views.usage_point_list(u, 0, limit)


def _meter_reading_list(u: Unit, t: Target, limit: int, _since_s: int) -> etree._Element:
    return metering_views.meter_reading_list(u, t.mup_id, 0, limit)


def _reading_set_list(u: Unit, t: Target, limit: int, _since_s: int) -> etree._Element:
    return metering_views.reading_set_list(u, t.mup_id, t.mmr_id, 0, limit, None)


def _reading_list(u: Unit, t: Target, limit: int, _since_s: int) -> etree._Element:
    return metering_views.reading_list(u, t.mup_id, t.mmr_id, t.day_s, 0, limit, None)


def _latest_reading(u: Unit, t: Target, _limit: int, _since_s: int) -> etree._Element:
    return metering_views.latest_reading(u, t.mup_id, t.mmr_id)


_RENDERERS: dict[Kind, Callable[[Unit, Target, int, int], etree._Element | None]] = {
    Kind.end_device_list: _end_device_list,
    Kind.fsa_list: _fsa_list,
    Kind.program_list: _program_list,
    Kind.control_list: _control_list,
    Kind.active_control_list: _control_list,
    Kind.default_control: _default_control,
    Kind.der_document: _der_document,
    Kind.usage_point_list: _usage_point_list,
    Kind.meter_reading_list: _meter_reading_list,
    Kind.reading_set_list: _reading_set_list,
    Kind.reading_list: _reading_list,
    Kind.latest_reading: _latest_reading,
}
