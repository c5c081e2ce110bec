"""The Jupyter kernel gateway API: Jupyter Server's ``/api/kernels`` routes and kernel socket.

A kernel is a session of the caller's tenant: same id, record, limits, quotas and idle timeout
as one made through ``/v1/sessions``, and closed kernels are gone (404), as in Jupyter Server.
Errors are JSON with both Jupyter's ``message``/``reason`` and execbox's ``error`` object.

The WebSocket speaks Jupyter Server's default JSON protocol. A client offering the binary
``v1.kernel.websocket.jupyter.org`` subprotocol gets no subprotocol back, which tells it to
fall back to JSON, as Jupyter's clients do.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable, Coroutine
from http import HTTPStatus
from typing import Any

import anyio
from fastapi import APIRouter, FastAPI, Request, WebSocket
from fastapi.routing import APIRoute
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse, Response
from starlette.websockets import WebSocketDisconnect, WebSocketState

from ... import __version__
from ...errors import ExecboxError, InvalidSpec, SessionClosed, SessionNotFound
from ...models import SessionInfo, SessionStatus
from ..responses import error_body, error_response
from ..routes.sessions import create_session, open_session
from ..schemas import SessionIn
from ..services import principal_of, services_of
from .connections import Connection
from .kernels import Gateway
from .messages import utc_stamp
from .specs import kernelspecs, resolve_kernel_name

__all__ = ["router"]

ENV_PREFIX = "KERNEL_"
"""Of a create request's ``env``, only these reach the kernel, as in Jupyter Kernel Gateway."""
STATES = {
    SessionStatus.STARTING: "starting",
    SessionStatus.IDLE: "idle",
    SessionStatus.BUSY: "busy",
    SessionStatus.CLOSED: "dead",
}


def jupyter_error(exc: ExecboxError) -> JSONResponse:
    """Our error response, with a closed session as the 404 of a kernel that is gone."""
    if isinstance(exc, SessionClosed):
        exc = SessionNotFound(f"{exc}: the kernel is gone")
    status = error_response(exc).status_code
    body = error_body(type(exc).__name__, str(exc))
    body.update(message=str(exc), reason=HTTPStatus(status).phrase)
    return JSONResponse(body, status, {"WWW-Authenticate": "Bearer"} if status == 401 else None)


class _JupyterRoute(APIRoute):
    """Errors of the tree answered in Jupyter's shape as well as ours."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except ExecboxError as exc:
                return jupyter_error(exc)

        return guarded


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """The kernels' workers live in one task group, ended before the engine closes."""
    async with anyio.create_task_group() as tg:
        app.state.jupyter = Gateway(app.state.services, tg)
        try:
            yield
        finally:
            del app.state.jupyter
            tg.cancel_scope.cancel()


router = APIRouter(prefix="/api", tags=["jupyter"], route_class=_JupyterRoute, lifespan=lifespan)


def gateway_of(connection: HTTPConnection) -> Gateway:
    gateway: Gateway = connection.app.state.jupyter
    return gateway


def kernel_id_of(session_id: str) -> str:
    """A session's id as a kernel id: Jupyter Server routes only ids of five dash-separated
    groups (``ses_1e17adca-7da9-ee6c-053b-1024`` is session ``ses_1e17adca7da9ee6c053b1024``)."""
    prefix, _, tail = session_id.partition("_")
    if len(tail) != 24 or "-" in tail:
        return session_id
    return f"{prefix}_{tail[:8]}-{tail[8:12]}-{tail[12:16]}-{tail[16:20]}-{tail[20:]}"


def session_id_of(kernel_id: str) -> str:
    """The session a kernel id names, dashed or not."""
    return kernel_id.replace("-", "")


def _model(connection: HTTPConnection, live: SessionInfo) -> dict[str, Any]:
    return {
        "id": kernel_id_of(live.id),
        "name": live.kernel,
        "last_activity": utc_stamp(live.last_activity),
        "execution_state": STATES[live.status],
        "connections": gateway_of(connection).connections(live.id),
    }


async def _kernel(connection: HTTPConnection, kernel_id: str) -> SessionInfo:
    """The live state of the caller's open session that ``kernel_id`` names; 404 otherwise,
    naming the kernel as the client did."""
    session_id = session_id_of(kernel_id)
    try:
        await open_session(connection, session_id)
    except SessionClosed as exc:
        gone = f"kernel {kernel_id!r} is gone: its session closed ({exc.reason})"
        raise SessionNotFound(gone) from None
    except SessionNotFound:
        raise SessionNotFound(f"no kernel {kernel_id!r}") from None
    return services_of(connection).engine.sessions.info(session_id)


