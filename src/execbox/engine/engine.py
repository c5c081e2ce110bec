"""The engine: a backend, a task group, the pool and the jobs, opened and closed together."""

from __future__ import annotations

import contextlib
import importlib
from types import TracebackType
from typing import Any

import anyio

from ..boxes.base import Backend
from ..errors import ExecboxError
from .jobs import JobManager
from .pool import BoxPool

__all__ = ["BACKENDS", "Engine", "load_backend"]

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


class Engine:
    def __init__(
        self, *, backend: str = "local", pool_size: int = 2, max_concurrent: int = 16
    ) -> None:
        self._backend_name = backend
        self._pool_size = pool_size
        self._max_concurrent = max_concurrent
        self._stack: contextlib.AsyncExitStack | None = None
        self.backend: Backend
        self.jobs: JobManager

    async def __aenter__(self) -> Engine:
        stack = contextlib.AsyncExitStack()
        try:
            backend = load_backend(self._backend_name)
            await stack.enter_async_context(backend)  # type: ignore[arg-type]
            task_group = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(task_group.cancel_scope.cancel)  # close kills what still runs
            pool = BoxPool(backend, task_group, size=self._pool_size)
            stack.push_async_callback(pool.aclose)
            python = getattr(getattr(backend, "layout", None), "python", "python3")
            self.jobs = JobManager(
                backend, task_group, pool=pool, max_concurrent=self._max_concurrent, python=python
            )
        except BaseException:
            await stack.aclose()
            raise
        self.backend = backend
        self._stack = stack
        return self

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
