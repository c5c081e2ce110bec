"""Waiting for whichever of several things happens first."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio

__all__ = ["first"]


async def first(*waits: Callable[[], Awaitable[object]]) -> None:
    """Until the first of ``waits`` returns; the others are cancelled."""
    async with anyio.create_task_group() as tg:

        async def run(wait: Callable[[], Awaitable[object]]) -> None:
            await wait()
            tg.cancel_scope.cancel()

        for wait in waits:
            tg.start_soon(run, wait)
