"""Load a network file (YAML or JSON) into a Network and its Sites, with errors that name fields.

Every problem is reported with its path in the document (`network.branches[3].rating`), all
at once, because the person reading the error is editing that file. The format is documented
in docs/network-format.md.

The file speaks kW (people write `max_export_kw: 5`); the model speaks W. This module is the one
place that converts: `_w` on every power figure read, `rating_document` on the way back out.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import yaml

from gridshare.grid.agreements import (
    AGREEMENT_KINDS,
    Agreement,
    CurtailmentGuarantee,
    Dynamic,
    Firm,
    Limited,
    Scheduled,
    Staggered,
    schedule_grid,
)
from gridshare.grid.network import (
    DEFAULT_V_MAX_PU,
    DEFAULT_V_MIN_PU,
    Branch,
    Network,
    NetworkError,
    Node,
    Problem,
    Rating,
    Site,
    validate_network,
    validate_sites,
)
from gridshare.grid.presets import resolve_preset, w_for_amps
from gridshare.grid.units import W_PER_KW

_MISSING = object()

TOP_KEYS = (
    "name",
    "power_factor",
    "source_voltage_pu",
    "timezone",
    "location",
    "voltage",
    "network",
    "sites",
)
NODE_KEYS = ("name", "v_min_pu", "v_max_pu", "load_kw", "pv_kw", "load_profile")
BRANCH_KEYS = (
    "name",
    "from",
    "to",
    "kind",
    "r_ohm",
    "x_ohm",
    "base_kv",
    "rating",
    "tranche_kw",
    "regulate_pu",
)
RATING_KEYS = (
    "preset",
    "kw",
    "kva",
    "amps",
    "export_kw",
    "import_kw",
    "export_kva",
    "import_kva",
    "export_amps",
    "import_amps",
)
SITE_KEYS = (
    "id",
    "node",
    "nmi",
    "agreement",
    "queue_position",
    "weight",
    "max_export_kw",
    "max_import_kw",
    "max_step_kw",
    "forecast",
    "curtailment_guarantee",
)
GUARANTEE_KEYS = ("max_annual_pct", "price_per_kwh", "currency")
FORECAST_KEYS = ("pv_kw", "load_kw", "load_profile")
AGREEMENT_KEYS: dict[str, tuple[str, ...]] = {
    "firm": ("type",),
    "limited": ("type", "export_kw", "import_kw"),
    "scheduled": ("type", "export_kw", "import_kw"),
    "staggered": ("type", "switch_at", "before", "after"),
    "dynamic": ("type", "export_floor_kw", "import_floor_kw"),
}


def _w(value_kw: float | None) -> float | None:
    """A power figure of the file (kW) in the model's unit (W)."""
    return None if value_kw is None else value_kw * W_PER_KW


def _w0(value_kw: float) -> float:
    """`_w` for a figure with a default (never None)."""
    return value_kw * W_PER_KW


def rating_document(rating: Rating | None) -> dict[str, float]:
    """A Rating written back as the file's explicit `rating:` mapping, in kW (None: no rating)."""
    if rating is None:
        return {}
    given = {"export_kw": rating.export_w, "import_kw": rating.import_w}
    return {k: v / W_PER_KW for k, v in given.items() if v is not None}


@dataclass(frozen=True)
class NetworkFile:
    """What a network file describes: the network and the sites connected to it."""

    network: Network
    sites: tuple[Site, ...]
    source: str = "<document>"


class _Reader:
    """Typed field access that records problems instead of stopping at the first."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def fail(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    def mapping(self, value: Any, path: str, allowed: tuple[str, ...]) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            self.fail(path, f"must be a mapping, got {type(value).__name__}")
            return {}
        for key in value:
            if key not in allowed:
                self.fail(
                    f"{path}.{key}" if path else str(key),
                    f"unknown field (expected one of: {', '.join(allowed)})",
                )
        return value

    def number(
        self,
        m: Mapping[str, Any],
        key: str,
        path: str,
        default: Any = _MISSING,
        *,
        minimum: float | None = None,
        positive: bool = False,
    ) -> Any:
        p = f"{path}.{key}" if path else key
        if key not in m:
            if default is _MISSING:
                self.fail(p, "is required")
                return 0.0
            return default
        value = m[key]
        if value is None and default is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            self.fail(p, f"must be a number, got {value!r}")
            return 0.0 if default is _MISSING or default is None else default
        if positive and value <= 0:
            self.fail(p, f"must be > 0, got {value}")
        elif minimum is not None and value < minimum:
            self.fail(p, f"must be >= {minimum:g}, got {value}")
        return float(value)

    def text(self, m: Mapping[str, Any], key: str, path: str, default: Any = _MISSING) -> Any:
        p = f"{path}.{key}" if path else key
        if key not in m:
            if default is _MISSING:
                self.fail(p, "is required")
                return ""
            return default
        value = m[key]
        if value is None and default is None:
            return None
        if isinstance(value, bool) or not isinstance(value, str | int):
            self.fail(p, f"must be a string, got {value!r}")
            return ""
        return str(value)

    def items(self, m: Mapping[str, Any], key: str, path: str) -> list[Any]:
        p = f"{path}.{key}" if path else key
        value = m.get(key, _MISSING)
        if value is _MISSING:
            self.fail(p, "is required")
            return []
        if not isinstance(value, list):
            self.fail(p, f"must be a list, got {type(value).__name__}")
            return []
        return value


def load_network_file(path: str | Path) -> NetworkFile:
    """Read and validate a `.yaml`/`.yml`/`.json` network file; raise NetworkError naming fields."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise NetworkError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        doc = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise NetworkError(
            f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        reason = getattr(exc, "problem", None) or str(exc)
        raise NetworkError(f"{path}: invalid YAML{where}: {reason}") from None
    return parse_network_document(doc, source=str(path))


