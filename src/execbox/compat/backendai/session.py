"""``Session`` and ``AsyncSession``: Backend.AI's client sessions, on execbox.

A client session owns an execbox client (embedded, or the server of ``EXECBOX_URL``) and the
compute sessions made through it. ``AsyncSession`` is the real one; ``Session`` drives the same
async code on an event loop in a thread of its own (anyio's blocking portal), so that runs keep
going between calls and nothing is written twice.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

from ...client.portal import PortalThread
from ._runtime import Runtime
from .config import APIConfig, get_config
from .exceptions import BackendClientError
from .func.session import ComputeSession
from .kernel import Kernel

__all__ = ["AsyncSession", "BaseSession", "Session"]

FLUSH_TIMEOUT = 2.0
"""How long ``execute`` gathers output before answering ``continued``: Backend.AI's value."""


class BaseSession:
    """What both client sessions share: configuration, and the function classes bound to
    this session (``session.ComputeSession``, ``session.Kernel``)."""

    _streams = False

    def __init__(
        self,
        *,
        config: APIConfig | None = None,
        proxy_mode: bool = False,
        flush_timeout: float = FLUSH_TIMEOUT,
        exec_timeout: float | None = None,
    ) -> None:
        """``flush_timeout`` is the time slice of ``execute`` (seconds); ``exec_timeout``
        caps each execution in the box (execbox's default when None)."""
        self._config = config if config is not None else get_config()
        self._proxy_mode = proxy_mode
        self._runtime = Runtime(flush_timeout=flush_timeout, exec_timeout=exec_timeout)
        self._opened = False
        self._closed = False
        bound = {"_session": self, "__module__": ComputeSession.__module__}
        self.ComputeSession: type[ComputeSession] = type("ComputeSession", (ComputeSession,), bound)
        self.Kernel: type[Kernel] = type(
            "Kernel", (Kernel,), {**bound, "__module__": Kernel.__module__}
        )

    @property
    def config(self) -> APIConfig:
        return self._config

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def proxy_mode(self) -> bool:
        return self._proxy_mode

    def _check_open(self) -> None:
        if not self._opened or self._closed:
            state = "closed" if self._closed else "not open"
            raise BackendClientError(
                f"the client session is {state}: use `with Session() as session` "
                "(or `async with AsyncSession() as session`)"
            )

    def _begin(self) -> None:
        if self._closed or self._opened:
            raise BackendClientError(
                "Cannot reuse closed session" if self._closed else "already open"
            )
        self._opened = True

    def _call(self, impl: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError


class Session(BaseSession):
    """A client session whose calls block and return results (no streaming)."""

    def __init__(
        self,
        *,
        config: APIConfig | None = None,
        proxy_mode: bool = False,
        flush_timeout: float = FLUSH_TIMEOUT,
        exec_timeout: float | None = None,
    ) -> None:
        super().__init__(
            config=config,
            proxy_mode=proxy_mode,
            flush_timeout=flush_timeout,
            exec_timeout=exec_timeout,
        )
        self._thread = PortalThread(self._runtime)

    def open(self) -> None:
        """Start the event loop thread and the execbox client."""
        self._begin()
        try:
            self._thread.start()
        except BaseException:
            self._closed = True
            raise

    def close(self) -> None:
        """End every compute session made here (embedded), then the loop thread; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._thread.stop()

    def __enter__(self) -> Session:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _call(self, impl: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
        self._check_open()
        return self._thread.start().call(functools.partial(impl, *args, **kwargs))


class AsyncSession(BaseSession):
    """A client session whose calls are coroutines; it also streams (``stream_execute``)."""

    _streams = True

    async def open(self) -> None:
        self._begin()
        try:
            await self._runtime.__aenter__()
        except BaseException:
            self._closed = True
            raise

    async def close(self) -> None:
        """End every compute session made here (embedded); idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._opened:
            await self._runtime.__aexit__(None, None, None)

    async def __aenter__(self) -> AsyncSession:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _call(self, impl: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
        self._check_open()
        return impl(*args, **kwargs)
