"""How the SDK reaches an engine: in this process (embedded), or over HTTP (``remote.py``).

The async transports are the real ones. A sync transport runs an async one on an event loop in a
background thread (anyio's blocking portal), so jobs and kernels keep running between calls;
each of its methods is derived from the async one of the same name.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from anyio.from_thread import BlockingPortal

from ..engine import Engine
from ..engine.jobs import JobSpec
from ..errors import ExecboxError, SessionNotFound
from ..models import (
    DirEntry,
    ExecutionEvent,
    ExecutionResult,
    JobEvent,
    JobResult,
    JobStatus,
    SessionInfo,
    SessionStatus,
)
from .portal import PortalThread

if TYPE_CHECKING:
    from ..engine.specs import SessionSpec

__all__ = [
    "AsyncEmbeddedTransport",
    "AsyncTransport",
    "SyncEmbeddedTransport",
    "SyncPortalTransport",
    "SyncTransport",
]


class AsyncTransport(Protocol):
    async def __aenter__(self) -> AsyncTransport: ...
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
    async def aclose(self) -> None: ...
    # jobs
    async def submit_job(self, spec: JobSpec) -> str: ...
    async def job_status(self, job_id: str) -> JobStatus: ...
    async def wait_job(self, job_id: str, timeout: float | None) -> JobResult: ...
    async def run_job(self, spec: JobSpec) -> JobResult: ...
    async def kill_job(self, job_id: str) -> None: ...
    async def list_jobs(self) -> list[str]: ...
    def job_events(self, job_id: str) -> AsyncIterator[JobEvent]: ...
    # sessions
    async def create_session(self, spec: SessionSpec, client_token: str | None) -> str: ...
    async def session_info(self, session_id: str) -> SessionInfo: ...
    async def list_sessions(self) -> list[str]: ...
    async def close_session(self, session_id: str) -> None: ...
    async def interrupt_session(self, session_id: str) -> None: ...
    async def restart_session(self, session_id: str) -> None: ...
    async def submit_execution(self, session_id: str, code: str, timeout: float | None) -> str: ...
    async def execute(
        self, session_id: str, code: str, timeout: float | None
    ) -> ExecutionResult: ...
    def execution_events(
        self, session_id: str, execution_id: str
    ) -> AsyncIterator[ExecutionEvent]: ...
    async def execution_result(
        self, session_id: str, execution_id: str, timeout: float | None
    ) -> ExecutionResult: ...
    async def send_input(self, session_id: str, execution_id: str, text: str) -> None: ...
    # files of a session
    async def write_file(self, session_id: str, path: str, data: bytes) -> None: ...
    async def read_file(self, session_id: str, path: str) -> bytes: ...
    async def list_files(self, session_id: str, path: str) -> list[DirEntry]: ...
    async def delete_file(self, session_id: str, path: str) -> None: ...


class SyncTransport(Protocol):
    def __enter__(self) -> SyncTransport: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
    def close(self) -> None: ...
    def submit_job(self, spec: JobSpec) -> str: ...
    def job_status(self, job_id: str) -> JobStatus: ...
    def wait_job(self, job_id: str, timeout: float | None) -> JobResult: ...
    def run_job(self, spec: JobSpec) -> JobResult: ...
    def kill_job(self, job_id: str) -> None: ...
    def list_jobs(self) -> list[str]: ...
    def job_events(self, job_id: str) -> Iterator[JobEvent]: ...
    def create_session(self, spec: SessionSpec, client_token: str | None) -> str: ...
    def session_info(self, session_id: str) -> SessionInfo: ...
    def list_sessions(self) -> list[str]: ...
    def close_session(self, session_id: str) -> None: ...
    def interrupt_session(self, session_id: str) -> None: ...
    def restart_session(self, session_id: str) -> None: ...
    def submit_execution(self, session_id: str, code: str, timeout: float | None) -> str: ...
    def execute(self, session_id: str, code: str, timeout: float | None) -> ExecutionResult: ...
    def execution_events(self, session_id: str, execution_id: str) -> Iterator[ExecutionEvent]: ...
    def execution_result(
        self, session_id: str, execution_id: str, timeout: float | None
    ) -> ExecutionResult: ...
    def send_input(self, session_id: str, execution_id: str, text: str) -> None: ...
    def write_file(self, session_id: str, path: str, data: bytes) -> None: ...
    def read_file(self, session_id: str, path: str) -> bytes: ...
    def list_files(self, session_id: str, path: str) -> list[DirEntry]: ...
    def delete_file(self, session_id: str, path: str) -> None: ...


class AsyncEmbeddedTransport:
    def __init__(self, **engine_options: Any) -> None:
        self._engine = Engine(**engine_options)
        self._open = False
        self._tokens: dict[str, str] = {}

    @property
    def engine(self) -> Engine:
        if not self._open:
            raise ExecboxError("the client is not open: use `async with AsyncClient() as client`")
        return self._engine

    async def __aenter__(self) -> AsyncEmbeddedTransport:
        await self._engine.__aenter__()
        self._open = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._open:
            self._open = False
            await self._engine.aclose()

    # -- jobs ---------------------------------------------------------------------------------

    async def submit_job(self, spec: JobSpec) -> str:
        return self.engine.jobs.submit(spec)

    async def job_status(self, job_id: str) -> JobStatus:
        return self.engine.jobs.status(job_id)

    async def wait_job(self, job_id: str, timeout: float | None) -> JobResult:
        return await self.engine.jobs.wait(job_id, timeout)

    async def run_job(self, spec: JobSpec) -> JobResult:
        return await self.engine.jobs.wait(self.engine.jobs.submit(spec))

    async def kill_job(self, job_id: str) -> None:
        await self.engine.jobs.kill(job_id)

    async def list_jobs(self) -> list[str]:
        return self.engine.jobs.list()

    def job_events(self, job_id: str) -> AsyncIterator[JobEvent]:
        return self.engine.jobs.events(job_id)

    # -- sessions -----------------------------------------------------------------------------

    async def create_session(self, spec: SessionSpec, client_token: str | None) -> str:
        """A new session; with ``client_token``, the open one made with that token, if any
        (as a server does for every client of a tenant)."""
        known = self._tokens.get(client_token) if client_token is not None else None
        if known is not None:
            with contextlib.suppress(SessionNotFound):
                if self.engine.sessions.info(known).status is not SessionStatus.CLOSED:
                    return known
        session_id = await self.engine.sessions.create(spec)
        if client_token is not None:
            self._tokens[client_token] = session_id
        return session_id

    async def session_info(self, session_id: str) -> SessionInfo:
        return self.engine.sessions.info(session_id)

    async def list_sessions(self) -> list[str]:
        return self.engine.sessions.ids()

    async def close_session(self, session_id: str) -> None:
        await self.engine.sessions.close(session_id)

    async def interrupt_session(self, session_id: str) -> None:
        await self.engine.sessions.interrupt(session_id)

    async def restart_session(self, session_id: str) -> None:
        await self.engine.sessions.restart(session_id)

    async def submit_execution(self, session_id: str, code: str, timeout: float | None) -> str:
        return self.engine.sessions.submit(session_id, code, timeout)

    async def execute(self, session_id: str, code: str, timeout: float | None) -> ExecutionResult:
        sessions = self.engine.sessions
        return await sessions.result(session_id, sessions.submit(session_id, code, timeout))

    def execution_events(self, session_id: str, execution_id: str) -> AsyncIterator[ExecutionEvent]:
        return self.engine.sessions.events(session_id, execution_id)

    async def execution_result(
        self, session_id: str, execution_id: str, timeout: float | None
    ) -> ExecutionResult:
        return await self.engine.sessions.result(session_id, execution_id, timeout)

    async def send_input(self, session_id: str, execution_id: str, text: str) -> None:
        self.engine.sessions.send_input(session_id, execution_id, text)

    async def write_file(self, session_id: str, path: str, data: bytes) -> None:
        await self.engine.sessions.write_file(session_id, path, data)

    async def read_file(self, session_id: str, path: str) -> bytes:
        return await self.engine.sessions.read_file(session_id, path)

    async def list_files(self, session_id: str, path: str) -> list[DirEntry]:
        return await self.engine.sessions.list_files(session_id, path)

    async def delete_file(self, session_id: str, path: str) -> None:
        await self.engine.sessions.delete_file(session_id, path)


def _blocking(name: str) -> Any:
    """The sync twin of async transport method ``name``, run through the portal."""

    def method(self: SyncPortalTransport, *args: Any) -> Any:
        return self._running().call(getattr(self._async, name), *args)

    method.__name__ = name
    return method


def _iterating(name: str) -> Any:
    """The sync twin of an async-iterator method: each item fetched through the portal."""

    def method(self: SyncPortalTransport, *args: Any) -> Iterator[Any]:
        portal = self._running()
        iterator = getattr(self._async, name)(*args)
        next_item: Callable[[], Any] = iterator.__anext__
        while True:
            try:
                yield portal.call(next_item)
            except StopAsyncIteration:
                return

    method.__name__ = name
    return method


class SyncPortalTransport:
    """An async transport, driven from a portal thread started on first use."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._async = transport
        self._thread = PortalThread(transport)

    def _running(self) -> BlockingPortal:
        return self._thread.start()

    def __enter__(self) -> SyncPortalTransport:
        self._running()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._thread.stop()

    submit_job = _blocking("submit_job")
    job_status = _blocking("job_status")
    wait_job = _blocking("wait_job")
    run_job = _blocking("run_job")
    kill_job = _blocking("kill_job")
    list_jobs = _blocking("list_jobs")
    job_events = _iterating("job_events")
    create_session = _blocking("create_session")
    session_info = _blocking("session_info")
    list_sessions = _blocking("list_sessions")
    close_session = _blocking("close_session")
    interrupt_session = _blocking("interrupt_session")
    restart_session = _blocking("restart_session")
    submit_execution = _blocking("submit_execution")
    execute = _blocking("execute")
    execution_events = _iterating("execution_events")
    execution_result = _blocking("execution_result")
    send_input = _blocking("send_input")
    write_file = _blocking("write_file")
    read_file = _blocking("read_file")
    list_files = _blocking("list_files")
    delete_file = _blocking("delete_file")


class SyncEmbeddedTransport(SyncPortalTransport):
    """The transport of ``Client()``: an engine in this process, on a portal thread."""

    def __init__(self, **engine_options: Any) -> None:
        super().__init__(AsyncEmbeddedTransport(**engine_options))
