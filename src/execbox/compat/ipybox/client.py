"""``ExecutionClient``: ipybox's kernel client, on an execbox session of its own.

Results keep ipybox's shapes: ``text`` is every streamed text plus the ``text/plain`` of rich
outputs, joined and stripped, or ``None`` when there was none; PNG outputs come back as PIL
images; a failing cell raises ``ExecutionError("Name: value", trace)``; a timeout interrupts the
kernel and raises ``TimeoutError`` (``asyncio.TimeoutError``). Unlike ipybox, an execution ends
only when the kernel has replied *and* gone idle, so late output is never lost, and a kernel
killed at a limit fails its cell with a message instead of leaving the client waiting.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import io
import logging
import os
from base64 import b64decode
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING

import execbox

from ...errors import ExecboxError, SessionClosed
from ...models import (
    DisplayEvent,
    EndEvent,
    ExecutionEvent,
    ExecutionStatus,
    InputRequestEvent,
    ResultEvent,
    StreamEvent,
)
from .binds import APP, UidProbe, grant, revoke
from .container import ExecutionContainer, find_container

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = ["ConnectionError", "Execution", "ExecutionClient", "ExecutionError", "ExecutionResult"]

log = logging.getLogger("execbox.compat.ipybox")

CELL_TIMEOUT = 24 * 3600.0
"""execbox's own bound on a cell. ipybox has none beyond the caller's ``timeout`` (which only
applies while someone waits), so this is a backstop for cells nobody waits for."""
INIT_TIMEOUT = 60.0
STDIN_REFUSED = (
    "StdinNotImplementedError: raw_input was called, but this frontend does not support "
    "input requests."
)
"""What ipybox's kernels say to ``input()``: ipybox asks for no stdin."""
SESSION_ENDING = (ExecutionStatus.MEMORY_LIMIT, ExecutionStatus.PIDS_LIMIT)


class ConnectionError(builtins.ConnectionError):  # ipybox's own name
    """A kernel could not be created, or the client is not connected to one."""


class ExecutionError(Exception):
    """The code raised: ``args[0]`` is ``"Name: value"``, ``trace`` the traceback text."""

    def __init__(self, message: str, trace: str | None = None) -> None:
        super().__init__(message)
        self.trace = trace


@dataclass
class ExecutionResult:
    """What a successful execution produced: its text (``None`` if none) and its images."""

    text: str | None
    images: list[Image] = field(default_factory=list)


def _decode_png(payload: str) -> Image:
    from PIL import Image as PILImage

    image = PILImage.open(io.BytesIO(b64decode(payload)))
    image.load()
    return image


def _failure(result: execbox.ExecutionResult, *, stdin_refused: bool) -> BaseException:
    """The exception ipybox would raise for a cell that did not end ok."""
    if stdin_refused:
        return ExecutionError(STDIN_REFUSED)
    if result.status is ExecutionStatus.TIMEOUT:
        return TimeoutError(result.message or "the execution timed out")
    if result.error is not None:
        error = result.error
        return ExecutionError(f"{error.ename}: {error.evalue}", "\n".join(error.traceback))
    return ExecutionError(f"{result.status}: {result.message or 'no detail'}")


