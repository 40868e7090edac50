"""Error answers of the operator API, all JSON.

Checks pydantic cannot express on one field (a floor above a maximum, a control that has already
ended, an lFDI in a path) raise `FieldError`, which answers 422 in exactly the shape FastAPI uses for
its own validation errors: `{"detail": [{"type", "loc", "msg"}]}`, with `loc` naming the field.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError

log = logging.getLogger(__name__)

Loc = tuple[str | int, ...]


class FieldError(Exception):
    """One or more invalid fields; answered with 422 and nothing written."""

    def __init__(self, loc: Loc, msg: str, *more: tuple[Loc, str]) -> None:
        super().__init__(msg)
        self.errors = [(loc, msg), *more]

    def detail(self) -> list[dict[str, object]]:
        return [{"type": "value_error", "loc": list(loc), "msg": msg} for loc, msg in self.errors]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own handler echoes the input, which fails to render for NaN (a 500) and would
        # repeat whole PEM bodies; the field and the reason are what an operator needs.
        detail = [{"type": e["type"], "loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(FieldError)
    async def field_error(_request: Request, exc: FieldError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail()}, status_code=422)

    @app.exception_handler(IntegrityError)
    async def conflict(_request: Request, exc: IntegrityError) -> JSONResponse:
        # A race past our own duplicate checks (two operators at once) still ends as a clean 409.
        log.warning("operator write refused by a database constraint: %s", exc.orig)
        return JSONResponse({"detail": "conflicts with existing data"}, status_code=409)
