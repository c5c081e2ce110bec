"""One client's WebSocket to a kernel: frames in, and an outbox of frames out.

Whatever the gateway sends a client goes through the connection's outbox, without waiting:
frames leave in the order they were put in, whichever task produced them, and a slow client
slows only itself. A client that lets its outbox fill up (it stopped reading) is dropped.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from starlette.websockets import WebSocket, WebSocketDisconnect

from ...store.accounts import Principal

__all__ = ["Connection"]

log = logging.getLogger("execbox.server.jupyter")

OUTBOX = 10_000
"""Frames a connection may have waiting to be sent before it is dropped."""
MESSAGE_TOO_BIG = 1009

Frame = str | bytes


class Connection:
    def __init__(self, websocket: WebSocket, principal: Principal, max_message: int) -> None:
        self.websocket = websocket
        self.principal = principal
        self.max_message = max_message
        self._outbox, self._pending = anyio.create_memory_object_stream[dict[str, Any]](OUTBOX)
        self.open = True

    def deliver(self, message: dict[str, Any]) -> None:
        """Queue a frame for this client; never blocks, drops the client that stopped reading."""
        if not self.open:
            return
        try:
            self._outbox.send_nowait(message)
        except anyio.WouldBlock:
            log.warning("a Jupyter client stopped reading its kernel's messages: dropped")
            self.close()
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            self.open = False

    def close(self) -> None:
        """End the connection once what is queued has been sent (the kernel is gone)."""
        self.open = False
        self._outbox.close()

    async def serve(self, on_frame: Callable[[Connection, Frame], Awaitable[None]]) -> None:
        """Read frames until the client leaves (or the connection is closed), sending the
        outbox meanwhile."""
        async with anyio.create_task_group() as tg:

            async def write() -> None:
                with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                    async with self._pending:
                        async for message in self._pending:
                            text = json.dumps(message, separators=(",", ":"), default=str)
                            await self.websocket.send_text(text)
                tg.cancel_scope.cancel()

            tg.start_soon(write)
            while True:
                frame = await self._receive()
                if frame is None:
                    break
                await on_frame(self, frame)
            tg.cancel_scope.cancel()
        self.open = False

    async def _receive(self) -> Frame | None:
        try:
            message = await self.websocket.receive()
        except (WebSocketDisconnect, RuntimeError, OSError):
            return None
        if message["type"] == "websocket.disconnect":
            return None
        frame: Frame | None = message.get("text")
        if frame is None:
            frame = message.get("bytes") or b""
        if len(frame) > self.max_message:
            with contextlib.suppress(RuntimeError, OSError):
                await self.websocket.close(MESSAGE_TOO_BIG, "message too big")
            return None
        return frame