def parse_network_document(doc: Any, source: str = "<document>") -> NetworkFile:
    """Build and validate a Network and its Sites from an already parsed document."""
    r = _Reader()
    top = r.mapping(doc, "", TOP_KEYS)
    if not top:
        raise NetworkError(r.problems or [Problem("", "the document is empty")])
    pf = r.number(top, "power_factor", "", 1.0)
    tz = r.text(top, "timezone", "", "UTC")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        r.fail("timezone", f"unknown time zone {tz!r} (use an IANA name such as 'America/New_York')")
        tz = "UTC"
    location = r.mapping(top.get("location", {}), "location", ("latitude_deg", "longitude_deg"))
    volt = r.mapping(top.get("voltage", {}), "voltage", ("min_pu", "max_pu"))
    v_min = r.number(volt, "min_pu", "voltage", DEFAULT_V_MIN_PU)
    v_max = r.number(volt, "max_pu", "voltage", DEFAULT_V_MAX_PU)
    net = (
        r.mapping(top.get("network", _MISSING), "network", ("nodes", "branches")) if "network" in top else {}
    )
    if "network" not in top:
        r.fail("network", "is required (with nodes and branches)")
    valid_pf = pf if 0 < pf <= 1 else 1.0

    nodes = (
        [
            _node(r, raw, f"network.nodes[{i}]", v_min, v_max)
            for i, raw in enumerate(r.items(net, "nodes", "network"))
        ]
        if net
        else []
    )
    branches = (
        [
            _branch(r, raw, f"network.branches[{i}]", valid_pf)
            for i, raw in enumerate(r.items(net, "branches", "network"))
        ]
        if net
        else []
    )
    network = Network(
        nodes=tuple(nodes),
        branches=tuple(branches),
        power_factor=pf,
        source_voltage_pu=r.number(top, "source_voltage_pu", "", 1.0),
        timezone=tz,
        latitude_deg=r.number(location, "latitude_deg", "location", 37.5, minimum=-90),
        longitude_deg=r.number(location, "longitude_deg", "location", -77.4, minimum=-180),
        name=r.text(top, "name", "", "network"),
    )
    sites = tuple(
        _site(r, raw, f"sites[{i}]", ZoneInfo(tz)) for i, raw in enumerate(r.items(top, "sites", ""))
    )
    if r.problems:
        raise NetworkError(r.problems)
    try:
        validate_network(network)
    except NetworkError as exc:
        raise NetworkError([_in_network(p) for p in exc.problems]) from None
    validate_sites(network, sites)
    return NetworkFile(network=network, sites=sites, source=source)


def _in_network(problem: Problem) -> Problem:
    """Model paths (`branches[2].to`) live under `network.` in the file."""
    if problem.path.startswith(("nodes", "branches")):
        return Problem(f"network.{problem.path}", problem.message)
    return problem


def _node(r: _Reader, raw: Any, path: str, v_min: float, v_max: float) -> Node:
    m = r.mapping(raw, path, NODE_KEYS)
    return Node(
        name=r.text(m, "name", path),
        v_min_pu=r.number(m, "v_min_pu", path, v_min) if m.get("v_min_pu", 0) is not None else None,
        v_max_pu=r.number(m, "v_max_pu", path, v_max) if m.get("v_max_pu", 0) is not None else None,
        load_w=_w0(r.number(m, "load_kw", path, 0.0, minimum=0)),
        pv_w=_w0(r.number(m, "pv_kw", path, 0.0, minimum=0)),
        load_profile=r.text(m, "load_profile", path, "residential"),
    )


