"""Computed safe values in the store, published as each dynamic site's DefaultDERControl.

The safe values live in `server_setting` rows (`fallback.safe.<site id>`), so the operator API can
check a default against them without recomputing anything. Each dynamic site gets its own default in
the envelope program, written by `set_site_defaults` (`set_default_control` for many sites at once, so
the same rows an operator's write would produce):

* a row the engine wrote (description ENGINE_DESCRIPTION) follows the computed values, up and down;
* a row an operator wrote is theirs: kept while it is at or below the safe values, lowered to them
  when they drop (e.g. after a derate), unless the operator set it above them with an explicit,
  audit-logged override (`fallback.override.<site id>`), which is kept as it is.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from gridshare.core.mrid import new_mrid
from gridshare.fallback.safe_default import SafeDefault
from gridshare.store.db import bump_publication
from gridshare.store.models import DefaultDerControl, DerProgram
from gridshare.store.queries.controls import ControlValues, set_site_defaults
from gridshare.store.runtime_settings import ServerSetting

#: ServerSetting key prefix (then the store site id) of an operator's override of a site's safe default.
OVERRIDE_PREFIX = "fallback.override."

log = logging.getLogger("gridshare.fallback")

ENGINE_DESCRIPTION = "GridShare computed fallback"
SAFE_PREFIX = "fallback.safe."
#: The digest of the inputs the published defaults were computed from (recompute.fallback_plan).
FINGERPRINT_KEY = "fallback.inputs"
#: Values closer than this (W) are the same value: no rewrite, no version bump, no device churn.
SAME_W = 0.5


def safe_default_for(session: Session, site_id: int) -> SafeDefault | None:
    row = session.get(ServerSetting, f"{SAFE_PREFIX}{site_id}")
    return None if row is None else SafeDefault.from_json(row.value)


def all_safe_defaults(session: Session) -> dict[int, SafeDefault]:
    rows = session.execute(select(ServerSetting).where(ServerSetting.key.startswith(SAFE_PREFIX))).scalars()
    return {int(r.key[len(SAFE_PREFIX) :]): SafeDefault.from_json(r.value) for r in rows}


def safe_defaults_of(session: Session, site_ids: Iterable[int]) -> dict[int, SafeDefault]:
    """The stored safe values of these store sites (those that have one), by store site id."""
    keys = [f"{SAFE_PREFIX}{i}" for i in site_ids]
    found: dict[int, SafeDefault] = {}
    for at in range(0, len(keys), 500):  # bound the statement's parameters on any backend
        rows = session.execute(select(ServerSetting).where(ServerSetting.key.in_(keys[at : at + 500])))
        for r in rows.scalars():
            found[int(r.key[len(SAFE_PREFIX) :])] = SafeDefault.from_json(r.value)
    return found


def _fingerprint_key(network: str) -> str:
    return f"{FINGERPRINT_KEY}.{network}"


def stored_fingerprint(session: Session, network: str) -> str | None:
    row = session.get(ServerSetting, _fingerprint_key(network))
    return None if row is None else str(row.value.get("fingerprint"))


def store_fingerprint(session: Session, network: str, fingerprint: str, now_s: int, **about: object) -> None:
    """Record what the network's defaults now published were computed from, in the transaction that
    wrote them."""
    value = {"fingerprint": fingerprint, **about}
    row = session.get(ServerSetting, _fingerprint_key(network))
    if row is None:
        session.add(ServerSetting(key=_fingerprint_key(network), value=value, changed_s=now_s))
    else:
        row.value, row.changed_s = value, now_s
    session.flush()


def override_for(session: Session, site_id: int) -> dict[str, Any] | None:
    row = session.get(ServerSetting, f"{OVERRIDE_PREFIX}{site_id}")
    return None if row is None else row.value


def set_override(session: Session, site_id: int, record: dict[str, Any] | None, now_s: int) -> None:
    """Record (or with None, forget) that an operator's default for this site exceeds the safe values."""
    key = f"{OVERRIDE_PREFIX}{site_id}"
    row = session.get(ServerSetting, key)
    if record is None:
        if row is not None:
            session.delete(row)
    elif row is None:
        session.add(ServerSetting(key=key, value=record, changed_s=now_s))
    else:
        row.value, row.changed_s = record, now_s
    session.flush()


def _differs(a: float | int | None, b: float | int | None) -> bool:
    if a is None or b is None:
        return a is not b
    return not math.isclose(float(a), float(b), abs_tol=SAME_W)


