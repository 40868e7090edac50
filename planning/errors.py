"""Input errors a planner can act on: the file, the field and the line, with one exit code per kind.

A study reads several files (network, profiles, candidate sites, an imported network); each problem
names which one, which field (a column, or a path such as `sites[3].node`) and the line, so the
person fixing it goes straight there. The CLI turns each kind into its own exit status so scripts
can tell a bad profile from a missing optional package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

#: Exit status of `gridshare plan` per kind of failure (documented in docs/planning.md).
EXIT_CODES: dict[str, int] = {
    "network": 3,
    "profiles": 4,
    "candidates": 5,
    "dependency": 6,
    "study": 7,
    "output": 8,
}


class PlanningError(Exception):
    """A problem with one input: `kind` picks the exit code; file, field and line locate it."""

    kind = "study"

    def __init__(
        self, message: str, file: str | Path | None = None, field: str = "", line: int | None = None
    ):
        self.message = message
        self.file = str(file) if file is not None else None
        self.field = field
        self.line = line
        super().__init__(self.located())

    def located(self) -> str:
        where = self.file or ""
        if self.line is not None:
            where += f":{self.line}" if where else f"line {self.line}"
        prefix = ": ".join(p for p in (where, self.field) if p)
        return f"{prefix}: {self.message}" if prefix else self.message

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.kind]


class NetworkInputError(PlanningError):
    kind = "network"


class ProfileError(PlanningError):
    kind = "profiles"


class CandidateError(PlanningError):
    kind = "candidates"


class MissingDependency(PlanningError):
    kind = "dependency"


class StudyError(PlanningError):
    kind = "study"


class OutputError(PlanningError):
    kind = "output"


def yaml_line(text: str, field_path: str) -> int | None:
    """1-based line of `field_path` (`network.branches[3].rating`) in a YAML/JSON document, if found.

    Walks the composed node tree (which keeps source positions), so a network file problem reported
    by path can also say where to look. Returns the deepest position it could reach.
    """
    try:
        node: Any = yaml.compose(text)
    except yaml.YAMLError:
        return None
    if node is None:
        return None
    line = node.start_mark.line + 1
    for part in _split_path(field_path):
        nxt = None
        if isinstance(part, int) and isinstance(node, yaml.SequenceNode):
            nxt = node.value[part] if 0 <= part < len(node.value) else None
        elif isinstance(part, str) and isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if getattr(key, "value", None) == part:
                    nxt = value
                    line = key.start_mark.line + 1
                    break
        if nxt is None:
            break
        node = nxt
        line = node.start_mark.line + 1 if not isinstance(part, str) else line
    return line


def _split_path(path: str) -> list[str | int]:
    parts: list[str | int] = []
    for chunk in path.split("."):
        if not chunk:
            continue
        name, _, rest = chunk.partition("[")
        if name:
            parts.append(name)
        while rest:
            index, _, rest = rest.partition("]")
            if index.isdigit():
                parts.append(int(index))
            rest = rest.lstrip("[")
    return parts
