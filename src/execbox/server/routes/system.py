"""Health and metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import Response

from ...errors import PermissionDenied
from ..services import principal_of, services_of

__all__ = ["router"]

router = APIRouter(tags=["system"])


@router.get("/healthz", summary="Liveness: the only route that needs no key")
async def healthz(request: Request) -> dict[str, Any]:
    services = getattr(request.app.state, "services", None)
    return {"status": "ok" if services is not None else "starting"}


@router.get("/metrics", summary="Prometheus metrics (admin keys only)", response_class=Response)
async def metrics(request: Request) -> Response:
    if not principal_of(request).admin:
        raise PermissionDenied("metrics need an admin key")
    services = services_of(request)
    body = services.metrics.render(services.engine, services.quotas)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