def _branch(r: _Reader, raw: Any, path: str, pf: float) -> Branch:
    m = r.mapping(raw, path, BRANCH_KEYS)
    base_kv = r.number(m, "base_kv", path, positive=True)
    kind = r.text(m, "kind", path, "line")
    if kind not in ("line", "transformer"):
        r.fail(f"{path}.kind", f"must be 'line' or 'transformer', got {kind!r}")
    rating = _rating(r, m.get("rating"), f"{path}.rating", base_kv if base_kv > 0 else 1.0, pf)
    tranche_export, tranche_import = _directional(r, m.get("tranche_kw"), f"{path}.tranche_kw")
    return Branch(
        name=r.text(m, "name", path),
        from_node=r.text(m, "from", path),
        to_node=r.text(m, "to", path),
        r_ohm=r.number(m, "r_ohm", path, 0.0, minimum=0),
        x_ohm=r.number(m, "x_ohm", path, 0.0, minimum=0),
        base_kv=base_kv,
        kind=kind,
        rating=rating,
        tranche_export_w=_w(tranche_export),
        tranche_import_w=_w(tranche_import),
        regulate_pu=r.number(m, "regulate_pu", path, None, positive=True),
    )


def _directional(r: _Reader, raw: Any, path: str) -> tuple[float | None, float | None]:
    """A kW figure for export only (a number) or per direction ({export_kw, import_kw})."""
    if raw is None:
        return None, None
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        if raw < 0:
            r.fail(path, f"must be >= 0, got {raw}")
        return float(raw), None
    m = r.mapping(raw, path, ("export_kw", "import_kw"))
    return r.number(m, "export_kw", path, None, minimum=0), r.number(m, "import_kw", path, None, minimum=0)


def _rating(r: _Reader, raw: Any, path: str, base_kv: float, pf: float) -> Rating | None:
    """A preset name, or kW / kVA / amps for both directions or per direction; the Rating is in W."""
    if raw is None:
        return None
    if isinstance(raw, str):
        try:
            return resolve_preset(raw, base_kv, pf, path)
        except NetworkError as exc:
            r.problems.extend(exc.problems)
            return None
    if not isinstance(raw, Mapping):
        r.fail(
            path,
            f"must be a preset name or a mapping such as {{kva: 500}} or {{export_kw: 400}}, got {raw!r}",
        )
        return None
    m = r.mapping(raw, path, RATING_KEYS)
    values: dict[str, float | None] = {"export": None, "import": None}
    source = "explicit"
    if "preset" in m:
        name = r.text(m, "preset", path)
        try:
            base = resolve_preset(name, base_kv, pf, f"{path}.preset")
            values = {"export": base.export_w, "import": base.import_w}  # already in W
            source = name
        except NetworkError as exc:
            r.problems.extend(exc.problems)
    to_w = {
        "kw": lambda v: v * W_PER_KW,
        "kva": lambda v: v * pf * W_PER_KW,
        "amps": lambda v: w_for_amps(v, base_kv, pf),
    }
    for direction in ("export", "import"):
        given = [
            k
            for k in (f"{direction}_kw", f"{direction}_kva", f"{direction}_amps", "kw", "kva", "amps")
            if k in m
        ]
        if len(given) > 1:
            r.fail(path, f"{direction} rating is given twice ({', '.join(given)}); keep one")
            continue
        if given:
            key = given[0]
            value = r.number(m, key, path, positive=True)
            values[direction] = to_w[key.split("_")[-1]](value)
    if values["export"] is None and values["import"] is None:
        r.fail(path, "gives no rating in either direction")
        return None
    return Rating(export_w=values["export"], import_w=values["import"], source=source)


def _site(r: _Reader, raw: Any, path: str, zone: ZoneInfo) -> Site:
    m = r.mapping(raw, path, SITE_KEYS)
    fc = r.mapping(m.get("forecast", {}), f"{path}.forecast", FORECAST_KEYS)
    pv_kw = r.number(fc, "pv_kw", f"{path}.forecast", 0.0, minimum=0)
    load_kw = r.number(fc, "load_kw", f"{path}.forecast", 0.0, minimum=0)
    queue = m.get("queue_position")
    if queue is not None and (isinstance(queue, bool) or not isinstance(queue, int) or queue < 0):
        r.fail(f"{path}.queue_position", f"must be a whole number >= 0, got {queue!r}")
        queue = None
    return Site(
        id=r.text(m, "id", path),
        node=r.text(m, "node", path),
        nmi=r.text(m, "nmi", path, None),
        agreement=_agreement(r, m.get("agreement", _MISSING), f"{path}.agreement", zone),
        max_export_w=_w0(r.number(m, "max_export_kw", path, pv_kw, minimum=0)),
        max_import_w=_w0(r.number(m, "max_import_kw", path, load_kw, minimum=0)),
        queue_position=queue,
        weight=r.number(m, "weight", path, None, positive=True),
        pv_w=_w0(pv_kw),
        load_w=_w0(load_kw),
        load_profile=r.text(fc, "load_profile", f"{path}.forecast", "residential"),
        max_step_w=_w(r.number(m, "max_step_kw", path, None, positive=True)),
        guarantee=_guarantee(r, m.get("curtailment_guarantee"), f"{path}.curtailment_guarantee"),
    )


