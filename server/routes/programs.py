"""FunctionSetAssignments, DERPrograms and what hangs off them: controls, defaults, curves."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response

from gridshare.server.shared.control_status import ACTIVE, ControlState, derive_states, next_change_s
from gridshare.server.shared.paging import Page, page
from gridshare.server.shared.request_unit import Id, Unit, read_unit, xml
from gridshare.server.wire import encode, hrefs
from gridshare.server.wire.xmlio import to_bytes
from gridshare.store.models import DerProgram, Site
from gridshare.store.queries import programs as q

router = APIRouter()


def _states(u: Unit, site: Site, program_id: int, now_s: float) -> tuple[list[ControlState], float]:
    """Every control of the site in the program (operator's and envelope blocks) with its status now,
    and when the next status changes (what a body showing them is cached until)."""
    u.depends_on_envelope(site.id)
    controls = q.program_controls(u.session, site, program_id, now_s, u.ctx.settings.pen)
    return derive_states(controls, now_s), next_change_s(controls, now_s)


def _program(u: Unit, program_id: int) -> DerProgram:
    program = q.get_program(u.session, program_id)
    if program is None:
        raise HTTPException(404, "no such DERProgram")
    return program


@router.api_route(hrefs.FSA_LIST_T.path, methods=["GET", "HEAD"])
def fsa_list(request: Request, site_id: Id, p: Page = Depends(page)) -> Response:
    with read_unit(request) as u:
        u.cacheable()
        u.site(site_id)
        total, fsas = q.list_fsas(u.session, start=p.start, limit=p.limit)
        el = encode.list_root(
            "FunctionSetAssignmentsList",
            hrefs.fsa_list(site_id),
            total,
            len(fsas),
            u.poll_rate("fsa"),
            subscribable=encode.SUBSCRIBABLE,
        )
        for f in fsas:
            encode.fsa(el, site_id, f, q.count_programs(u.session, f.id))
        return xml(el)


@router.api_route(hrefs.FSA_T.path, methods=["GET", "HEAD"])
def fsa(request: Request, site_id: Id, fsa_id: Id) -> Response:
    with read_unit(request) as u:
        u.cacheable()
        u.site(site_id)
        f = q.get_fsa(u.session, fsa_id)
        if f is None:
            raise HTTPException(404, "no such FunctionSetAssignments")
        return xml(encode.fsa(None, site_id, f, q.count_programs(u.session, f.id)))


@router.api_route(hrefs.DERP_LIST_T.path, methods=["GET", "HEAD"])
def program_list(request: Request, site_id: Id, fsa_id: Id, p: Page = Depends(page)) -> Response:
    with read_unit(request) as u:
        site = u.site(site_id)
        if q.get_fsa(u.session, fsa_id) is None:
            raise HTTPException(404, "no such FunctionSetAssignments")
        total, programs = q.list_programs(u.session, fsa_id, start=p.start, limit=p.limit)
        el = encode.list_root(
            "DERProgramList",
            hrefs.derp_list(site_id, fsa_id),
            total,
            len(programs),
            u.poll_rate("derp"),
            subscribable=encode.SUBSCRIBABLE,
        )
        now_s = u.now_s()
        valid_until_s = float("inf")
        for program in programs:
            live, until_s = _states(u, site, program.id, now_s)
            valid_until_s = min(valid_until_s, until_s)
            encode.der_program(el, site_id, program, len(live), q.count_curves(u.session, program.id))
        u.cacheable(valid_until_s=valid_until_s)  # a control starting or ending changes the counts
        return xml(el)


@router.api_route(hrefs.DERP_T.path, methods=["GET", "HEAD"])
def program(request: Request, site_id: Id, program_id: Id) -> Response:
    with read_unit(request) as u:
        site = u.site(site_id)
        prog = _program(u, program_id)
        now_s = u.now_s()
        live, valid_until_s = _states(u, site, prog.id, now_s)
        u.cacheable(valid_until_s=valid_until_s)
        return xml(encode.der_program(None, site_id, prog, len(live), q.count_curves(u.session, prog.id)))


@router.api_route(hrefs.DERC_LIST_T.path, methods=["GET", "HEAD"])
def control_list(request: Request, site_id: Id, program_id: Id, p: Page = Depends(page)) -> Response:
    """The hot path: every device polls it. Cached by the fast path until something changes; a
    status transition is re-spliced from the cached fragments, without the database."""
    with read_unit(request) as u:
        now_s = u.ctx.clock.now()
        site = u.site(site_id)
        _program(u, program_id)
        u.depends_on_envelope(site.id)
        controls = q.program_controls(u.session, site, program_id, now_s, u.ctx.settings.pen)
        states = derive_states(controls, now_s)
        href = hrefs.derc_list(site_id, program_id)
        built = _SplicedList.build(href, states, program_id, p)
        if built is not None:
            spliced, body = built
            u.cacheable(valid_until_s=next_change_s(controls, now_s), refresh=spliced.refresh)
            return xml(body)
        u.cacheable(valid_until_s=next_change_s(controls, now_s))
        return xml(_control_list_body(href, states, program_id, p))


def _control_list_body(href: str, states: list[ControlState], program_id: int, p: Page) -> bytes:
    if p.after_s is not None:
        states = [s for s in states if s.control.start_s >= p.after_s]
    page_states = states[p.start : p.start + p.limit]
    return to_bytes(encode.der_control_list(href, page_states, len(states), program_id))


@dataclass(frozen=True, slots=True)
class _Slot:
    """One control as the splicer keeps it: its schedule, and its XML around the EventStatus."""

    id: int | str
    mrid: str
    program_id: int
    site_id: int
    creation_s: int
    start_s: int
    duration_s: int
    cancelled_s: int | None
    cancel_randomized: bool
    head: bytes
    tail: bytes


_LIST_END = b"</DERControlList>"


def _event_status(state: ControlState) -> bytes:
    """EventStatus exactly as encode.der_control writes it (`_SplicedList.build` checks they agree)."""
    superseded = b"true" if state.potentially_superseded else b"false"
    return (
        b"<EventStatus><currentStatus>%d</currentStatus><dateTime>%d</dateTime><potentiallySuperseded>%s"
        b"</potentiallySuperseded></EventStatus>" % (state.status, state.status_time_s, superseded)
    )


@dataclass(frozen=True)
class _SplicedList:
    """A DERControlList re-rendered for a later time from per-control XML, without the database.

    Every control's XML is fixed but for its EventStatus, so at a status transition (all devices at
    once, on envelope block boundaries) the new body is the same fragments joined around new
    statuses: tens of microseconds instead of queries and a full render. `build` checks its splice
    reproduces the encoder's bytes exactly and declines (None) otherwise.
    """

    href: str
    program_id: int
    page: Page
    slots: tuple[_Slot, ...]

    @classmethod
    def build(
        cls, href: str, states: list[ControlState], program_id: int, p: Page
    ) -> tuple[_SplicedList, bytes] | None:
        """The splicer and this page's body, from every live control's state now."""
        full = to_bytes(encode.der_control_list(href, states, len(states), program_id))
        head = _list_head(href, len(states), len(states))
        if not states or not full.startswith(head) or not full.endswith(_LIST_END):
            return None
        restated: list[ControlState] = []
        at = len(head)
        for n, state in enumerate(states):
            last = n + 1 == len(states)
            end = len(full) - len(_LIST_END) if last else full.find(b"<DERControl ", at + 1)
            if end < 0:
                return None
            status_at = full.find(b"<EventStatus>", at, end)
            status_end = full.find(b"</EventStatus>", at, end) + len(b"</EventStatus>")
            if status_at < 0 or full[status_at:status_end] != _event_status(state):
                return None
            c = state.control
            slot = _Slot(
                c.id,
                c.mrid,
                c.program_id,
                c.site_id,
                c.creation_s,
                c.start_s,
                c.duration_s,
                c.cancelled_s,
                c.cancel_randomized,
                full[at:status_at],
                full[status_end:end],
            )
            restated.append(
                ControlState(slot, state.status, state.status_time_s, state.potentially_superseded)
            )
            at = end
        spliced = cls(href, program_id, p, tuple(s.control for s in restated))  # type: ignore[misc]
        if spliced._join(restated, len(states)) != full:
            return None
        return spliced, spliced._page(restated)

    def refresh(self, now_s: float) -> tuple[float, bytes]:
        """(valid until, body) at `now_s`: statuses re-derived, ended controls dropped."""
        return next_change_s(self.slots, now_s), self._page(derive_states(self.slots, now_s))

    def _page(self, states: list[ControlState]) -> bytes:
        if self.page.after_s is not None:
            states = [s for s in states if s.control.start_s >= self.page.after_s]
        return self._join(states[self.page.start : self.page.start + self.page.limit], len(states))

    def _join(self, states: list[ControlState], total: int) -> bytes:
        if not states:
            return to_bytes(encode.der_control_list(self.href, [], total, self.program_id))
        parts = [_list_head(self.href, total, len(states))]
        for s in states:
            slot: _Slot = s.control  # type: ignore[assignment]
            parts += (slot.head, _event_status(s), slot.tail)
        parts.append(_LIST_END)
        return b"".join(parts)


def _list_head(href: str, total: int, results: int) -> bytes:
    """The list's opening tag as encode.der_control_list writes it (`build` checks they agree)."""
    empty = to_bytes(
        encode.list_root("DERControlList", href, total, results, subscribable=encode.SUBSCRIBABLE)
    )
    return empty[:-2] + b">" if empty.endswith(b"/>") else empty


