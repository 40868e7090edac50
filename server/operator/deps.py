"""What the operator routes share for reading: a session behind a valid token, paging, ids, 404s."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, TypeVar

from fastapi import Depends, HTTPException, Path, Query, Request
from sqlalchemy.orm import Session

from gridshare.server.operator.auth import Caller, authenticate, context

T = TypeVar("T")

#: Database ids are 32-bit; bounding path ids keeps a huge number a 422 instead of a driver overflow.
Id = Annotated[int, Path(ge=0, le=2**31 - 1, description="database id")]
MAX_PAGE = 500


@dataclass(frozen=True)
class Paging:
    start: int
    limit: int


def paging(
    start: int = Query(0, ge=0, le=2**31 - 1, description="index of the first item"),
    limit: int = Query(100, ge=1, le=MAX_PAGE, description="items per page"),
) -> Paging:
    return Paging(start, limit)


def read_session(request: Request, _caller: Caller = Depends(authenticate)) -> Iterator[Session]:
    """A read-only session for any valid token (viewer or operator)."""
    with context(request).sessions() as session:
        yield session


def found(row: T | None, what: str) -> T:
    """The row, or a 404 naming what was not found."""
    if row is None:
        raise HTTPException(404, f"no such {what}")
    return row
