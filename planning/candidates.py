"""Candidate sites: the connections a study asks about, from a CSV/YAML file or `NODE:KW[:TECH]`.

Columns (CSV header) or keys (YAML list of mappings):

| field | default | meaning |
| --- | --- | --- |
| `id` | `candidate-<n>` | unique among the network's sites |
| `node` | required | node it connects at |
| `export_kw` | required | agreed export capacity, also its generation peak |
| `technology` | `pv` | profile column of its generation shape (`pv`, `wind`, ...) |
| `agreement` | `dynamic` | `dynamic`, `firm` or `limited` (then held at `export_kw`) |
| `queue_position` | after every existing site | connection order (LIFO, tranches) |
| `export_floor_kw`, `import_kw`, `load_kw` | 0 | static floor, agreed import, its own load peak |
| `load_profile` | `flat` | load shape name |
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gridshare.grid.agreements import Agreement, Dynamic, Firm, Limited
from gridshare.grid.network import Network, Site
from gridshare.grid.units import W_PER_KW
from gridshare.planning.errors import CandidateError

FIELDS = (
    "id",
    "node",
    "export_kw",
    "technology",
    "agreement",
    "queue_position",
    "export_floor_kw",
    "import_kw",
    "load_kw",
    "load_profile",
)


@dataclass(frozen=True)
class Candidate:
    site: Site
    technology: str


def _number(raw: Any, field: str, file: str, line: int | None, default: float | None = None) -> float:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        if default is None:
            raise CandidateError("is required", file, field, line)
        return default
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise CandidateError(f"{raw!r} is not a number", file, field, line) from None
    if not math.isfinite(value) or value < 0:
        raise CandidateError(f"must be a number >= 0, got {raw!r}", file, field, line)
    return value


def candidate_from_fields(
    raw: Mapping[str, Any], index: int, file: str, line: int | None, queue_after: int
) -> Candidate:
    """One candidate from a row; every problem is a CandidateError naming file, field and line."""
    unknown = [k for k in raw if k not in FIELDS and k is not None]
    if unknown:
        raise CandidateError(f"unknown field (known: {', '.join(FIELDS)})", file, str(unknown[0]), line)
    node = str(raw.get("node") or "").strip()
    if not node:
        raise CandidateError("is required", file, "node", line)
    size = _number(raw.get("export_kw"), "export_kw", file, line)
    if size <= 0:
        raise CandidateError("must be > 0 kW", file, "export_kw", line)
    kind = str(raw.get("agreement") or "dynamic").strip().lower()
    floor = _number(raw.get("export_floor_kw"), "export_floor_kw", file, line, 0.0)
    if floor > size:
        raise CandidateError(f"{floor} kW is above export_kw {size}", file, "export_floor_kw", line)
    agreement: Agreement
    if kind == "dynamic":
        agreement = Dynamic(export_floor_w=floor * W_PER_KW)
    elif kind == "firm":
        agreement = Firm()
    elif kind == "limited":
        agreement = Limited(export_w=size * W_PER_KW)
    else:
        raise CandidateError(f"{kind!r}: use dynamic, firm or limited", file, "agreement", line)
    queue_raw = raw.get("queue_position")
    queue = (
        int(_number(queue_raw, "queue_position", file, line))
        if queue_raw not in (None, "")
        else queue_after + index
    )
    technology = str(raw.get("technology") or "pv").strip().lower()
    site = Site(
        id=str(raw.get("id") or f"candidate-{index + 1}").strip(),
        node=node,
        agreement=agreement,
        max_export_w=size * W_PER_KW,
        max_import_w=_number(raw.get("import_kw"), "import_kw", file, line, 0.0) * W_PER_KW,
        queue_position=queue,
        pv_w=size * W_PER_KW,
        load_w=_number(raw.get("load_kw"), "load_kw", file, line, 0.0) * W_PER_KW,
        load_profile=str(raw.get("load_profile") or "flat").strip(),
    )
    return Candidate(site, technology)


def read_candidates(path: str | Path, queue_after: int) -> list[Candidate]:
    """A CSV (header row) or YAML (list of mappings) file of candidate sites."""
    path = Path(path)
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CandidateError(exc.strerror or str(exc), file) from None
    if path.suffix.lower() in (".yaml", ".yml", ".json"):
        try:
            node = yaml.compose(text)
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            raise CandidateError(
                f"invalid YAML: {getattr(exc, 'problem', exc)}", file, "", mark.line + 1 if mark else None
            ) from None
        if not isinstance(doc, list) or not all(isinstance(d, dict) for d in doc):
            raise CandidateError("must be a list of candidate sites (mappings)", file)
        lines = [item.start_mark.line + 1 for item in node.value] if node is not None else []
        return [candidate_from_fields(d, i, file, lines[i], queue_after) for i, d in enumerate(doc)]
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh, skipinitialspace=True)
        if not reader.fieldnames or "node" not in reader.fieldnames:
            raise CandidateError(
                f"needs a header row with at least node and export_kw (fields: {', '.join(FIELDS)})",
                file,
                "",
                1,
            )
        return [
            candidate_from_fields(row, i, file, reader.line_num, queue_after) for i, row in enumerate(reader)
        ]


def parse_inline(specs: Iterable[str], queue_after: int, start_index: int = 0) -> list[Candidate]:
    """`NODE:KW[:TECH]` from the command line."""
    out = []
    for i, spec in enumerate(specs):
        parts = spec.split(":")
        if len(parts) < 2:
            raise CandidateError(f"{spec!r}: write NODE:KW or NODE:KW:TECH", "--site")
        if len(parts) >= 3 and not _is_number(parts[-1]):
            node, kw, tech = ":".join(parts[:-2]), parts[-2], parts[-1]
        else:
            node, kw, tech = ":".join(parts[:-1]), parts[-1], "pv"
        raw = {"id": f"candidate-{start_index + i + 1}", "node": node, "export_kw": kw, "technology": tech}
        out.append(candidate_from_fields(raw, start_index + i, "--site", None, queue_after))
    return out


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def check_candidates(
    candidates: Sequence[Candidate], network: Network, existing: Sequence[Site], file: str
) -> None:
    """Unknown nodes and clashing ids, all at once."""
    problems = []
    ids = {s.id for s in existing}
    for c in candidates:
        if c.site.node not in network.node_index:
            problems.append(f"{c.site.id}: unknown node {c.site.node!r}")
        if c.site.id in ids:
            problems.append(f"{c.site.id}: the id is already a site")
        ids.add(c.site.id)
    if problems:
        raise CandidateError("; ".join(problems), file, "node" if "node" in problems[0] else "id")
