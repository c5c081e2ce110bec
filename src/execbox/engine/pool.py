"""Warm pools: things that are slow to start (boxes, kernels in boxes), started ahead of need.

A shape that has been asked for recently keeps ``size`` items ready; a claimed item is never
returned to the pool (each serves one job or one session), and shapes nobody asked for in
``idle_ttl`` seconds are let go. Refills run in the background, in the engine's task group;
while items are still waiting, a refill starts only after ``REFILL_DELAY``, so that starting a
box does not compete for the CPU with the job that has just claimed one.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import anyio
import anyio.abc

from ..boxes.base import Backend, Box, BoxSpec

__all__ = ["BoxPool", "WarmPool", "box_pool"]

log = logging.getLogger("execbox.pool")

REFILL_DELAY = 0.1

S = TypeVar("S")
T = TypeVar("T")


@dataclass
class _Shelf(Generic[S, T]):
    spec: S
    ready: list[T] = field(default_factory=list)
    starting: int = 0
    last_asked: float = field(default_factory=time.monotonic)


class WarmPool(Generic[S, T]):
    def __init__(
        self,
        task_group: anyio.abc.TaskGroup,
        *,
        make: Callable[[S], Awaitable[T]],
        discard: Callable[[T], Awaitable[None]],
        shape: Callable[[S], Hashable],
        size: int = 2,
        idle_ttl: float = 300.0,
    ) -> None:
        self._tg = task_group
        self._make = make
        self._discard = discard
        self._shape = shape
        self.size = size
        self.idle_ttl = idle_ttl
        self._shelves: dict[Hashable, _Shelf[S, T]] = {}
        self._closed = False

    def ready(self) -> int:
        """How many items wait, over all shapes (for metrics and tests)."""
        return sum(len(shelf.ready) for shelf in self._shelves.values())

    async def claim(self, spec: S) -> T:
        """A ready item of this shape if one is waiting, else a freshly made one."""
        key = self._shape(spec)
        shelf = self._shelves.get(key)
        if shelf is None:
            shelf = self._shelves[key] = _Shelf(spec)
        shelf.last_asked = time.monotonic()
        if shelf.ready:
            item = shelf.ready.pop()
            self._refill(shelf, delay=REFILL_DELAY if shelf.ready else 0.0)
            return item
        try:  # the caller waits for this one: refills would only compete with it for CPU
            return await self._make(spec)
        finally:
            self._refill(shelf)

    def _refill(self, shelf: _Shelf[S, T], delay: float = 0.0) -> None:
        if self._closed or self.size <= 0:
            return
        for _ in range(self.size - len(shelf.ready) - shelf.starting):
            shelf.starting += 1
            self._tg.start_soon(self._start_one, shelf, delay)

    async def _start_one(self, shelf: _Shelf[S, T], delay: float = 0.0) -> None:
        try:
            if delay:
                await anyio.sleep(delay)
            item = await self._make(shelf.spec)
        except Exception as exc:
            log.warning("warm pool could not start an item: %s", exc)
            return
        finally:
            shelf.starting -= 1
        if self._closed:
            await self._discard(item)
        else:
            shelf.ready.append(item)
        await self._expire()

    async def _expire(self) -> None:
        now = time.monotonic()
        for key, shelf in list(self._shelves.items()):
            if now - shelf.last_asked > self.idle_ttl and not shelf.starting:
                del self._shelves[key]
                for item in shelf.ready:
                    await self._discard(item)

    async def aclose(self) -> None:
        self._closed = True
        for shelf in self._shelves.values():
            while shelf.ready:
                with contextlib.suppress(Exception):
                    await self._discard(shelf.ready.pop())
        self._shelves.clear()


BoxPool = WarmPool[BoxSpec, Box]


def _box_shape(spec: BoxSpec) -> Hashable:
    return (spec.limits, spec.network, tuple(spec.mounts), tuple(sorted(spec.env.items())))


async def _destroy(box: Box) -> None:
    await box.destroy()


def box_pool(backend: Backend, task_group: anyio.abc.TaskGroup, *, size: int = 2) -> BoxPool:
    """Pristine single-use boxes for jobs, one shelf per (limits, network, mounts, env)."""
    return WarmPool(task_group, make=backend.create, discard=_destroy, shape=_box_shape, size=size)
