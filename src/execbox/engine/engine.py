"""The engine: a backend, a task group, the pools, the jobs and the sessions, opened and closed
together."""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio

from ..boxes.base import Backend
from ..errors import ExecboxError
from .jobs import JobManager
from .journal import Journal
from .pool import box_pool
from .requirements import RequirementsResolver

if TYPE_CHECKING:
    from .sessions import SessionManager

__all__ = ["BACKENDS", "Engine", "Retention", "load_backend"]

BACKENDS = {"local": "execbox.boxes.local:LocalBackend"}


def load_backend(name: str, **options: Any) -> Backend:
    """A backend by short name (``local``) or ``module:Class``, imported only when asked for."""
    target = BACKENDS.get(name, name)
    module_name, _, attribute = target.partition(":")
    if not attribute:
        raise ExecboxError(
            f"unknown backend {name!r}; known: {', '.join(BACKENDS)} or module:Class"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ExecboxError(f"backend {name!r} needs {exc.name!r}: pip install it") from None
    backend: Backend = getattr(module, attribute)(**options)
    return backend


@dataclass(frozen=True)
class Retention:
    """Finished objects kept in memory for lookups by id. Embedded, they are the only copy;
    a server keeps records of everything and so keeps few."""

    jobs: int = 10_000
    sessions: int = 1000
    """Closed sessions, with their finished executions."""
    executions: int = 100
    """Finished executions per session, with their events."""


class Engine:
    def __init__(
        self,
        *,
        backend: str = "local",
        pool_size: int = 2,
        session_pool_size: int = 1,
        max_concurrent: int = 16,
        kernel_packages: Sequence[str] | None = None,
        journal: Journal | None = None,
        retention: Retention | None = None,
    ) -> None:
        self._journal = journal
        self._retention = retention or Retention()
        self._backend_name = backend
        self._pool_size = pool_size
        self._session_pool_size = session_pool_size
        self._max_concurrent = max_concurrent
        self._kernel_packages = kernel_packages
        self._stack: contextlib.AsyncExitStack | None = None
        self._sessions: SessionManager | None = None
        self.backend: Backend
        self.jobs: JobManager
        self._task_group: anyio.abc.TaskGroup
        self._resolver: RequirementsResolver

    async def __aenter__(self) -> Engine:
        stack = contextlib.AsyncExitStack()
        try:
            backend = load_backend(self._backend_name)
            await stack.enter_async_context(backend)  # type: ignore[arg-type]
            task_group = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(task_group.cancel_scope.cancel)  # close kills what still runs
            stack.push_async_callback(self._close_sessions)
            pool = box_pool(backend, task_group, size=self._pool_size)
            stack.push_async_callback(pool.aclose)
            python = getattr(getattr(backend, "layout", None), "python", "python3")
            self._resolver = RequirementsResolver(python=python)
            self.jobs = JobManager(
                backend,
                task_group,
                pool=pool,
                max_concurrent=self._max_concurrent,
                python=python,
                requirements_resolver=self._resolver,
                journal=self._journal,
                retained_jobs=self._retention.jobs,
            )
            stack.push_async_callback(self.jobs.aclose)
        except BaseException:
            await stack.aclose()
            raise
        self.backend = backend
        self._task_group = task_group
        self._python = python
        self._stack = stack
        return self

    @property
    def sessions(self) -> SessionManager:
        """Created on first use: jobs alone never import the kernel machinery (ZMQ, Jupyter)."""
        if self._sessions is None:
            if self._stack is None:
                raise ExecboxError("the engine is not open")
            from ..kernel.runtime import DEFAULT_PACKAGES, KernelRuntime
            from .sessions import SessionManager

            runtime = KernelRuntime(
                self._resolver,
                python=self._python,
                packages=self._kernel_packages or DEFAULT_PACKAGES,
            )
            self._sessions = SessionManager(
                self.backend,
                self._task_group,
                runtime,
                pool_size=self._session_pool_size,
                journal=self._journal,
                retained_sessions=self._retention.sessions,
                retained_executions=self._retention.executions,
            )
        return self._sessions

    def pool_sizes(self) -> dict[str, int]:
        """Ready boxes per warm pool, for metrics."""
        pool = self.jobs.pool
        sizes = {"jobs": pool.ready() if pool is not None else 0}
        if self._sessions is not None:
            sizes["sessions"] = self._sessions.pool.ready()
        return sizes

    async def _close_sessions(self) -> None:
        if self._sessions is not None:
            await self._sessions.aclose()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._stack is not None:
            stack, self._stack = self._stack, None
            await stack.aclose()
