"""Every request needs a key, checked here before any route runs, WebSocket upgrades included.

Keys arrive as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``, never in a URL (URLs
end up in logs). The only route without a key is ``/healthz``, which says nothing but "up".
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from ..store.accounts import Principal, parse_key
from .responses import error_body

__all__ = ["PUBLIC_PATHS", "AuthMiddleware", "bearer_token"]

PUBLIC_PATHS = frozenset({"/healthz"})


def bearer_token(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" else ""
        if name == b"x-api-key":
            return value.decode("latin-1").strip()
    return None


class AuthMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        services = getattr(scope["app"].state, "services", None)
        principal: Principal | None = None
        if services is not None and services.settings.no_auth:
            principal = scope["app"].state.local_principal
            message = ""
        else:
            token = bearer_token(scope["headers"])
            if token is None:
                message = "missing API key: send 'Authorization: Bearer <key>'"
            elif parse_key(token) is None:
                message = "malformed API key"
            else:
                principal = await services.store.principal(token) if services else None
                message = "unknown or revoked API key"
        if principal is None:
            await _refuse(scope, receive, send, message)
            return
        scope["execbox.principal"] = principal
        await self.app(scope, receive, send)


async def _refuse(scope: Scope, receive: Receive, send: Send, message: str) -> None:
    body = json.dumps(error_body("AuthenticationError", message)).encode()
    headers: list[tuple[bytes, bytes]] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"www-authenticate", b"Bearer"),
    ]
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 401, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    first: Any = await receive()  # websocket.connect
    if first.get("type") != "websocket.connect":
        return
    if "websocket.http.response" in scope.get("extensions", {}):
        await send({"type": "websocket.http.response.start", "status": 401, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 4401, "reason": "unauthorized"})
