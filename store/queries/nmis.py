"""Who may bind an NMI: one EndDevice per NMI, aggregators only within what the operator assigned them.

`Site.nmi` is the binding (a unique index makes it one EndDevice per NMI even under races);
`NmiAssignment` reserves an NMI for one aggregator's EndDevices. A client's claim is checked against
every site, beyond its own scope, because a conflict lives exactly there; the answer says only that
the NMI is taken, never by whom.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from gridshare.store.models import SITE_NMI_CANONICAL, NmiAssignment, Site
from gridshare.store.scope import ClientScope

#: `nmi_claims` settings: clients may bind free NMIs, or only what the operator bound or assigned.
OPEN, ASSIGNED = "open", "assigned"


def canonical_nmi(nmi: str) -> str:
    """One spelling per AEMO NMI: upper case, without the checksum digit an 11-character form carries."""
    return (nmi[:10] if len(nmi) == 11 else nmi).upper()


def holder_query(nmi: str, *, excluding: int | None = None) -> Select[Site]:
    """The EndDevice an NMI (or another spelling of it) is bound to: one index lookup
    (`ix_site_nmi_canonical`), not a scan of every site, so binding stays cheap in a large fleet."""
    query = select(Site).where(SITE_NMI_CANONICAL == canonical_nmi(nmi))  # noqa: SIM300 (SQL, not a test)
    if excluding is not None:
        query = query.where(Site.id != excluding)
    return query.order_by(Site.id).limit(1)


def holder_of(session: Session, nmi: str, *, excluding: int | None = None) -> Site | None:
    """The EndDevice an NMI (or another spelling of it) is bound to, if any (`holder_query`)."""
    return session.execute(holder_query(nmi, excluding=excluding)).scalars().first()


def assignment_of(session: Session, nmi: str) -> NmiAssignment | None:
    return session.get(NmiAssignment, nmi)


def client_claim_problem(
    session: Session, scope: ClientScope, site: Site, nmi: str, policy: str
) -> str | None:
    """Why this client may not bind `nmi` to its EndDevice `site` (a ConnectionPoint write), or None.

    Re-sending the NMI it already holds is always fine. Otherwise the NMI must not be held by another
    EndDevice; an NMI assigned to an aggregator is only for that aggregator's EndDevices; under the
    `assigned` policy an unassigned NMI is not for clients to take at all.
    """
    if site.nmi is not None and canonical_nmi(site.nmi) == canonical_nmi(nmi):
        return None
    if holder_of(session, nmi, excluding=site.id) is not None:
        return (
            f"NMI {nmi} is bound to another EndDevice; the network operator must release or move it "
            "before this EndDevice can claim it"
        )
    assignment = assignment_of(session, nmi)
    if assignment is not None:
        if scope.is_aggregator and assignment.aggregator_id == scope.aggregator_id:
            return None
        return f"NMI {nmi} is assigned by the network operator to another client's sites"
    if policy == ASSIGNED:
        return (
            f"NMI {nmi} is not assigned to this client: the network operator binds NMIs on this server "
            "(nmi_claims = assigned)"
        )
    return None


@dataclass(frozen=True)
class Binding:
    """What the operator API shows for one NMI."""

    nmi: str
    site_id: int | None
    site_aggregator_id: int | None
    assigned_aggregator_id: int | None
    assigned_s: int | None


def binding(session: Session, nmi: str) -> Binding:
    site = session.execute(select(Site).where(Site.nmi == nmi)).scalars().first()
    assignment = assignment_of(session, nmi)
    return Binding(
        nmi=nmi,
        site_id=None if site is None else site.id,
        site_aggregator_id=None if site is None else site.aggregator_id,
        assigned_aggregator_id=None if assignment is None else assignment.aggregator_id,
        assigned_s=None if assignment is None else assignment.assigned_s,
    )


def operator_bind_problem(session: Session, site: Site, nmi: str) -> str | None:
    """Why binding `nmi` to `site` would contradict an assignment (the operator reassigns first), or None."""
    assignment = assignment_of(session, nmi)
    if assignment is not None and assignment.aggregator_id != site.aggregator_id:
        return (
            f"NMI {nmi} is assigned to aggregator {assignment.aggregator_id}, and site {site.id} is not "
            "one of its EndDevices: change the assignment first"
        )
    return None


def move_nmi(session: Session, nmi: str, site: Site, now_s: int) -> int | None:
    """Bind `nmi` to `site`, releasing it from whichever EndDevice held it; returns that one's id."""
    previous = holder_of(session, nmi, excluding=site.id)
    exact = session.execute(select(Site).where(Site.nmi == nmi, Site.id != site.id)).scalars().first()
    for other in {s.id: s for s in (previous, exact) if s is not None}.values():
        other.nmi = None
        other.changed_s = now_s
    session.flush()  # the unique index sees the release before the new binding
    site.nmi = nmi
    site.changed_s = now_s
    session.flush()
    return None if previous is None else previous.id


def release_nmi(session: Session, nmi: str, now_s: int) -> int | None:
    """Unbind `nmi` from its EndDevice; returns that site's id (None: it was not bound)."""
    site = session.execute(select(Site).where(Site.nmi == nmi)).scalars().first()
    if site is None:
        return None
    site.nmi = None
    site.changed_s = now_s
    session.flush()
    return site.id


def assign_nmi(session: Session, nmi: str, aggregator_id: int, now_s: int) -> NmiAssignment:
    row = assignment_of(session, nmi)
    if row is None:
        row = NmiAssignment(nmi=nmi, aggregator_id=aggregator_id, assigned_s=now_s)
        session.add(row)
    else:
        row.aggregator_id, row.assigned_s = aggregator_id, now_s
    session.flush()
    return row


def assignments_page(
    session: Session, *, aggregator_id: int | None, start: int, limit: int
) -> tuple[int, list[NmiAssignment]]:
    query = select(NmiAssignment)
    if aggregator_id is not None:
        query = query.where(NmiAssignment.aggregator_id == aggregator_id)
    total = session.execute(select(func.count()).select_from(query.subquery())).scalar_one()
    rows = session.execute(query.order_by(NmiAssignment.nmi).offset(start).limit(limit)).scalars().all()
    return int(total), list(rows)


def drop_assignment(session: Session, assignment: NmiAssignment) -> None:
    """Lift an aggregator's reservation of an NMI (a binding, if any, stays)."""
    session.delete(assignment)
