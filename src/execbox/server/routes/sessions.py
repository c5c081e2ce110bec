"""Sessions and their executions over HTTP: create (or get by client token), get, list,
delete, interrupt, restart; submit code, read past executions, stream events, answer input."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any
from weakref import WeakValueDictionary

import anyio
from fastapi import APIRouter, Query, Request
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse, Response

from ...engine.executions import new_execution_id
from ...engine.sessions import new_session_id
from ...engine.specs import make_session_spec
from ...errors import ExecboxTimeout, InvalidSpec, SessionClosed, SessionNotFound
from ...models import ExecutionStatus, SessionInfo
from ...models.wire import to_json
from ...store.accounts import Principal
from ..quotas import check_network, clamp_limits, clamp_seconds
from ..responses import ndjson
from ..schemas import ExecutionIn, InputIn, SessionIn
from ..services import Services, principal_of, services_of
from ..views import MAX_WAIT, execution_view, session_spec_record, session_view

__all__ = ["open_session", "owned_session", "router", "submit_execution"]

router = APIRouter(prefix="/v1/sessions", tags=["sessions"])

_token_locks: WeakValueDictionary[tuple[str, str], anyio.Lock] = WeakValueDictionary()


async def owned_session(
    services: Services, principal: Principal, session_id: str
) -> dict[str, Any]:
    row = await services.store.get_session(principal.tenant_id, session_id)
    if row is None:
        raise SessionNotFound(f"no session {session_id!r}")
    return row


def _live(services: Services, session_id: str) -> SessionInfo | None:
    try:
        return services.engine.sessions.info(session_id)
    except SessionNotFound:
        return None


async def open_session(connection: HTTPConnection, session_id: str) -> dict[str, Any]:
    """The caller's session record, refused unless the session is open in this process."""
    services = services_of(connection)
    row = await owned_session(services, principal_of(connection), session_id)
    require_open(services, row)
    return row


def require_open(services: Services, row: dict[str, Any]) -> None:
    """An open record whose session this process does not hold was left by a crash."""
    live = _live(services, row["id"])
    if live is None or live.status == "closed":
        reason = (live.reason if live else None) or row.get("reason") or "server_restart"
        raise SessionClosed(f"session {row['id']} is closed ({reason})", reason)


async def submit_execution(
    services: Services, principal: Principal, session_id: str, code: str, timeout: float | None
) -> str:
    """Record the execution, then queue it: the record exists before the code can run."""
    if not isinstance(code, str):
        raise InvalidSpec("code must be a string")
    seconds = clamp_seconds(timeout, principal.limits.max_timeout, name="timeout")
    execution_id = new_execution_id()
    await services.store.insert_execution(
        execution_id, session_id, principal, code, datetime.now(UTC)
    )
    try:
        services.engine.sessions.submit(session_id, code, seconds, execution_id)
    except BaseException as exc:
        with anyio.CancelScope(shield=True):
            await services.store.execution_refused(execution_id, str(exc))
        raise
    return execution_id


@router.post("", status_code=201, summary="Create a session, or get the open one of a client token")
async def create_session(request: Request, body: SessionIn) -> Response:
    services, principal = services_of(request), principal_of(request)
    tenant = principal.limits
    spec = make_session_spec(
        kernel=body.kernel,
        limits=clamp_limits(body.limits, tenant),
        network=check_network(body.network, tenant),
        env=body.env,
        cwd=body.cwd,
        requirements=body.requirements,
        idle_timeout=clamp_seconds(
            body.idle_timeout or services.settings.session_idle_timeout,
            tenant.max_ttl,
            name="idle_timeout",
        ),
        ttl=clamp_seconds(body.ttl, tenant.max_ttl, name="ttl"),
    )
    token = body.client_token
    lock = anyio.Lock()
    if token is not None:
        lock = _token_locks.setdefault((principal.tenant_id, token), lock)
    async with lock:
        if token is not None:
            row = await services.store.open_session_by_token(principal.tenant_id, token)
            if row is not None:
                live = _live(services, row["id"])
                if live is not None and live.status != "closed":
                    return JSONResponse(session_view(row, live), 200)
        session_id = new_session_id()
        services.quotas.take("session", principal, session_id)
        try:
            created = datetime.now(UTC)
            record = session_spec_record(spec)
            await services.store.insert_session(session_id, principal, record, created, token)
        except BaseException:
            services.quotas.release(session_id)
            raise
        try:
            await services.engine.sessions.create(spec, session_id)
        except BaseException:
            with anyio.CancelScope(shield=True):
                services.quotas.release(session_id)
                await services.store.close_session(session_id, "error")
            raise
    row = await owned_session(services, principal, session_id)
    return JSONResponse(session_view(row, _live(services, session_id)), 201)