def _guarantee(r: _Reader, raw: Any, path: str) -> CurtailmentGuarantee | None:
    if raw is None:
        return None
    m = r.mapping(raw, path, GUARANTEE_KEYS)
    pct = r.number(m, "max_annual_pct", path, minimum=0)
    if pct is not None and pct > 100:
        r.fail(f"{path}.max_annual_pct", f"must be a share of annual energy, 0 to 100 %, got {pct}")
    currency = r.text(m, "currency", path, "USD")
    if not (isinstance(currency, str) and 1 <= len(currency) <= 8):
        r.fail(f"{path}.currency", f"must be a short currency code such as USD or GBP, got {currency!r}")
        currency = "USD"
    return CurtailmentGuarantee(
        max_annual_pct=float(pct or 0.0),
        price_per_kwh=float(r.number(m, "price_per_kwh", path, 0.0, minimum=0) or 0.0),
        currency=currency,
    )


def _agreement(r: _Reader, raw: Any, path: str, zone: ZoneInfo) -> Agreement:
    if raw is _MISSING:
        r.fail(path, "is required (type: firm, limited, scheduled, staggered or dynamic)")
        return Firm()
    if isinstance(raw, str):
        raw = {"type": raw}
    if not isinstance(raw, Mapping):
        r.fail(path, f"must be a mapping with a type, got {raw!r}")
        return Firm()
    kind = raw.get("type")
    if kind not in AGREEMENT_KINDS:
        r.fail(f"{path}.type", f"unknown agreement type {kind!r} (choose from {', '.join(AGREEMENT_KINDS)})")
        return Firm()
    m = r.mapping(raw, path, AGREEMENT_KEYS[kind])
    if kind == "firm":
        return Firm()
    if kind == "limited":
        return Limited(
            _w(r.number(m, "export_kw", path, None, minimum=0)),
            _w(r.number(m, "import_kw", path, None, minimum=0)),
        )
    if kind == "dynamic":
        return Dynamic(
            export_floor_w=_w0(r.number(m, "export_floor_kw", path, 0.0, minimum=0)),
            import_floor_w=_w0(r.number(m, "import_floor_kw", path, 0.0, minimum=0)),
        )
    if kind == "scheduled":
        grids: dict[str, np.ndarray | None] = {}
        for key in ("export_kw", "import_kw"):
            if m.get(key) is None:
                grids[key] = None
                continue
            try:
                grids[key] = schedule_grid(m[key]) * W_PER_KW
            except ValueError as exc:
                r.fail(f"{path}.{key}", str(exc))
                grids[key] = None
        return Scheduled(export_w=grids["export_kw"], import_w=grids["import_kw"])
    switch_at = _moment(r, m.get("switch_at", _MISSING), f"{path}.switch_at", zone)
    before = r.mapping(m.get("before", {}), f"{path}.before", ("export_kw", "import_kw"))
    after = r.mapping(m.get("after", {}), f"{path}.after", ("export_kw", "import_kw"))
    return Staggered(
        switch_at=switch_at,
        before_export_w=_w(r.number(before, "export_kw", f"{path}.before", None, minimum=0)),
        before_import_w=_w(r.number(before, "import_kw", f"{path}.before", None, minimum=0)),
        after_export_w=_w(r.number(after, "export_kw", f"{path}.after", None, minimum=0)),
        after_import_w=_w(r.number(after, "import_kw", f"{path}.after", None, minimum=0)),
    )


def _moment(r: _Reader, raw: Any, path: str, zone: ZoneInfo) -> datetime:
    """A date (local midnight) or ISO 8601 date-time; naive times are local to the network."""
    fallback = datetime(1970, 1, 1, tzinfo=zone)
    if raw is _MISSING:
        r.fail(path, "is required (the date the higher limit starts)")
        return fallback
    if isinstance(raw, str):
        try:
            raw = (
                datetime.fromisoformat(raw.replace("Z", "+00:00"))
                if "T" in raw or " " in raw
                else date.fromisoformat(raw)
            )
        except ValueError:
            r.fail(path, f"must be an ISO 8601 date or date-time, got {raw!r}")
            return fallback
    if isinstance(raw, datetime):
        return raw if raw.tzinfo is not None else raw.replace(tzinfo=zone)
    if isinstance(raw, date):
        return datetime.combine(raw, time(0), tzinfo=zone)
    r.fail(path, f"must be an ISO 8601 date or date-time, got {raw!r}")
    return fallback