def _values(safe: SafeDefault, row: DefaultDerControl | None = None) -> ControlValues:
    """The safe limits, keeping the non-limit fields (connect, energize, ...) of an existing row."""
    keep: dict[str, Any] = (  # keyword arguments for ControlValues' non-limit fields
        {}
        if row is None
        else {
            "connect": row.connect,
            "energize": row.energize,
            "fixed_w_pct_hundredths": row.fixed_w_pct_hundredths,
            "max_w_pct_hundredths": row.max_w_pct_hundredths,
            "ramp_tms_hundredths_s": row.ramp_tms_hundredths_s,
        }
    )
    return ControlValues(
        import_limit_w=safe.import_limit_w,
        export_limit_w=safe.export_limit_w,
        generation_limit_w=safe.generation_limit_w,
        load_limit_w=safe.load_limit_w,
        **keep,
    )


def clamped(safe: SafeDefault, row: DefaultDerControl) -> SafeDefault:
    """An operator's row with every value above the safe one (or unset) brought down to it."""
    out: dict[str, float | int] = {}
    for name in SafeDefault.FIELDS:
        current, limit = getattr(row, name), getattr(safe, name)
        unlimited = current is None or (name == "set_grad_w_hundredths" and current == 0)
        out[name] = limit if unlimited or current > limit else current
    return SafeDefault(safe.network_site_id, explain=safe.explain, **out)  # type: ignore[arg-type]


def write_safe_values(
    session: Session, safe: dict[int, SafeDefault], now_s: int, network: str
) -> tuple[int, list[int]]:
    """Store the network's computed values; returns (rows changed, its site ids whose values are gone).

    Each value names its network, so one network's run never removes another's (a value from before
    networks were named counts as the running network's, and is rewritten by its own network's run).
    """
    current = {
        int(r.key[len(SAFE_PREFIX) :]): r
        for r in session.execute(
            select(ServerSetting).where(ServerSetting.key.startswith(SAFE_PREFIX))
        ).scalars()
        if r.value.get("network") in (network, None) or int(r.key[len(SAFE_PREFIX) :]) in safe
    }
    changed = 0
    for site_id, value in safe.items():
        doc = {**value.as_json(), "network": network}
        row = current.get(site_id)
        if row is None:
            session.add(ServerSetting(key=f"{SAFE_PREFIX}{site_id}", value=doc, changed_s=now_s))
            changed += 1
        elif row.value != doc:
            row.value, row.changed_s = doc, now_s
            changed += 1
    gone = [site_id for site_id in current if site_id not in safe]
    for site_id in gone:
        session.delete(current[site_id])
    return changed + len(gone), gone


def write_defaults(
    session: Session, program: DerProgram, safe: dict[int, SafeDefault], now_s: int, pen: int, network: str
) -> int:
    """Bring every dynamic site of `network` its own default in `program` in line with the rules above;
    rows changed."""
    changed, gone = write_safe_values(session, safe, now_s, network)
    if gone:
        # A site that is no longer dynamic (or no longer on the network) falls back to the program default.
        session.execute(
            delete(DefaultDerControl).where(
                DefaultDerControl.program_id == program.id,
                DefaultDerControl.site_id.in_(gone),
                DefaultDerControl.description == ENGINE_DESCRIPTION,
            )
        )
    rows = {
        d.site_id: d
        for d in session.execute(
            select(DefaultDerControl).where(
                DefaultDerControl.program_id == program.id, DefaultDerControl.site_id.in_(list(safe))
            )
        ).scalars()
    }
    overrides = {
        int(r.key[len(OVERRIDE_PREFIX) :])
        for r in session.execute(
            select(ServerSetting).where(ServerSetting.key.startswith(OVERRIDE_PREFIX))
        ).scalars()
    }
    writes: dict[int, tuple[ControlValues, int | None]] = {}
    for site_id, value in safe.items():
        row = rows.get(site_id)
        if row is not None and row.description != ENGINE_DESCRIPTION:
            if site_id in overrides:
                continue  # an operator raised it on purpose, and the audit log says who and when
            target = clamped(value, row)
        else:
            target = value
        if row is not None and not any(
            _differs(getattr(row, name), getattr(target, name)) for name in SafeDefault.FIELDS
        ):
            continue
        if row is not None and row.description != ENGINE_DESCRIPTION:
            log.warning(
                "site %d: operator default lowered to the computed safe values (%s)", site_id, value.explain
            )
        writes[site_id] = (_values(target, row), target.set_grad_w_hundredths)
    changed += set_site_defaults(
        session,
        program=program,
        values=writes,
        mrids={site_id: new_mrid(pen) for site_id in writes if site_id not in rows},
        now_s=now_s,
        description=ENGINE_DESCRIPTION,
    )
    if changed:
        bump_publication(session)
    return changed