@router.api_route(hrefs.DERC_T.path, methods=["GET", "HEAD"])
def control(request: Request, site_id: Id, program_id: Id, control_id: str) -> Response:
    """One control: an operator's (numeric id) or an envelope block (its mRID); ended ones are gone."""
    with read_unit(request) as u:
        site = u.site(site_id)
        now_s = u.ctx.clock.now()
        states, valid_until_s = _states(u, site, program_id, now_s)
        found = next((st for st in states if str(st.control.id) == control_id), None)
        if found is None:
            raise HTTPException(404, "no such DERControl (or it has ended)")
        u.cacheable(valid_until_s=valid_until_s)
        return xml(encode.der_control(None, found, program_id))


@router.api_route(hrefs.ACTIVE_DERC_LIST_T.path, methods=["GET", "HEAD"])
def active_control_list(request: Request, site_id: Id, program_id: Id, p: Page = Depends(page)) -> Response:
    with read_unit(request) as u:
        site = u.site(site_id)
        _program(u, program_id)
        now_s = u.ctx.clock.now()
        states, valid_until_s = _states(u, site, program_id, now_s)
        active = [s for s in states if s.status == ACTIVE]
        u.cacheable(valid_until_s=valid_until_s)
        el = encode.der_control_list(
            hrefs.active_derc_list(site_id, program_id),
            active[p.start : p.start + p.limit],
            len(active),
            program_id,
        )
        return xml(el)


