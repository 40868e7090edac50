"""Constraint series <-> bytes: what the engine computed per constraint with one publication.

One compressed NumPy archive (no pickling) per set: for each direction the constraint names, kinds and
assets, and per interval the rating, the forecast loading, the loading with flexible sites at their
limits, the headroom and the binding flag. float32 is plenty for display (7 significant digits) and
halves the size; NaN marks intervals where a constraint did not exist (envelopes.constraint_series).
"""

from __future__ import annotations

import io

import numpy as np

from gridshare.envelopes.constraint_series import ConstraintSeries
from gridshare.envelopes.headroom import DIRECTIONS, Direction

_FLOATS = ("rating", "forecast", "value", "headroom")


def encode_series(series: dict[Direction, ConstraintSeries]) -> bytes:
    parts: dict[str, np.ndarray] = {}
    for direction, r in series.items():
        parts[f"{direction}.names"] = np.asarray(r.names, dtype=str)
        parts[f"{direction}.kinds"] = np.asarray(r.kinds, dtype=str)
        parts[f"{direction}.assets"] = np.asarray(r.assets, dtype=str)
        for name in _FLOATS:
            parts[f"{direction}.{name}"] = np.asarray(getattr(r, name), dtype=np.float32)
        parts[f"{direction}.binding"] = np.asarray(r.binding, dtype=bool)
    out = io.BytesIO()
    np.savez_compressed(out, **parts)  # type: ignore[arg-type]
    return out.getvalue()


def decode_series(blob: bytes) -> dict[Direction, ConstraintSeries]:
    out: dict[Direction, ConstraintSeries] = {}
    with np.load(io.BytesIO(blob), allow_pickle=False) as data:
        for direction in DIRECTIONS:
            if f"{direction}.names" not in data:
                continue
            floats = {name: data[f"{direction}.{name}"].astype(float) for name in _FLOATS}
            out[direction] = ConstraintSeries(
                direction=direction,
                names=tuple(str(x) for x in data[f"{direction}.names"]),
                kinds=tuple(str(x) for x in data[f"{direction}.kinds"]),
                assets=tuple(str(x) for x in data[f"{direction}.assets"]),
                binding=data[f"{direction}.binding"],
                **floats,
            )
    return out
