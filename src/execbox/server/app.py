"""The ASGI app: the store, then the engine whose journal writes to it, then the routes.

Start-up order matters for crash safety: the database is migrated, records a previous process
left running are ended as ``error`` / ``server_restart``, and the backend destroys the boxes
that process left (by their cgroups and records) before the first request is served.
Shutdown runs the other way: the engine ends every session and job (recording each), then
the store closes.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.middleware import Middleware

from .. import __version__
from ..engine import Engine
from ..store import Store
from .auth import AuthMiddleware
from .metrics import Metrics
from .middleware import BodyLimitMiddleware, RequestLogMiddleware
from .quotas import Quotas
from .records import Records
from .responses import install_error_handlers
from .routes import ROUTERS
from .services import Services
from .settings import ServerSettings

__all__ = ["create_app"]

log = logging.getLogger("execbox.server")

DESCRIPTION = """\
Run untrusted Python in isolated boxes: one-shot **jobs** and stateful **sessions** (Jupyter
kernels). Every route except `/healthz` needs an API key: `Authorization: Bearer <key>`.

WebSockets (not listed below, which OpenAPI cannot describe):
`/v1/sessions/{id}/stream` runs code and streams events; `/v1/sessions/{id}/executions/{eid}/stream`
streams one execution. See the README for their messages.

The **Jupyter kernel gateway API** (`/api/kernelspecs`, `/api/kernels`, and the WebSocket
`/api/kernels/{id}/channels` speaking the Jupyter messaging protocol as JSON) serves Jupyter
clients; a kernel is a session. There a key may also be sent as `Authorization: token <key>` or
`?token=<key>`, as Jupyter clients send it; nowhere else.
"""


def create_app(settings: ServerSettings | None = None) -> FastAPI:
    settings = settings or ServerSettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with Store(settings.database_url) as store:
            ended = await store.reconcile()
            if any(ended.values()):
                log.warning("ended what a previous server process left running", extra=ended)
            metrics, quotas = Metrics(), Quotas()
            records = Records(store, metrics, quotas)
            engine = Engine(
                backend=settings.backend,
                pool_size=settings.pool_size,
                session_pool_size=settings.session_pool_size,
                max_concurrent=settings.max_concurrent_jobs,
                kernel_packages=settings.kernel_packages,
                journal=records,
                retention=settings.retention,
            )
            async with engine:
                if settings.no_auth:
                    app.state.local_principal = await store.local_principal()
                    log.warning(
                        "--no-auth: every request is served without a key, as tenant 'local'"
                    )
                app.state.services = Services(settings, store, engine, quotas, metrics)
                try:
                    yield
                finally:
                    del app.state.services

    app = FastAPI(
        title="execbox",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        middleware=[
            Middleware(RequestLogMiddleware),
            Middleware(AuthMiddleware),
            Middleware(BodyLimitMiddleware, max_body=settings.max_body),
        ],
    )
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The generated schema, with the API key declared for every operation but /healthz."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = schema.setdefault("components", {})
        components["securitySchemes"] = {"apiKey": {"type": "http", "scheme": "bearer"}}
        schema["security"] = [{"apiKey": []}]
        schema["paths"].get("/healthz", {}).get("get", {})["security"] = []
        app.openapi_schema = schema
    return app.openapi_schema
