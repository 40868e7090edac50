"""Named example networks shipped inside the package, so an installed wheel has them too.

Used by the demo a fresh `gridshare serve` loads, by the docs, tests and benchmarks alike.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

#: Example network names and their files in this package.
EXAMPLES: dict[str, str] = {"demo-feeder": "demo-feeder.yaml"}


def example_path(name: str) -> Path:
    """The file of a named example network (KeyError names the known ones)."""
    try:
        filename = EXAMPLES[name]
    except KeyError:
        raise KeyError(f"no example network {name!r}; known: {', '.join(sorted(EXAMPLES))}") from None
    return Path(str(resources.files(__name__).joinpath(filename)))


def demo_feeder_path() -> Path:
    """The 30-site demo feeder a fresh server loads."""
    return example_path("demo-feeder")