@router.get("", summary="List sessions, newest first")
async def list_sessions(
    request: Request,
    status: Annotated[list[str] | None, Query(description="open or closed")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    services = services_of(request)
    rows = await services.store.list_sessions(
        principal_of(request).tenant_id, status=status or (), limit=limit
    )
    return {"sessions": [session_view(row, _live(services, row["id"])) for row in rows]}


@router.get("/{session_id}", summary="A session")
async def get_session(request: Request, session_id: str) -> dict[str, Any]:
    services = services_of(request)
    row = await owned_session(services, principal_of(request), session_id)
    return session_view(row, _live(services, session_id))


@router.delete("/{session_id}", summary="Close a session and destroy its box")
async def delete_session(request: Request, session_id: str) -> dict[str, Any]:
    services = services_of(request)
    await owned_session(services, principal_of(request), session_id)
    if _live(services, session_id) is not None:
        await services.engine.sessions.close(session_id)
    row = await owned_session(services, principal_of(request), session_id)
    return session_view(row, _live(services, session_id))


@router.post("/{session_id}/interrupt", summary="Interrupt the running execution")
async def interrupt_session(request: Request, session_id: str) -> dict[str, Any]:
    services = services_of(request)
    row = await open_session(request, session_id)
    await services.engine.sessions.interrupt(session_id)
    return session_view(row, _live(services, session_id))


@router.post("/{session_id}/restart", summary="Restart the kernel: state is lost, files stay")
async def restart_session(request: Request, session_id: str) -> dict[str, Any]:
    services = services_of(request)
    row = await open_session(request, session_id)
    await services.engine.sessions.restart(session_id)
    return session_view(row, _live(services, session_id))


# -- executions -------------------------------------------------------------------------------


async def _owned_execution(request: Request, session_id: str, execution_id: str) -> dict[str, Any]:
    services, principal = services_of(request), principal_of(request)
    row = await services.store.get_execution(principal.tenant_id, session_id, execution_id)
    if row is None:
        raise SessionNotFound(f"no execution {execution_id!r} in session {session_id!r}")
    return row


@router.post("/{session_id}/executions", status_code=202, summary="Run code in the session")
async def create_execution(request: Request, session_id: str, body: ExecutionIn) -> Response:
    services, principal = services_of(request), principal_of(request)
    await open_session(request, session_id)
    execution_id = await submit_execution(services, principal, session_id, body.code, body.timeout)
    if body.wait:
        await services.engine.sessions.result(session_id, execution_id)
        row = await _owned_execution(request, session_id, execution_id)
        return JSONResponse(execution_view(row), 200)
    return JSONResponse({"id": execution_id, "session_id": session_id, "status": "queued"}, 202)


@router.get("/{session_id}/executions", summary="The session's executions, newest first")
async def list_executions(
    request: Request, session_id: str, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> dict[str, Any]:
    services, principal = services_of(request), principal_of(request)
    await owned_session(services, principal, session_id)
    rows = await services.store.list_executions(principal.tenant_id, session_id, limit=limit)
    return {"executions": [execution_view(row, result=False) for row in rows]}


@router.get("/{session_id}/executions/{execution_id}", summary="An execution with its outputs")
async def get_execution(
    request: Request,
    session_id: str,
    execution_id: str,
    wait: Annotated[
        float | None, Query(gt=0, le=MAX_WAIT, description="seconds to wait for the end")
    ] = None,
) -> dict[str, Any]:
    services = services_of(request)
    row = await _owned_execution(request, session_id, execution_id)
    if wait is not None and not ExecutionStatus(row["status"]).terminal:
        with contextlib.suppress(ExecboxTimeout, SessionNotFound):
            await services.engine.sessions.result(session_id, execution_id, wait)
        row = await _owned_execution(request, session_id, execution_id)
    view = execution_view(row)
    view["history"] = to_json(await services.store.status_history(execution_id))
    return view


@router.get(
    "/{session_id}/executions/{execution_id}/events",
    summary="Stream an execution's events from the first (NDJSON)",
    response_class=Response,
)
async def execution_events(request: Request, session_id: str, execution_id: str) -> Response:
    services = services_of(request)
    row = await _owned_execution(request, session_id, execution_id)
    try:
        events = services.engine.sessions.events(session_id, execution_id)
    except SessionNotFound:
        events = None

    async def lines() -> AsyncIterator[dict[str, Any]]:
        if events is None:
            yield {"type": "end", "result": row.get("result") or execution_view(row)}
            return
        async for event in events:
            yield to_json(event)

    return ndjson(lines())


@router.post(
    "/{session_id}/executions/{execution_id}/input",
    summary="Answer the input() the execution is waiting on",
)
async def execution_input(
    request: Request, session_id: str, execution_id: str, body: InputIn
) -> dict[str, Any]:
    await _owned_execution(request, session_id, execution_id)
    services_of(request).engine.sessions.send_input(session_id, execution_id, body.value)
    return {"id": execution_id, "status": ExecutionStatus.RUNNING.value}
