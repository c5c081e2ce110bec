"""Async byte streams over raw pipe fds, so box output is read as it is produced, in chunks."""

from __future__ import annotations

import contextlib
import os

import anyio
from anyio.abc import ByteReceiveStream

__all__ = ["FdReceiveStream", "close_quietly", "write_all"]

_CHUNK = 65536


def close_quietly(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


class FdReceiveStream(ByteReceiveStream):
    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self._fd = fd

    async def receive(self, max_bytes: int = _CHUNK) -> bytes:
        while True:
            if self._fd < 0:
                raise anyio.ClosedResourceError
            try:
                data = os.read(self._fd, max_bytes)
            except BlockingIOError:
                await anyio.wait_readable(self._fd)
                continue
            if not data:
                raise anyio.EndOfStream
            return data

    async def aclose(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            close_quietly(fd)


async def write_all(fd: int, data: bytes) -> None:
    """Write everything to a non-blocking pipe, yielding while the reader catches up."""
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            await anyio.wait_writable(fd)
            continue
        view = view[written:]
