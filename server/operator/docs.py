"""Interactive API docs at /docs, with Swagger UI served from the installed `swagger-ui-py` package.

FastAPI's default /docs page loads Swagger UI from a CDN, which renders blank on a machine without
internet (utility control rooms, these test machines). The same page here points at
/docs/static/, a mount of the package's own copy of Swagger UI 5 (which reads OpenAPI 3.1).
"""

from __future__ import annotations

import importlib.resources

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS_STATIC = "/docs/static"


def swagger_ui_dir() -> str:
    return str(importlib.resources.files("swagger_ui") / "static")


def install_docs(app: FastAPI) -> None:
    app.mount(DOCS_STATIC, StaticFiles(directory=swagger_ui_dir()), name="swagger-ui")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - docs",
            swagger_js_url=f"{DOCS_STATIC}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_STATIC}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_STATIC}/favicon-32x32.png",
        )
