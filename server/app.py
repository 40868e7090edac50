"""The 2030.5 / CSIP-AUS ASGI application: routers, and error handling that answers bad input with a 4xx."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse
from sqlalchemy.exc import IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException

from server.context import AppContext
from server.fastpath import FastPath
from server.routes import ders as der_routes
from server.routes import discovery, end_devices, events, metering, programs
from server.wire.xmlio import WireError

log = logging.getLogger(__name__)


def create_app(ctx: AppContext) -> FastAPI:
    app = FastAPI(title="GridShare CSIP-AUS endpoint", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.ctx = ctx
    for module in (discovery, end_devices, programs, der_routes, metering, events):
        app.include_router(module.router)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> PlainTextResponse:
        return PlainTextResponse(str(exc.detail), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def bad_path(_request: Request, exc: RequestValidationError) -> PlainTextResponse:
        # Only path parameters are typed; a non-numeric id names nothing that exists.
        return PlainTextResponse("no such resource", status_code=404)

    @app.exception_handler(WireError)
    async def bad_body(_request: Request, exc: WireError) -> PlainTextResponse:
        return PlainTextResponse(str(exc), status_code=400)

    @app.exception_handler(IntegrityError)
    async def conflict(_request: Request, exc: IntegrityError) -> PlainTextResponse:
        log.warning("write refused by a database constraint: %s", exc.orig)
        return PlainTextResponse("conflicts with existing data", status_code=409)

    return app


def create_asgi(ctx: AppContext) -> FastPath:
    """What uvicorn serves: the cached polling fast path in front of the FastAPI application."""
    return FastPath(create_app(ctx), ctx)
