"""How the SDK reaches an engine: in this process (embedded), or later over HTTP.

The async transport is the real one. The sync embedded transport runs the same async engine on
an event loop in a background thread (anyio's blocking portal): jobs keep running between calls,
which a sync copy of the engine could not do.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any, Protocol

from anyio.from_thread import BlockingPortal, start_blocking_portal

from ..engine import Engine
from ..engine.jobs import JobSpec
from ..errors import ExecboxError
from ..models import JobEvent, JobResult, JobStatus

__all__ = ["AsyncEmbeddedTransport", "AsyncTransport", "SyncEmbeddedTransport", "SyncTransport"]


class AsyncTransport(Protocol):
    async def __aenter__(self) -> AsyncTransport: ...
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
    async def aclose(self) -> None: ...
    async def submit_job(self, spec: JobSpec) -> str: ...
    async def job_status(self, job_id: str) -> JobStatus: ...
    async def wait_job(self, job_id: str, timeout: float | None) -> JobResult: ...
    async def kill_job(self, job_id: str) -> None: ...
    async def list_jobs(self) -> list[str]: ...
    def job_events(self, job_id: str) -> AsyncIterator[JobEvent]: ...


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
    def kill_job(self, job_id: str) -> None: ...
    def list_jobs(self) -> list[str]: ...
    def job_events(self, job_id: str) -> Iterator[JobEvent]: ...


class AsyncEmbeddedTransport:
    def __init__(self, **engine_options: Any) -> None:
        self._engine = Engine(**engine_options)
        self._open = False

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

    async def submit_job(self, spec: JobSpec) -> str:
        return self.engine.jobs.submit(spec)

    async def job_status(self, job_id: str) -> JobStatus:
        return self.engine.jobs.status(job_id)

    async def wait_job(self, job_id: str, timeout: float | None) -> JobResult:
        return await self.engine.jobs.wait(job_id, timeout)

    async def kill_job(self, job_id: str) -> None:
        await self.engine.jobs.kill(job_id)

    async def list_jobs(self) -> list[str]:
        return self.engine.jobs.list()

    def job_events(self, job_id: str) -> AsyncIterator[JobEvent]:
        return self.engine.jobs.events(job_id)


class SyncEmbeddedTransport:
    """The async embedded transport, driven from a portal thread started on first use."""

    def __init__(self, **engine_options: Any) -> None:
        self._async = AsyncEmbeddedTransport(**engine_options)
        self._lock = threading.Lock()
        self._portal_cm: AbstractContextManager[BlockingPortal] | None = None
        self._portal: BlockingPortal | None = None
        self._inner: AbstractContextManager[AsyncEmbeddedTransport] | None = None

    def _running(self) -> BlockingPortal:
        with self._lock:
            if self._portal is None:
                portal_cm = start_blocking_portal()
                portal = portal_cm.__enter__()
                inner = portal.wrap_async_context_manager(self._async)
                try:
                    inner.__enter__()
                except BaseException:
                    portal_cm.__exit__(None, None, None)
                    raise
                self._portal_cm, self._portal, self._inner = portal_cm, portal, inner
                atexit.register(self.close)
            return self._portal

    def __enter__(self) -> SyncEmbeddedTransport:
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
        with self._lock:
            inner, portal_cm = self._inner, self._portal_cm
            self._inner = self._portal_cm = self._portal = None
        if inner is not None and portal_cm is not None:
            try:
                inner.__exit__(None, None, None)
            finally:
                portal_cm.__exit__(None, None, None)
            atexit.unregister(self.close)

    def submit_job(self, spec: JobSpec) -> str:
        return self._running().call(self._async.submit_job, spec)

    def job_status(self, job_id: str) -> JobStatus:
        return self._running().call(self._async.job_status, job_id)

    def wait_job(self, job_id: str, timeout: float | None) -> JobResult:
        return self._running().call(self._async.wait_job, job_id, timeout)

    def kill_job(self, job_id: str) -> None:
        self._running().call(self._async.kill_job, job_id)

    def list_jobs(self) -> list[str]:
        return self._running().call(self._async.list_jobs)

    def job_events(self, job_id: str) -> Iterator[JobEvent]:
        portal = self._running()
        events = portal.call(self._async.job_events, job_id)
        while True:
            try:
                yield portal.call(events.__anext__)
            except StopAsyncIteration:
                return