class Execution:
    """Code submitted by an ``ExecutionClient``: stream its text, then take its result."""

    def __init__(self, client: ExecutionClient, execution: execbox.AsyncExecution) -> None:
        self.client = client
        self.req_id = execution.id
        self._execution = execution
        self._events: AsyncIterator[ExecutionEvent] | None = None
        self._chunks: list[str] = []
        self._images: list[Image] = []
        self._finished = False
        self._error: BaseException | None = None
        self._stdin_refused = False

    def __repr__(self) -> str:
        return f"<Execution {self.req_id}{' finished' if self._finished else ''}>"

    async def result(self, timeout: float | None = 120) -> ExecutionResult:
        """The whole result, waiting up to ``timeout`` s; raises as ``stream`` does."""
        if not self._finished:
            async for _ in self.stream(timeout=timeout):
                pass
        elif self._error is not None:
            raise self._error
        return ExecutionResult(
            text="".join(self._chunks).strip() if self._chunks else None,
            images=list(self._images),
        )

    async def stream(self, timeout: float | None = 120) -> AsyncIterator[str]:
        """Text chunks as the kernel produces them (images go to ``result``).

        Past ``timeout`` s in all (None: no bound), the kernel is interrupted (its state is
        kept) and ``TimeoutError`` is raised; an error in the code raises ``ExecutionError``
        at the end.
        """
        if self._finished:
            return
        now = asyncio.get_running_loop().time()
        deadline = None if timeout is None else now + timeout
        if self._events is None:
            self._events = self._execution.stream()
        try:
            while not self._finished:
                try:
                    async with asyncio.timeout_at(deadline):
                        event = await anext(self._events)
                except StopAsyncIteration:
                    raise self._fail(ConnectionError("the event stream ended early")) from None
                except ExecboxError as exc:  # the session is gone, or its server
                    raise self._fail(ConnectionError(f"the kernel is gone: {exc}")) from exc
                except TimeoutError:
                    self._finished = True
                    await self.client._interrupt()
                    raise
                for chunk in await self._take(event):
                    yield chunk
        finally:
            if self._finished:
                await self._close_events()

    async def _take(self, event: ExecutionEvent) -> list[str]:
        """The text chunks of one event; keeps images; at the end, raises the cell's failure."""
        if isinstance(event, StreamEvent):
            self._chunks.append(event.text)
            return [event.text]
        if isinstance(event, DisplayEvent | ResultEvent):
            if isinstance(event, DisplayEvent) and event.update:
                return []  # ipybox ignores update_display_data
            chunks = []
            text = event.data.get("text/plain")
            if isinstance(text, str):
                self._chunks.append(text)
                chunks.append(text)
            png = event.data.get("image/png")
            if isinstance(png, str):
                self._images.append(_decode_png(png))
            return chunks
        if isinstance(event, InputRequestEvent) and not self._stdin_refused:
            self._stdin_refused = True  # ipybox's kernels refuse input(): stop the cell
            await self.client._interrupt()
        if isinstance(event, EndEvent):
            self._end(event.result)
        return []

    def _end(self, result: execbox.ExecutionResult) -> None:
        self._finished = True
        if result.status is ExecutionStatus.OK:
            return
        if result.status in SESSION_ENDING:
            self.client._session_lost(result.status)
        raise self._fail(_failure(result, stdin_refused=self._stdin_refused))

    def _fail(self, error: BaseException) -> BaseException:
        self._finished = True
        self._error = error
        return error

    async def _close_events(self) -> None:
        events, self._events = self._events, None
        if isinstance(events, AsyncGenerator):
            with contextlib.suppress(Exception):
                await events.aclose()


