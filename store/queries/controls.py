"""Writing controls and defaults: used by the operator API and the envelope publisher.

Each function bumps the publication counter in the caller's transaction, so clients see the change
on their next poll and never a cached body from before it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

from sqlalchemy import select
from sqlalchemy.orm import Session

from gridshare.core.der_control_fields import CONTROL_BASE_NAMES, check_attributes
from gridshare.store.db import bump_publication
from gridshare.store.models import DefaultDerControl, DerControl, DerCurve, DerProgram, Site
from gridshare.store.queries.paging import page_of


@dataclass(frozen=True)
class ControlValues:
    """DERControlBase values in store units (W, hundredths of %, hundredths of s); None leaves unset."""

    import_limit_w: float | None = None
    export_limit_w: float | None = None
    generation_limit_w: float | None = None
    load_limit_w: float | None = None
    connect: bool | None = None
    energize: bool | None = None
    fixed_w_pct_hundredths: int | None = None
    max_w_pct_hundredths: int | None = None
    ramp_tms_hundredths_s: int | None = None

    def apply(self, row: DerControl | DefaultDerControl) -> None:
        for f in fields(self):
            setattr(row, f.name, getattr(self, f.name))


check_attributes(
    "store.queries.controls.ControlValues", {f.name for f in fields(ControlValues)}, CONTROL_BASE_NAMES
)


def create_control(
    session: Session,
    *,
    site: Site,
    program: DerProgram,
    mrid: str,
    start_s: int,
    duration_s: int,
    values: ControlValues,
    now_s: int,
    randomize_start_s: int | None = None,
    randomize_duration_s: int | None = None,
    response_required: int = 0,
    description: str = "",
) -> DerControl:
    if duration_s <= 0:
        raise ValueError("duration_s must be positive")
    control = DerControl(
        mrid=mrid,
        program_id=program.id,
        site_id=site.id,
        description=description,
        creation_s=now_s,
        start_s=start_s,
        duration_s=duration_s,
        randomize_start_s=randomize_start_s,
        randomize_duration_s=randomize_duration_s,
        response_required=response_required,
    )
    values.apply(control)
    session.add(control)
    session.flush()
    bump_publication(session)
    return control


def cancel_control(session: Session, control: DerControl, now_s: int, randomized: bool = False) -> None:
    control.cancelled_s = now_s
    control.cancel_randomized = randomized
    control.version += 1
    bump_publication(session)


def set_default_control(
    session: Session,
    *,
    program: DerProgram,
    site: Site | None,
    mrid: str,
    values: ControlValues,
    now_s: int,
    set_grad_w_hundredths: int | None = None,
    description: str | None = None,
) -> DefaultDerControl:
    """Create or replace the program's default for one site (or for all sites when `site` is None).

    `description` None keeps the present one (a new row starts empty)."""
    existing = (
        session.query(DefaultDerControl)
        .filter_by(program_id=program.id, site_id=site.id if site else None)
        .one_or_none()
    )
    row = existing or DefaultDerControl(mrid=mrid, program_id=program.id, site_id=site.id if site else None)
    values.apply(row)
    row.set_grad_w_hundredths = set_grad_w_hundredths
    if description is not None:
        row.description = description
    row.changed_s = now_s
    if existing is not None:
        row.version += 1
    else:
        session.add(row)
    session.flush()
    bump_publication(session)
    return row


def set_site_defaults(
    session: Session,
    *,
    program: DerProgram,
    values: dict[int, tuple[ControlValues, int | None]],
    mrids: dict[int, str],
    now_s: int,
    description: str = "",
) -> int:
    """`set_default_control` for many sites at once: (values, setGradW) by site id; returns rows written.

    Same rules (replace the site's row in place with its version bumped, or create it with `mrids[id]`
    and `description`), in one SELECT, one INSERT and one flush: the envelope engine rewrites
    thousands of sites' defaults after a derate and must not take a round trip per site.
    """
    if not values:
        return 0
    existing = {
        d.site_id: d
        for d in session.query(DefaultDerControl).filter(
            DefaultDerControl.program_id == program.id, DefaultDerControl.site_id.in_(list(values))
        )
    }
    new_rows = []
    for site_id, (control, grad) in values.items():
        row = existing.get(site_id)
        if row is None:
            row = DefaultDerControl(
                mrid=mrids[site_id],
                program_id=program.id,
                site_id=site_id,
                description=description,
                version=0,
            )
            new_rows.append(row)
        else:
            row.version += 1
        control.apply(row)
        row.set_grad_w_hundredths = grad
        row.changed_s = now_s
    session.add_all(new_rows)
    session.flush()
    bump_publication(session)
    return len(values)


def add_curve(
    session: Session,
    *,
    program: DerProgram,
    mrid: str,
    curve_type: int,
    points: list[tuple[int, int]],
    now_s: int,
    x_multiplier: int = 0,
    y_multiplier: int = 0,
    y_ref_type: int = 3,
    description: str = "",
) -> DerCurve:
    """A volt-var (11) or volt-watt (12) curve; 2030.5 allows 1 to 10 points, x strictly increasing."""
    if not 1 <= len(points) <= 10:
        raise ValueError("a DERCurve has 1 to 10 points")
    xs = [x for x, _ in points]
    if xs != sorted(set(xs)):
        raise ValueError("curve x values must be strictly increasing")
    curve = DerCurve(
        mrid=mrid,
        program_id=program.id,
        description=description,
        curve_type=curve_type,
        points=[list(p) for p in points],
        x_multiplier=x_multiplier,
        y_multiplier=y_multiplier,
        y_ref_type=y_ref_type,
        creation_s=now_s,
    )
    session.add(curve)
    session.flush()
    bump_publication(session)
    return curve


def delete_curve(session: Session, curve: DerCurve) -> None:
    """Remove a curve from its program; devices stop seeing it on their next poll."""
    session.delete(curve)
    session.flush()
    bump_publication(session)


# --- operator API (unscoped: an operator sees every site) ---


def default_controls(session: Session, program_id: int) -> list[DefaultDerControl]:
    """The program-wide default first, then per-site ones by site."""
    rows = session.execute(
        select(DefaultDerControl)
        .where(DefaultDerControl.program_id == program_id)
        .order_by(DefaultDerControl.site_id.is_not(None), DefaultDerControl.site_id)
    )
    return list(rows.scalars().all())


def default_control_for(session: Session, program_id: int, site_id: int | None) -> DefaultDerControl | None:
    owner = DefaultDerControl.site_id.is_(None) if site_id is None else DefaultDerControl.site_id == site_id
    return session.execute(
        select(DefaultDerControl).where(DefaultDerControl.program_id == program_id, owner)
    ).scalar_one_or_none()


def controls_page(
    session: Session, *, site_id: int, program_id: int, start: int, limit: int
) -> tuple[int, list[DerControl]]:
    """Every control of a site in a program, ended ones included, newest start first."""
    query = (
        select(DerControl)
        .where(DerControl.site_id == site_id, DerControl.program_id == program_id)
        .order_by(DerControl.start_s.desc(), DerControl.id.desc())
    )
    return page_of(session, query, start=start, limit=limit)


def control_in(session: Session, *, site_id: int, program_id: int, control_id: int) -> DerControl | None:
    return session.execute(
        select(DerControl).where(
            DerControl.id == control_id, DerControl.site_id == site_id, DerControl.program_id == program_id
        )
    ).scalar_one_or_none()


def cancellable_controls(
    session: Session, *, program_id: int, site_id: int | None, now_s: int
) -> Sequence[DerControl]:
    """Controls of a program (optionally one site) that have not ended and are not cancelled yet."""
    query = select(DerControl).where(
        DerControl.program_id == program_id,
        DerControl.cancelled_s.is_(None),
        DerControl.start_s + DerControl.duration_s > now_s,
    )
    if site_id is not None:
        query = query.where(DerControl.site_id == site_id)
    return session.execute(query.order_by(DerControl.id)).scalars().all()


def delete_default_control(session: Session, default: DefaultDerControl) -> None:
    """Drop a site's own default: the site falls back to the program-wide one."""
    session.delete(default)
