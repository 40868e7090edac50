"""Per-interval limits -> envelope blocks: consecutive equal intervals merge into one control.

A device holds one DERControl per change of limit rather than one per interval, and republishing
an unchanged envelope leaves its blocks (and so the device's controls) exactly as they were: a
block keeps the creation time of the publication that first produced it. Blocks are numpy
structured arrays (`BLOCK_DTYPE`) so a 10,000-site publication stays vectorised.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

#: float64 limits: a limit is never rounded up on its way to storage and back.
BLOCK_DTYPE = np.dtype(
    [("start", "<i8"), ("duration", "<i8"), ("export_w", "<f8"), ("import_w", "<f8"), ("created", "<i8")]
)
_KEY = ["start", "duration", "export_w", "import_w"]


@dataclass(frozen=True)
class Block:
    """One block as a plain value, for rendering and tests."""

    start_s: int
    duration_s: int
    export_limit_w: float
    import_limit_w: float
    created_s: int = 0

    @property
    def end_s(self) -> int:
        return self.start_s + self.duration_s


def to_blocks(arr: np.ndarray) -> list[Block]:
    return [
        Block(
            int(r["start"]), int(r["duration"]), float(r["export_w"]), float(r["import_w"]), int(r["created"])
        )
        for r in arr
    ]


def from_blocks(blocks: list[Block]) -> np.ndarray:
    return np.array(
        [(b.start_s, b.duration_s, b.export_limit_w, b.import_limit_w, b.created_s) for b in blocks],
        dtype=BLOCK_DTYPE,
    )


def quantize_w(values: np.ndarray, resolution_w: float) -> np.ndarray:
    """Round limits down to the resolution: a published limit never exceeds the computed one."""
    return np.floor(np.asarray(values, dtype=float) / resolution_w) * resolution_w


def merge_blocks(
    starts_s: np.ndarray,
    interval_s: int,
    export_w: np.ndarray,
    import_w: np.ndarray,
    resolution_w: float = 1.0,
    created_s: int = 0,
) -> np.ndarray:
    """Blocks of consecutive intervals whose limits agree after rounding down to `resolution_w`."""
    if not (len(starts_s) == len(export_w) == len(import_w)):
        raise ValueError("starts, export and import must have one value per interval")
    out = np.zeros(0, dtype=BLOCK_DTYPE)
    if len(starts_s) == 0:
        return out
    starts_s = np.asarray(starts_s, dtype=np.int64)
    exp = quantize_w(export_w, resolution_w)
    imp = quantize_w(import_w, resolution_w)
    change = np.flatnonzero((np.diff(exp) != 0) | (np.diff(imp) != 0) | (np.diff(starts_s) != interval_s)) + 1
    first = np.concatenate(([0], change))
    last = np.concatenate((change, [len(starts_s)])) - 1
    out = np.zeros(len(first), dtype=BLOCK_DTYPE)
    out["start"] = starts_s[first]
    out["duration"] = starts_s[last] - starts_s[first] + interval_s
    out["export_w"] = exp[first]
    out["import_w"] = imp[first]
    out["created"] = created_s
    return out


def carry_forward(
    previous: np.ndarray,
    starts_s: np.ndarray,
    interval_s: int,
    export_w: np.ndarray,
    import_w: np.ndarray,
    now_s: int,
    created_s: int,
    resolution_w: float = 1.0,
) -> tuple[np.ndarray, int]:
    """The blocks to publish now, given what devices already hold (`previous`), and how many are fresh.

    - The block running at `now_s` is continued backwards when the new envelope starts with the same
      limits, so an unchanged envelope reproduces it exactly.
    - A new block identical to a previous one keeps that one's creation time (same event, no churn).
    - A running block that the new envelope changes is kept, so it can be superseded by the newer,
      overlapping block (IEEE 2030.5 event rules) rather than vanish from under the device.
    """
    new = merge_blocks(starts_s, interval_s, export_w, import_w, resolution_w, created_s)
    if len(previous) == 0:
        return new, len(new)
    running_at = np.flatnonzero(
        (previous["start"] <= now_s) & (now_s < previous["start"] + previous["duration"])
    )
    running = previous[running_at[0]] if len(running_at) else None
    if (
        running is not None
        and len(new)
        and running["start"] < new[0]["start"]
        and running["export_w"] == new[0]["export_w"]
        and running["import_w"] == new[0]["import_w"]
    ):
        new[0]["duration"] += new[0]["start"] - running["start"]
        new[0]["start"] = running["start"]
    tail = previous[previous["start"] + previous["duration"] > new[0]["start"]] if len(new) else previous
    if len(tail) == len(new) and all(np.array_equal(tail[k], new[k]) for k in _KEY):
        return tail.copy(), 0  # unchanged: the common case of a republication, kept whole
    # Identical blocks keep their creation time: match on start, then compare the other key fields.
    ordered = previous[np.argsort(previous["start"], kind="stable")]
    at = np.searchsorted(ordered["start"], new["start"])
    cand = ordered[np.minimum(at, len(ordered) - 1)]
    same = (at < len(ordered)) & np.logical_and.reduce([cand[k] == new[k] for k in _KEY])
    new["created"][same] = cand["created"][same]
    fresh = int(np.count_nonzero(~same))
    if running is not None and not np.any(np.logical_and.reduce([new[k] == running[k] for k in _KEY])):
        new = np.concatenate((previous[running_at[:1]], new))
    return new, fresh


def in_force(blocks: np.ndarray, from_s: int, until_s: int) -> np.ndarray:
    """The limits devices had in force over [from_s, until_s), as non-overlapping blocks.

    Where blocks overlap (a running block superseded by a newer one) the newest by creation time wins,
    as IEEE 2030.5 event rules make a device apply it; times no block covers are left out (the device
    was on its DefaultDERControl). Each returned block keeps the creation time of the block it came
    from: when devices could first have known the limit.
    """
    if until_s <= from_s or len(blocks) == 0:
        return np.zeros(0, dtype=BLOCK_DTYPE)
    ends = blocks["start"] + blocks["duration"]
    cuts = np.unique(np.clip(np.concatenate((blocks["start"], ends, [from_s, until_s])), from_s, until_s))
    pieces: list[list[float]] = []  # start, duration, export, import, created
    for a, b in itertools.pairwise(cuts):
        covering = np.flatnonzero((blocks["start"] <= a) & (ends >= b))
        if len(covering) == 0:
            continue
        top = covering[np.lexsort((blocks["start"][covering], blocks["created"][covering]))[-1]]
        row = blocks[top]
        limits = [float(row["export_w"]), float(row["import_w"]), float(row["created"])]
        if pieces and pieces[-1][0] + pieces[-1][1] == a and pieces[-1][2:] == limits:
            pieces[-1][1] += float(b - a)
        else:
            pieces.append([float(a), float(b - a), *limits])
    out = np.zeros(len(pieces), dtype=BLOCK_DTYPE)
    for i, (start, duration, export_w, import_w, created) in enumerate(pieces):
        out[i] = (int(start), int(duration), export_w, import_w, int(created))
    return out
