"""One page of an ordered query and its total, as the operator API lists things."""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

T = TypeVar("T")


def page_of(session: Session, query: Select[T], *, start: int, limit: int) -> tuple[int, list[T]]:
    """The total of an ordered query and one page of it."""
    total = session.execute(select(func.count()).select_from(query.order_by(None).subquery())).scalar_one()
    rows = session.execute(query.offset(start).limit(limit)).scalars().all()
    return int(total), list(rows)
