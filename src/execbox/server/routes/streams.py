"""WebSockets: a session's socket runs code and streams every execution's events; an
execution's socket streams one. Both take input replies and interrupts from the client.

Client messages (JSON text)::

    {"type": "execute", "code": "...", "timeout": 30, "ref": "any client tag"}
    {"type": "input", "execution_id": "exe_...", "value": "text"}
    {"type": "interrupt"}

Server messages: ``{"type": "accepted", "execution_id", "ref"}``, then each event of the
execution (``stream``, ``display``, ``result``, ``error``, ``input_request``,
``clear_output``, and last ``end`` with the result), each with its ``execution_id``;
``{"type": "error", "error": {...}, "ref"}`` for a message that could not be carried out.
A message over the server's cap closes the socket with 1009.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import anyio
from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from ...errors import ExecboxError, InvalidSpec, SessionNotFound
from ...models.wire import to_json
from ..responses import error_body, error_response
from ..services import Services, principal_of, services_of
from ..views import execution_view
from .sessions import open_session, submit_execution

__all__ = ["router"]

router = APIRouter(prefix="/v1/sessions")

MESSAGE_TOO_BIG = 1009


class _Socket:
    """An accepted socket: sends from many tasks, one at a time; messages size-checked."""

    def __init__(self, websocket: WebSocket, max_message: int) -> None:
        self.websocket = websocket
        self.max_message = max_message
        self._lock = anyio.Lock()

    async def send(self, data: dict[str, Any]) -> None:
        async with self._lock:
            await self.websocket.send_text(json.dumps(data, separators=(",", ":")))

    async def send_error(self, exc: ExecboxError, ref: Any = None) -> None:
        await self.send(
            {
                "type": "error",
                "error": error_body(type(exc).__name__, str(exc))["error"],
                "ref": ref,
            }
        )

    async def receive(self) -> dict[str, Any] | None:
        """The next message as a dict; None once the client is gone or was closed for size."""
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return None
            text = message.get("text")
            if text is None:
                text = (message.get("bytes") or b"").decode("utf-8", "replace")
            if len(text) > self.max_message:
                await self.websocket.close(MESSAGE_TOO_BIG, "message too big")
                return None
            try:
                data = json.loads(text)
            except ValueError:
                await self.send_error(InvalidSpec("messages must be JSON objects"))
                continue
            if isinstance(data, dict):
                return data
            await self.send_error(InvalidSpec("messages must be JSON objects"))


async def _deny(websocket: WebSocket, exc: ExecboxError) -> None:
    """Refuse the upgrade with the status and JSON body an HTTP route would have answered."""
    denial = error_response(exc)
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(denial)
    else:
        await websocket.close(4000 + denial.status_code, str(exc)[:120])


async def _accept(websocket: WebSocket, services: Services, session_id: str) -> _Socket | None:
    """Accept the upgrade for an open session of the caller's tenant, else deny it."""
    try:
        await open_session(websocket, session_id)
    except ExecboxError as exc:
        await _deny(websocket, exc)
        return None
    await websocket.accept()
    return _Socket(websocket, services.settings.max_message)


async def _forward(socket: _Socket, services: Services, session_id: str, execution_id: str) -> None:
    async for event in services.engine.sessions.events(session_id, execution_id):
        data = to_json(event)
        data["execution_id"] = execution_id
        await socket.send(data)


async def _handle(
    socket: _Socket, services: Services, session_id: str, message: dict[str, Any]
) -> str | None:
    """Carry out one client message; returns the id of an execution it started."""
    kind = message.get("type")
    sessions = services.engine.sessions
    if kind == "execute":
        code, timeout = message.get("code"), message.get("timeout")
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float)
        ):
            raise InvalidSpec("timeout must be a number of seconds")
        principal = principal_of(socket.websocket)
        execution_id = await submit_execution(services, principal, session_id, code, timeout)  # type: ignore[arg-type]
        await socket.send(
            {"type": "accepted", "execution_id": execution_id, "ref": message.get("ref")}
        )
        return execution_id
    if kind == "input":
        target, value = message.get("execution_id"), message.get("value")
        if not isinstance(target, str) or not isinstance(value, str):
            raise InvalidSpec("input needs execution_id and value, both strings")
        sessions.send_input(session_id, target, value)
    elif kind == "interrupt":
        await sessions.interrupt(session_id)
    else:
        raise InvalidSpec(f"unknown message type {kind!r}: use execute, input or interrupt")
    return None


async def _serve(socket: _Socket, services: Services, session_id: str, first: str | None) -> None:
    """Read client messages until the client leaves (or, with ``first``, its execution ends)."""
    async with anyio.create_task_group() as tg:

        async def forward(execution_id: str, last: bool) -> None:
            # A client that left stops its stream; the execution goes on and is recorded.
            with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                await _forward(socket, services, session_id, execution_id)
            if last:
                tg.cancel_scope.cancel()

        if first is not None:
            tg.start_soon(forward, first, True)
        while True:
            message = await socket.receive()
            if message is None:
                break
            try:
                execution_id = await _handle(socket, services, session_id, message)
            except ExecboxError as exc:
                await socket.send_error(exc, message.get("ref"))
                continue
            if execution_id is not None:
                tg.start_soon(forward, execution_id, False)
        tg.cancel_scope.cancel()


@router.websocket("/{session_id}/stream")
async def session_stream(websocket: WebSocket, session_id: str) -> None:
    services = services_of(websocket)
    socket = await _accept(websocket, services, session_id)
    if socket is not None:
        with services.engine.sessions.attached(session_id):
            await _serve(socket, services, session_id, None)
        await _close(websocket)


@router.websocket("/{session_id}/executions/{execution_id}/stream")
async def execution_stream(websocket: WebSocket, session_id: str, execution_id: str) -> None:
    """Replays the execution's events from the first; a finished one the engine no longer
    holds (or whose session has closed) is replayed from its record as one ``end``."""
    services = services_of(websocket)
    principal = principal_of(websocket)
    row = await services.store.get_execution(principal.tenant_id, session_id, execution_id)
    if row is None:
        await _deny(websocket, SessionNotFound(f"no execution {execution_id!r}"))
        return
    await websocket.accept()  # the tenant-scoped lookup above is the ownership check
    socket = _Socket(websocket, services.settings.max_message)
    try:
        services.engine.sessions.events(session_id, execution_id)
    except SessionNotFound:
        result = row.get("result") or execution_view(row)
        await socket.send({"type": "end", "result": result, "execution_id": execution_id})
    else:
        await _serve(socket, services, session_id, execution_id)
    await _close(websocket)


async def _close(websocket: WebSocket) -> None:
    if WebSocketState.DISCONNECTED not in (websocket.application_state, websocket.client_state):
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            await websocket.close(1000)