@router.api_route(hrefs.DEFAULT_DERC_T.path, methods=["GET", "HEAD"])
def default_control(request: Request, site_id: Id, program_id: Id) -> Response:
    with read_unit(request) as u:
        site = u.site(site_id)
        _program(u, program_id)
        d = q.default_control(u.session, site, program_id)
        if d is None:
            raise HTTPException(404, "no DefaultDERControl for this program")
        u.cacheable()
        return xml(encode.default_der_control(site_id, d))


@router.api_route(hrefs.CURVE_LIST_T.path, methods=["GET", "HEAD"])
def curve_list(request: Request, site_id: Id, program_id: Id, p: Page = Depends(page)) -> Response:
    with read_unit(request) as u:
        u.cacheable()
        u.site(site_id)
        _program(u, program_id)
        total, curves = q.list_curves(u.session, program_id, start=p.start, limit=p.limit)
        el = encode.list_root("DERCurveList", hrefs.curve_list(site_id, program_id), total, len(curves))
        for c in curves:
            encode.der_curve(el, site_id, c)
        return xml(el)


@router.api_route(hrefs.CURVE_T.path, methods=["GET", "HEAD"])
def curve(request: Request, site_id: Id, program_id: Id, curve_id: Id) -> Response:
    with read_unit(request) as u:
        u.cacheable()
        u.site(site_id)
        c = q.get_curve(u.session, program_id, curve_id)
        if c is None:
            raise HTTPException(404, "no such DERCurve")
        return xml(encode.der_curve(None, site_id, c))