async def _json_body(request: Request) -> dict[str, Any]:
    """An optional JSON object: Jupyter clients send none, ``{}`` or extra fields."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise InvalidSpec("the body must be a JSON object") from None
    if not isinstance(data, dict):
        raise InvalidSpec("the body must be a JSON object")
    return data


@router.get("", summary="The API's version (Jupyter Server's /api)")
async def api_version() -> dict[str, Any]:
    return {"version": __version__}


@router.get("/kernelspecs", summary="The kernels this server starts, python3 the default")
async def list_kernelspecs() -> dict[str, Any]:
    return await kernelspecs()


@router.get("/kernelspecs/{kernel_name}", summary="One kernelspec")
async def get_kernelspec(kernel_name: str) -> dict[str, Any]:
    name = await resolve_kernel_name(kernel_name)
    spec: dict[str, Any] = (await kernelspecs())["kernelspecs"][name]
    return spec


@router.get("/kernels", summary="The caller's running kernels (its open sessions)")
async def list_kernels(request: Request) -> list[dict[str, Any]]:
    services = services_of(request)
    rows = await services.store.list_sessions(
        principal_of(request).tenant_id, status=["open"], limit=1000
    )
    models = []
    for row in rows:
        try:
            live = services.engine.sessions.info(row["id"])
        except SessionNotFound:
            continue  # left open by a crashed process; not a kernel of this one
        if live.status is not SessionStatus.CLOSED:
            models.append(_model(request, live))
    return models


@router.post("/kernels", status_code=201, summary="Start a kernel: a session in a box of its own")
async def start_kernel(request: Request) -> Response:
    body = await _json_body(request)
    name = await resolve_kernel_name(body.get("name"))
    env = body.get("env") or {}
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        raise InvalidSpec("env must be an object of names to strings")
    env = {k: v for k, v in env.items() if k.startswith(ENV_PREFIX)}
    created = await create_session(request, SessionIn.model_validate({"kernel": name, "env": env}))
    live = await _kernel(request, json.loads(bytes(created.body))["id"])
    model = _model(request, live)
    return JSONResponse(model, 201, {"Location": f"/api/kernels/{model['id']}"})


@router.get("/kernels/{kernel_id}", summary="A kernel")
async def get_kernel(request: Request, kernel_id: str) -> dict[str, Any]:
    return _model(request, await _kernel(request, kernel_id))


@router.delete("/kernels/{kernel_id}", status_code=204, summary="Shut a kernel down")
async def delete_kernel(request: Request, kernel_id: str) -> Response:
    await gateway_of(request).shut_down((await _kernel(request, kernel_id)).id)
    return Response(status_code=204)


@router.post("/kernels/{kernel_id}/interrupt", status_code=204, summary="Interrupt the cell")
async def interrupt_kernel(request: Request, kernel_id: str) -> Response:
    await gateway_of(request).interrupt((await _kernel(request, kernel_id)).id)
    return Response(status_code=204)


@router.post("/kernels/{kernel_id}/restart", summary="Restart: state is lost, files stay")
async def restart_kernel(request: Request, kernel_id: str) -> dict[str, Any]:
    await gateway_of(request).restart((await _kernel(request, kernel_id)).id)
    return _model(request, await _kernel(request, kernel_id))


@router.websocket("/kernels/{kernel_id}/channels")
async def kernel_channels(websocket: WebSocket, kernel_id: str) -> None:
    services = services_of(websocket)
    try:
        live = await _kernel(websocket, kernel_id)
    except ExecboxError as exc:
        denial = jupyter_error(exc)
        if "websocket.http.response" in websocket.scope.get("extensions", {}):
            await websocket.send_denial_response(denial)
        else:
            await websocket.close(4000 + denial.status_code, str(exc)[:120])
        return
    await websocket.accept()  # no subprotocol: clients offering v1 fall back to JSON
    connection = Connection(websocket, principal_of(websocket), services.settings.max_message)
    gateway = gateway_of(websocket)
    bridge = gateway.attach(live.id, connection)
    try:
        with services.engine.sessions.attached(live.id):
            await connection.serve(bridge.on_frame)
    finally:
        gateway.detach(bridge, connection)
    if WebSocketState.DISCONNECTED not in (websocket.application_state, websocket.client_state):
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            await websocket.close(1000)
