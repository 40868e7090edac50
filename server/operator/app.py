"""The operator API application: JSON routers, OpenAPI at /openapi.json, interactive docs at /docs."""

from __future__ import annotations

from fastapi import FastAPI

from gridshare.server.operator import (
    routes_access,
    routes_aggregators,
    routes_audit,
    routes_console,
    routes_controls,
    routes_curves,
    routes_decommission,
    routes_fallback,
    routes_network,
    routes_nmis,
    routes_notifications,
    routes_programs,
    routes_rates,
    routes_sites,
    routes_views,
)
from gridshare.server.operator.docs import install_docs
from gridshare.server.operator.errors import install_error_handlers
from gridshare.server.operator.metrics_view import install_metrics
from gridshare.server.operator.web.routes import install_console
from gridshare.server.shared.context import AppContext

ROUTERS = (
    routes_aggregators,
    routes_access,
    routes_sites,
    routes_nmis,
    routes_decommission,
    routes_programs,
    routes_controls,
    routes_curves,
    routes_network,
    routes_fallback,
    routes_rates,
    routes_views,
    routes_notifications,
    routes_audit,
    routes_console,
)


def create_operator_app(ctx: AppContext) -> FastAPI:
    """A separate application (and listener) from the device endpoint: nothing here is on the mTLS port."""
    app = FastAPI(
        title="GridShare operator API",
        version="1",
        description=(
            "Manage aggregators, certificates, sites, programs, controls and rates of the CSIP-AUS "
            "endpoint. Send `Authorization: Bearer <token>` (from `gridshare admin token create`); "
            "`viewer` tokens read, `operator` tokens also write. Every write is validated (422 names "
            "the field) and recorded in the audit log (`GET /audit`). Lists take `start` and `limit`."
        ),
        openapi_url="/openapi.json",
        docs_url=None,  # served from the installed swagger-ui package below, not a CDN
        redoc_url=None,
    )
    app.state.ctx = ctx
    install_error_handlers(app)
    for module in ROUTERS:
        app.include_router(module.router)
    install_docs(app)
    install_metrics(app)
    install_console(app)
    return app
