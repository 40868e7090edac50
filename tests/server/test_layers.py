"""server/ keeps its layers (server/__init__.py): a package imports only packages below it.

A new import that breaks the layering fails here with the module and the import, before it becomes a
cycle somebody has to untangle.
"""

from __future__ import annotations

import ast
from pathlib import Path

SERVER = Path(__file__).resolve().parents[2] / "server"

#: Layer of each part of server/ (higher may import lower, never the reverse; equals never each other).
LAYERS = {
    "wire": 0,
    "shared": 1,
    "subscriptions": 2,
    "routes": 3,
    "notify": 3,
    "operator": 3,
    "": 4,  # root modules: the device app factory and its TLS listener
}
#: Root modules that lower layers still import, because they are on their way out of server/ (the
#: runtime context and mRIDs to core/, the CLI helpers to the process room); not a precedent.
LEAVING_SERVER = {"gridshare.server.shared.context", "gridshare.core.mrid", "gridshare.process.cli_support"}


def _part(module: str) -> str:
    parts = module.split(".")[2:]  # gridshare.server.<part>...
    return parts[0] if parts and parts[0] in LAYERS else ""


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
    return found


def _violations() -> list[str]:
    out = []
    for path in sorted(SERVER.rglob("*.py")):
        rel = path.relative_to(SERVER)
        here = rel.parts[0] if len(rel.parts) > 1 else ""
        for line, module in _imports(path):
            if module.startswith("gridshare.store") and here == "wire":
                out.append(f"{rel}:{line} imports {module}: the wire format reads nothing from the store")
            if not module.startswith("gridshare.server.") or module in LEAVING_SERVER:
                continue
            there = _part(module)
            if there == here:
                continue
            if LAYERS[there] >= LAYERS[here]:
                out.append(
                    f"{rel}:{line} imports {module} (layer {there or 'root'} is not below {here or 'root'})"
                )
    return out


def test_server_imports_only_downward() -> None:
    assert _violations() == []
