"""Size caps and the request log, as plain ASGI middleware around the whole app."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import anyio
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import PayloadTooLarge
from .responses import error_body

__all__ = ["BodyLimitMiddleware", "RequestLogMiddleware"]

log = logging.getLogger("execbox.server.requests")

CLIENT_CLOSED = 499
"""Logged for a request whose client left before it was read (nginx's convention)."""
DRAIN_BYTES = 16 << 20
DRAIN_SECONDS = 5.0
"""How much of a refused body is read and dropped before the 413 goes out. A client still
sending when the server closes gets a reset instead of the answer; past these bounds the
connection is closed all the same."""


async def _drain(receive: Receive, already: int = 0) -> None:
    """Read and discard what is left of a request body, within ``DRAIN_*``."""
    seen = already
    with anyio.move_on_after(DRAIN_SECONDS):
        while seen <= DRAIN_BYTES:
            message = await receive()
            if message["type"] != "http.request":
                return
            seen += len(message.get("body", b""))
            if not message.get("more_body", False):
                return


class BodyLimitMiddleware:
    """413 for a declared length over the cap, and for a streamed body once it passes it."""

    def __init__(self, app: ASGIApp, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body:
                await _drain(receive)
                await self._too_large(send)
                return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    if message.get("more_body", False):
                        await _drain(receive, seen)
                    raise PayloadTooLarge(f"the request body is over {self.max_body} bytes")
            return message

        await self.app(scope, limited, send)

    async def _too_large(self, send: Send) -> None:
        message = f"the request body is over the server's cap of {self.max_body} bytes"
        body = json.dumps(error_body("PayloadTooLarge", message)).encode()
        headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class RequestLogMiddleware:
    """One structured line per request: never a header, a query string or a body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status: dict[str, Any] = {"code": None}

        async def watched(message: Message) -> None:
            kind = message["type"]
            if kind in ("http.response.start", "websocket.http.response.start"):
                status["code"] = message["status"]
            elif kind == "websocket.accept":
                status["code"] = 101
            elif kind == "websocket.close" and status["code"] is None:
                status["code"] = 403
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except ClientDisconnect:  # hung up mid-body: nothing to answer, and not our error
            status["code"] = CLIENT_CLOSED
        finally:
            principal = scope.get("execbox.principal")
            code = status["code"] or 500
            services = getattr(scope["app"].state, "services", None)
            if services is not None:
                services.metrics.requests.labels(
                    scope.get("method", "WS"), f"{code // 100}xx"
                ).inc()
            log.info(
                "request",
                extra={
                    "method": scope.get("method", "WEBSOCKET"),
                    "path": scope["path"],
                    "status": code,
                    "ms": round((time.perf_counter() - started) * 1000, 2),
                    "tenant": principal.tenant_name if principal else None,
                    "key_id": principal.key_id if principal else None,
                },
            )
