"""Every error leaves the server as JSON: ``{"error": {"type": ..., "message": ...}}``.

Exceptions of the one tree map to status codes here and nowhere else; anything unexpected is
logged with its traceback and answered 500 without details.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from .. import errors

__all__ = ["STATUS_OF", "error_body", "error_response", "install_error_handlers", "ndjson"]

log = logging.getLogger("execbox.server")

STATUS_OF: list[tuple[type[errors.ExecboxError], int]] = [
    (errors.PayloadTooLarge, 413),
    (errors.InvalidSpec, 400),
    (errors.RequirementsError, 400),
    (errors.AuthenticationError, 401),
    (errors.PermissionDenied, 403),
    (errors.JobNotFound, 404),
    (errors.SessionNotFound, 404),
    (errors.PathNotFound, 404),
    (errors.SessionClosed, 409),
    (errors.InvalidState, 409),
    (errors.QuotaExceeded, 429),
    (errors.ExecboxTimeout, 504),
    (errors.IsolationUnavailable, 503),
    (errors.KernelError, 502),
    (errors.BoxError, 503),
]
_HTTP_TYPES = {400: "BadRequest", 404: "NotFound", 405: "MethodNotAllowed", 413: "PayloadTooLarge"}


def error_body(kind: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"type": kind, "message": message, **extra}}


def _execbox_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, errors.ExecboxError)
    return error_response(exc)


def error_response(exc: errors.ExecboxError) -> JSONResponse:
    """The answer to an error of the tree, for HTTP routes and refused WebSocket upgrades."""
    status = next((code for kind, code in STATUS_OF if isinstance(exc, kind)), 500)
    extra = {"reason": exc.reason} if isinstance(exc, errors.SessionClosed) else {}
    if status == 500:
        log.error("unexpected %s: %s", type(exc).__name__, exc)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(error_body(type(exc).__name__, str(exc), **extra), status, headers)


def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    details = [
        {"loc": list(error.get("loc", ())), "message": error.get("msg", "")}
        for error in exc.errors()
    ]
    first = details[0] if details else {"loc": [], "message": "invalid request"}
    where = ".".join(str(part) for part in first["loc"][1:]) or "body"
    message = f"{where}: {first['message']}"
    if where == "body" and "json" not in request.headers.get("content-type", ""):
        message += " (send a JSON object with 'Content-Type: application/json')"
    return JSONResponse(error_body("ValidationError", message, details=details), 422)


def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    kind = _HTTP_TYPES.get(exc.status_code, "HTTPError")
    return JSONResponse(error_body(kind, str(exc.detail)), exc.status_code, exc.headers)


def _unexpected(_request: Request, exc: Exception) -> Response:
    log.error("unhandled %s", type(exc).__name__, exc_info=exc)
    return JSONResponse(error_body("InternalError", "internal error; see the server log"), 500)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(errors.ExecboxError, _execbox_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)


def ndjson(lines: AsyncIterator[dict[str, Any]]) -> StreamingResponse:
    """One JSON object per line, flushed as each is produced."""

    async def encode() -> AsyncIterator[bytes]:
        async for line in lines:
            yield json.dumps(line, separators=(",", ":")).encode() + b"\n"

    return StreamingResponse(encode(), media_type="application/x-ndjson")
