"""No room imports a room above it: the layering the README describes holds in the code.

Rooms are the top-level packages (`gridshare.<room>`). Each may import only rooms below it, so the
maths never reach for the store, the engine never for the 2030.5 server, and only `process/` (and
the command line above it) composes everything. Imports inside `if TYPE_CHECKING:` count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

#: Bottom to top; a room may import any room on an earlier line (and rooms on its own line may not
#: import each other).
LAYERS: list[set[str]] = [
    {"core", "certs"},
    {"grid"},
    {"allocation"},
    {"envelopes"},
    {"fallback"},
    {"performance", "planning"},
    {"compute"},
    {"store"},
    {"recompute"},
    {"server"},
    {"sim"},
    {"process"},
]
LEVEL = {room: i for i, layer in enumerate(LAYERS) for room in layer}


def _imports(path: Path) -> set[str]:
    """The rooms a module imports (absolute `gridshare.<room>` imports; relative ones stay in the room)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if len(parts) > 1 and parts[0] == "gridshare" and parts[1] in LEVEL:
                found.add(parts[1])
    return found


def test_every_room_is_in_a_layer() -> None:
    rooms = {p.name for p in (REPO / "gridshare").iterdir() if p.is_symlink()}
    assert rooms == set(LEVEL), f"rooms without a layer: {sorted(rooms - set(LEVEL))}"


def test_no_room_imports_one_above_it_or_beside_it() -> None:
    wrong = []
    for room, level in LEVEL.items():
        for path in sorted((REPO / room).rglob("*.py")):
            for other in _imports(path) - {room}:
                if LEVEL[other] >= level:
                    wrong.append(
                        f"{path.relative_to(REPO)} imports {other} (layer {LEVEL[other]} >= {level})"
                    )
    assert not wrong, "\n".join(wrong)
