"""What one attempt at a recomputation came to: the scheduler logs it, the simulator reports it."""

from __future__ import annotations

from dataclasses import dataclass

from gridshare.store.publication.envelopes import PublishSummary


@dataclass(frozen=True)
class Outcome:
    status: str  # published | skipped | failed
    reason: str
    envelope_set_id: int | None = None
    summary: PublishSummary | None = None
    detail: str = ""
    compute_s: float = 0.0
    publish_s: float = 0.0
    action: str = ""  # what the failure policy did: "fallback published" | "expiring"
