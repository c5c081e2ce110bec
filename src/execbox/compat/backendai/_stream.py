"""``stream_execute``: a run streamed as WebSocket messages, as Backend.AI's client yields them.

Each message is a ``WSMessage`` whose ``type`` equals ``aiohttp.WSMsgType.TEXT`` (same values,
no aiohttp needed) and whose ``data`` is the JSON of a result: ``status``, ``console``,
``exitCode``, ``options``. The stream answers a ``waiting-input`` with the text given to
``send_text`` (or ``send_str``), and ends after ``finished``. Leaving the ``async with`` before
that interrupts the run, as Backend.AI's server does when its client goes away.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, NamedTuple

from ._compute import Compute
from ._runs import Run
from .exceptions import BackendClientError

__all__ = ["ExecutionStream", "StreamContext", "WSMessage", "WSMsgType"]

STREAM_SLICE = 0.2
"""Backend.AI's server gathers output for 0.2 s per streamed message."""


class WSMsgType(enum.IntEnum):
    """aiohttp's WebSocket message types, with aiohttp's values."""

    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    PING = 0x9
    PONG = 0xA
    CLOSE = 0x8
    CLOSING = 0x100
    CLOSED = 0x101
    ERROR = 0x102


class WSMessage(NamedTuple):
    type: WSMsgType
    data: Any
    extra: Any = None

    def json(self, *, loads: Callable[[str], Any] = json.loads) -> Any:
        return loads(self.data)


class ExecutionStream:
    def __init__(self, compute: Compute, run: Run) -> None:
        self._compute = compute
        self._run = run
        self._finished = False
        self._asked = False

    def __aiter__(self) -> ExecutionStream:
        return self

    async def __anext__(self) -> WSMessage:
        if self._finished:
            raise StopAsyncIteration
        if self._asked:
            raise BackendClientError(
                "the run waits for input: answer it with `await stream.send_text(text)` first"
            )
        while True:
            result = await self._compute.next_result(self._run, STREAM_SLICE)
            if result["status"] != "continued" or result["console"]:
                break
        self._finished = result["status"] == "finished"
        self._asked = result["status"] == "waiting-input"
        payload = {key: result[key] for key in ("status", "console", "exitCode", "options")}
        return WSMessage(WSMsgType.TEXT, json.dumps(payload))

    @property
    def closed(self) -> bool:
        return self._finished

    async def send_text(self, text: str) -> None:
        """The answer to the ``input()`` the run waits in."""
        if not isinstance(text, str):
            raise BackendClientError(f"an input answer is text, not {type(text).__name__}")
        if self._finished:
            raise BackendClientError("the run has finished: there is nothing to answer")
        await self._run.answer(text)
        self._asked = False

    send_str = send_text

    async def send_json(self, obj: Any) -> None:
        await self.send_text(json.dumps(obj))

    async def receive_str(self) -> str:
        try:
            message = await self.__anext__()
        except StopAsyncIteration:
            raise BackendClientError("the stream has ended") from None
        data: str = message.data
        return data

    async def receive_json(self) -> Any:
        return json.loads(await self.receive_str())

    async def close(self) -> None:
        """Stop streaming; a run still going is interrupted."""
        if not self._finished:
            self._finished = True
            self._compute.forget(self._run)
            if not self._compute.destroyed:
                await self._compute.interrupt()


class StreamContext:
    """What ``stream_execute`` returns: ``async with`` it to get the stream."""

    def __init__(self, start: Callable[[], Awaitable[ExecutionStream]]) -> None:
        self._start = start
        self._stream: ExecutionStream | None = None

    async def __aenter__(self) -> ExecutionStream:
        self._stream = await self._start()
        return self._stream

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._stream is not None:
            await self._stream.close()