class ExecutionClient:
    """A kernel of its own in the container of ``port``: ``async with`` it, then ``execute``.

    ``host`` and ``heartbeat_interval`` are kept for ipybox's signature: the container is found
    in this process, and there is no WebSocket to keep alive. The container's ``/app`` (the
    workspace) is on the kernel's ``sys.path``, as in ipybox.
    """

    def __init__(self, port: int, host: str = "localhost", heartbeat_interval: float = 10) -> None:
        self.port = port
        self.host = host
        self._heartbeat_interval = heartbeat_interval
        self._container: ExecutionContainer | None = None
        self._session: execbox.AsyncSession | None = None
        self._granted: int | None = None
        self._lost: str | None = None

    def __repr__(self) -> str:
        kernel = self._session.id if self._session else "not connected"
        return f"<ExecutionClient port {self.port} {kernel}>"

    async def __aenter__(self) -> ExecutionClient:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.disconnect()

    @property
    def kernel_id(self) -> str:
        """The id of this client's kernel (its execbox session); ValueError if not connected."""
        if self._session is None:
            raise ValueError("Not connected to kernel")
        return self._session.id

    async def connect(self, retries: int = 10, retry_interval: float = 1.0) -> None:
        """Start this client's kernel; a container still starting is waited for up to
        ``retries * retry_interval`` s. ConnectionError if there is none, or no kernel."""
        if self._session is not None:
            return
        try:
            container = await find_container(self.port, max(0.0, retries * retry_interval))
        except LookupError as exc:
            raise ConnectionError(f"Failed to create kernel: {exc}") from None
        self._container = container
        await self._open()
        container.attach(self)

    async def disconnect(self) -> None:
        """End this client's kernel (and, as root, the box user's access to the binds)."""
        if self._container is not None:
            self._container.detach(self)
        await self._close()

    async def execute(self, code: str, timeout: float | None = 120) -> ExecutionResult:
        """Run ``code`` and return its result; ExecutionError or TimeoutError as ``result``."""
        execution = await self.submit(code)
        return await execution.result(timeout=timeout)

    async def submit(self, code: str) -> Execution:
        """Queue ``code`` (cells run one at a time, in order) and return its ``Execution``."""
        if self._session is None:
            raise ConnectionError("Not connected to kernel")
        if self._lost is not None:
            await self._reopen()
        try:
            execution = await self._submit(code)
        except SessionClosed:
            await self._reopen()
            execution = await self._submit(code)
        return Execution(self, execution)

    # -- internals ----------------------------------------------------------------------------

    async def _submit(self, code: str) -> execbox.AsyncExecution:
        assert self._session is not None
        try:
            return await self._session.submit(code, timeout=CELL_TIMEOUT)
        except SessionClosed:
            raise
        except ExecboxError as exc:
            raise ConnectionError(f"could not submit to the kernel: {exc}") from exc

    async def _open(self) -> None:
        """A new session with the container's settings; as root, the binds granted to it."""
        container = self._container
        assert container is not None
        try:
            client = container.execbox_client()
        except RuntimeError as exc:
            raise ConnectionError(f"Failed to create kernel: {exc}") from None
        binds = container.resolved_binds
        probe = UidProbe() if binds and container.embedded and os.geteuid() == 0 else None
        mounts = [bind.mount() for bind in binds] + ([probe.mount()] if probe else [])
        session: execbox.AsyncSession | None = None
        try:
            session = client.session(
                env=container.env,
                mounts=mounts or None,
                network=container.network,
                limits=container.limits,
                requirements=container.requirements or None,
            )
            await session.start()
            init = [probe.code] if probe else []
            init.append(f"__import__('sys').path.append({APP!r})")
            result = await session.execute("\n".join(init), timeout=INIT_TIMEOUT)
            if not result.ok:
                raise ConnectionError(f"Failed to create kernel: its set-up failed: {result}")
            if probe:
                uid = probe.uid()
                self._granted = uid
                await asyncio.to_thread(grant, binds, uid)
        except BaseException as exc:
            await self._discard(session)
            if isinstance(exc, ExecboxError | OSError) and not isinstance(exc, ConnectionError):
                raise ConnectionError(f"Failed to create kernel: {exc}") from exc
            raise
        finally:
            if probe:
                probe.remove()
        self._session, self._lost = session, None

    async def _close(self) -> None:
        session, self._session = self._session, None
        await self._discard(session)

    async def _discard(self, session: execbox.AsyncSession | None) -> None:
        """Close ``session`` (its box goes), then take back its uid's grant; never raises."""
        try:
            if session is not None:
                with contextlib.suppress(ExecboxError):
                    await session.close()
        finally:
            uid, self._granted = self._granted, None
            if uid is not None and self._container is not None:
                try:
                    await asyncio.to_thread(revoke, self._container.resolved_binds, uid)
                except OSError as exc:
                    log.warning("could not revoke box uid %d's access to the binds: %s", uid, exc)

    async def _reopen(self) -> None:
        """A fresh kernel after the last one's box ended (a limit hit): state is lost."""
        log.info("port %d: the kernel's box ended (%s); a new one starts", self.port, self._lost)
        await self._close()
        await self._open()

    def _session_lost(self, reason: str) -> None:
        self._lost = reason

    async def _interrupt(self) -> None:
        if self._session is not None:
            with contextlib.suppress(ExecboxError):
                await self._session.interrupt()
