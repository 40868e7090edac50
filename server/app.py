"""The 2030.5 / CSIP-AUS ASGI application: routers, and error handling that answers bad input with a 4xx."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse, Response
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from gridshare.server.routes import ders as der_routes
from gridshare.server.routes import (
    discovery,
    end_devices,
    events,
    metering,
    programs,
    subscriptions,
    usage_points,
)
from gridshare.server.shared.context import AppContext
from gridshare.server.shared.fastpath import FastPath
from gridshare.server.wire.errors import error_document
from gridshare.server.wire.xmlio import MEDIA_TYPE, WireError

log = logging.getLogger(__name__)


def _error(
    status: int, reason: str, headers: Mapping[str, str] | None = None, code: int | None = None
) -> Response:
    """Every 4xx is a 2030.5 Error document (clients parse it); the reason rides along as a comment."""
    if not 400 <= status < 500:
        return PlainTextResponse(reason, status_code=status, headers=headers)
    body = error_document(status, reason, code)
    return Response(body, status_code=status, headers=headers, media_type=MEDIA_TYPE)


def create_app(ctx: AppContext) -> FastAPI:
    app = FastAPI(title="GridShare CSIP-AUS endpoint", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.ctx = ctx
    for module in (
        discovery,
        end_devices,
        programs,
        der_routes,
        metering,
        usage_points,
        events,
        subscriptions,
    ):
        app.include_router(module.router)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> Response:
        return _error(exc.status_code, str(exc.detail), exc.headers, getattr(exc, "reason_code", None))

    @app.exception_handler(RequestValidationError)
    async def bad_path(_request: Request, exc: RequestValidationError) -> Response:
        # Only path parameters are typed; a non-numeric id names nothing that exists.
        return _error(404, "no such resource")

    @app.exception_handler(WireError)
    async def bad_body(_request: Request, exc: WireError) -> Response:
        return _error(400, str(exc))

    @app.exception_handler(IntegrityError)
    async def conflict(_request: Request, exc: IntegrityError) -> Response:
        log.warning("write refused by a database constraint: %s", exc.orig)
        return _error(409, "conflicts with existing data")

    @app.exception_handler(DataError)
    async def out_of_range(_request: Request, exc: DataError) -> Response:
        # The last line of defence: a value the routes let through but a column cannot hold (the
        # transaction has rolled back). Each one found is a missing check at the door.
        log.warning("request refused by the database (value out of range): %s", exc.orig)
        return _error(400, "a value is out of range for this server")

    @app.exception_handler(OperationalError)
    async def store_unavailable(_request: Request, exc: OperationalError) -> Response:
        if exc.connection_invalidated:
            # The pooled connection had died (PostgreSQL restarted): the pool has dropped it and the
            # next request connects afresh, so the client is told to try again, not that it failed.
            log.warning("store connection lost, answered 503: %s", exc.orig)
            return PlainTextResponse(
                "store connection lost; retry", status_code=503, headers={"Retry-After": "1"}
            )
        log.error("store error", exc_info=exc)
        return PlainTextResponse("Internal Server Error", status_code=500)

    return app


def create_asgi(ctx: AppContext) -> FastPath:
    """What uvicorn serves: the cached polling fast path in front of the FastAPI application."""
    return FastPath(create_app(ctx), ctx)
