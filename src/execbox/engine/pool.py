"""Warm boxes: pristine boxes started ahead of need, each handed out once.

Starting a box costs an interpreter start (the agent) on top of bubblewrap's set-up; a job only
needs an empty box of the right shape. A shape (limits, network, read-only paths) that has been
asked for recently keeps ``size`` boxes ready; a claimed box is never returned to the pool, and
boxes of shapes nobody asked for in ``idle_ttl`` seconds are destroyed.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

import anyio
import anyio.abc

from ..boxes.base import Backend, Box, BoxSpec

__all__ = ["BoxPool"]


def _shape(spec: BoxSpec) -> tuple[object, ...]:
    return (
        spec.limits,
        spec.network,
        tuple(spec.mounts),
        tuple(sorted(spec.env.items())),
    )


@dataclass
class _Shelf:
    spec: BoxSpec
    ready: list[Box] = field(default_factory=list)
    starting: int = 0
    last_asked: float = field(default_factory=time.monotonic)


class BoxPool:
    def __init__(
        self,
        backend: Backend,
        task_group: anyio.abc.TaskGroup,
        *,
        size: int = 2,
        idle_ttl: float = 300.0,
    ) -> None:
        self._backend = backend
        self._tg = task_group
        self.size = size
        self.idle_ttl = idle_ttl
        self._shelves: dict[tuple[object, ...], _Shelf] = {}
        self._closed = False

    async def claim(self, spec: BoxSpec) -> Box:
        """A ready box of this shape if one is waiting, else a freshly started one."""
        key = _shape(spec)
        shelf = self._shelves.get(key)
        if shelf is None:
            shelf = self._shelves[key] = _Shelf(spec)
        shelf.last_asked = time.monotonic()
        box = shelf.ready.pop() if shelf.ready else None
        self._refill(shelf)
        if box is not None:
            return box
        return await self._backend.create(spec)

    def _refill(self, shelf: _Shelf) -> None:
        if self._closed or self.size <= 0:
            return
        for _ in range(self.size - len(shelf.ready) - shelf.starting):
            shelf.starting += 1
            self._tg.start_soon(self._start_one, shelf)

    async def _start_one(self, shelf: _Shelf) -> None:
        try:
            box = await self._backend.create(shelf.spec)
        except Exception:
            return
        finally:
            shelf.starting -= 1
        if self._closed:
            await box.destroy()
        else:
            shelf.ready.append(box)
        await self._expire()

    async def _expire(self) -> None:
        now = time.monotonic()
        for key, shelf in list(self._shelves.items()):
            if now - shelf.last_asked > self.idle_ttl and not shelf.starting:
                del self._shelves[key]
                for box in shelf.ready:
                    await box.destroy()

    async def aclose(self) -> None:
        self._closed = True
        for shelf in self._shelves.values():
            while shelf.ready:
                with contextlib.suppress(Exception):
                    await shelf.ready.pop().destroy()
        self._shelves.clear()
