"""List paging for every 2030.5 list: `s` start index, `a` after (epoch s), `l` limit (default 1)."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import HTTPException, Request


@dataclass(frozen=True)
class Page:
    start: int
    limit: int
    after_s: int | None


def _non_negative(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 12:
        raise HTTPException(400, f"query parameter {name!r} must be a non-negative integer")
    return int(raw)


def page(request: Request) -> Page:
    """A FastAPI dependency: 2030.5 §5.4 list query, `l` defaults to 1 and is capped by settings."""
    cap = request.app.state.ctx.settings.list_limit_cap
    start = _non_negative(request, "s") or 0
    limit = _non_negative(request, "l")
    return Page(
        start=start, limit=min(1 if limit is None else limit, cap), after_s=_non_negative(request, "a")
    )
