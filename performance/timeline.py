"""The limits one site had in force over time: spans from published envelopes, the default in the gaps."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LimitTimeline:
    """Non-overlapping spans [start_s, end_s) sorted by start, each with its limits (W) and the time
    devices could first know them (`known_s`: its publication). Times no span covers are on the
    DefaultDERControl, whose limits are `default_export_w` / `default_import_w` (inf: none)."""

    start_s: np.ndarray
    end_s: np.ndarray
    export_w: np.ndarray
    import_w: np.ndarray
    known_s: np.ndarray
    fallback: np.ndarray  # bool: the span came from fallback-valued envelopes
    default_export_w: float = math.inf
    default_import_w: float = math.inf

    @classmethod
    def build(
        cls,
        spans: list[tuple[int, int, float, float, int, bool]],
        default_export_w: float | None = None,
        default_import_w: float | None = None,
    ) -> LimitTimeline:
        """From (start, end, export W, import W, known, fallback) tuples; a later span cuts an earlier one."""
        ordered = sorted(spans, key=lambda s: s[0])
        kept: list[tuple[int, int, float, float, int, bool]] = []
        for span in ordered:
            start = span[0]
            while kept and kept[-1][1] > start:  # overlap: cut the earlier span back
                last = kept.pop()
                if last[0] < start:
                    kept.append((last[0], start, *last[2:]))
                    break
            if span[1] > span[0]:
                kept.append(span)
        columns = list(zip(*kept, strict=True)) if kept else [()] * 6
        return cls(
            start_s=np.asarray(columns[0], dtype=np.int64),
            end_s=np.asarray(columns[1], dtype=np.int64),
            export_w=np.asarray(columns[2], dtype=float),
            import_w=np.asarray(columns[3], dtype=float),
            known_s=np.asarray(columns[4], dtype=np.int64),
            fallback=np.asarray(columns[5], dtype=bool),
            default_export_w=math.inf if default_export_w is None else float(default_export_w),
            default_import_w=math.inf if default_import_w is None else float(default_import_w),
        )

    def index_at(self, t_s: np.ndarray) -> np.ndarray:
        """Index of the span in force at each time, -1 where none is (the default)."""
        t = np.asarray(t_s, dtype=np.int64)
        i = np.searchsorted(self.start_s, t, side="right") - 1
        ok = (i >= 0) & (t < self.end_s[np.maximum(i, 0)]) if len(self.start_s) else np.zeros(len(t), bool)
        return np.where(ok, i, -1)

    def at(self, t_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(export W, import W) in force at each time."""
        i = self.index_at(t_s)
        safe = np.maximum(i, 0)
        export = np.where(i >= 0, self.export_w[safe] if len(self.export_w) else 0.0, self.default_export_w)
        imp = np.where(i >= 0, self.import_w[safe] if len(self.import_w) else 0.0, self.default_import_w)
        return export.astype(float), imp.astype(float)

    def step_times(self, t_s: np.ndarray) -> np.ndarray:
        """When the limit in force at each time took effect for the device: the later of its start and
        its publication (a gap's default takes effect when the span before it ends)."""
        t = np.asarray(t_s, dtype=np.int64)
        i = self.index_at(t)
        safe = np.maximum(i, 0)
        if not len(self.start_s):
            return np.full(len(t), np.iinfo(np.int64).min // 2)
        in_span = np.maximum(self.start_s[safe], self.known_s[safe])
        before = np.searchsorted(self.end_s, t, side="right") - 1  # last span that ended by t
        gap_start = np.where(before >= 0, self.end_s[np.maximum(before, 0)], np.iinfo(np.int64).min // 2)
        return np.where(i >= 0, in_span, gap_start)

    def before_step(self, t_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(export W, import W) in force just before the limit at each time took effect."""
        i = self.index_at(t_s)
        starts = np.where(
            i >= 0,
            self.start_s[np.maximum(i, 0)] if len(self.start_s) else 0,
            self.step_times(t_s),
        )
        return self.at(starts - 1)
