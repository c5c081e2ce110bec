"""Every request needs a key, checked here before any route runs, WebSocket upgrades included.

Keys arrive as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``. The Jupyter kernel
gateway API (``/api``, ``/api/kernels...``, ``/api/kernelspecs...``) also takes them the way
Jupyter clients send them: ``Authorization: token <key>`` or ``?token=<key>`` (a browser's
WebSocket cannot set headers). Nowhere else does a key in a URL count. Whatever in a query
string looks like a key is removed from the request before anything else sees it, so no log
line (uvicorn's WebSocket lines print the query string) ever holds one. The only route without
a key is ``/healthz``, which says nothing but "up".
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.types import ASGIApp, Receive, Scope, Send

from ..store.accounts import Principal, parse_key
from .responses import error_body

__all__ = ["JUPYTER_PATHS", "PUBLIC_PATHS", "AuthMiddleware", "bearer_token", "is_jupyter_path"]

PUBLIC_PATHS = frozenset({"/healthz"})
JUPYTER_PATHS = ("/api/kernels", "/api/kernelspecs")
"""With ``/api`` itself, the paths of the Jupyter API; other ``/api/...`` routes are not."""
QUERY_TOKEN = "token"  # noqa: S105 - the name of a query parameter


def is_jupyter_path(path: str) -> bool:
    return path == "/api" or any(path == p or path.startswith(p + "/") for p in JUPYTER_PATHS)


def bearer_token(headers: list[tuple[bytes, bytes]], *, jupyter: bool = False) -> str | None:
    """The key of the request's headers; "" for an Authorization header of a scheme not taken
    here (``token`` is taken on Jupyter paths only); None when there is no key header."""
    schemes = ("bearer", "token") if jupyter else ("bearer",)
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() in schemes else ""
        if name == b"x-api-key":
            return value.decode("latin-1").strip()
    return None


def _take_query_token(scope: Scope) -> str | None:
    """The ``token`` query parameter, removed from the scope with anything else key-shaped."""
    raw: bytes = scope.get("query_string", b"")
    if not raw:
        return None
    pairs = parse_qsl(raw.decode("latin-1"), keep_blank_values=True)
    token = next((value for name, value in pairs if name == QUERY_TOKEN), None)
    kept = [(n, v) for n, v in pairs if n != QUERY_TOKEN and parse_key(v.strip()) is None]
    if len(kept) != len(pairs):
        scope["query_string"] = urlencode(kept).encode("latin-1")
    return token


class AuthMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        jupyter = is_jupyter_path(scope["path"])
        in_url = _take_query_token(scope)
        if scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        services = getattr(scope["app"].state, "services", None)
        principal: Principal | None = None
        if services is not None and services.settings.no_auth:
            principal = scope["app"].state.local_principal
            message = ""
        else:
            token = bearer_token(scope["headers"], jupyter=jupyter)
            if token is None and jupyter:
                token = in_url
            if token is None:
                message = "missing API key: send 'Authorization: Bearer <key>'"
                if jupyter:
                    message += " (or 'Authorization: token <key>', or ?token=<key>)"
            elif parse_key(token) is None:
                message = "malformed API key"
            else:
                principal = await services.store.principal(token) if services else None
                message = "unknown or revoked API key"
        if principal is None:
            await _refuse(scope, receive, send, message, jupyter=jupyter)
            return
        scope["execbox.principal"] = principal
        await self.app(scope, receive, send)


async def _refuse(
    scope: Scope, receive: Receive, send: Send, message: str, *, jupyter: bool
) -> None:
    data = error_body("AuthenticationError", message)
    if jupyter:  # Jupyter's clients read these two
        data.update(message=message, reason="Unauthorized")
    body = json.dumps(data).encode()
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
