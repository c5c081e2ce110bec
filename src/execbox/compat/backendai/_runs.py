"""A run: what one query or batch produces, handed out in Backend.AI's result slices.

A relay task pushes console records and control marks into the run as the kernel produces
them; each ``execute`` call takes what arrived within its time slice. A slice ends early at a
control mark (``waiting-input``, ``clean-finished``, ``build-finished``, ``finished``), else
when its time is up, as ``continued``: the output so far is returned and the rest waits for the
next call, so nothing is lost or handed out twice. Consecutive text of one stream is joined
into one record, as Backend.AI's agent does.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import anyio

from ...client import AsyncExecution
from .exceptions import BackendAPIError

__all__ = ["Control", "Record", "Run"]

Record = list[str]
"""``["stdout", text]``, ``["stderr", text]`` or ``[mime_type, content]``."""


@dataclass(frozen=True)
class Control:
    """A mark that ends a slice: ``finished`` ends the run, the others pause it."""

    status: str
    exit_code: int | None = None
    options: dict[str, Any] | None = field(default=None)


class Run:
    def __init__(self, run_id: str) -> None:
        self.id = run_id
        self.finished = False
        """The ``finished`` result was handed out: the run is over."""
        self._items: deque[Record | Control] = deque()
        self._arrived = anyio.Event()
        self._reading = anyio.Lock()
        self._asking: AsyncExecution | None = None

    def __repr__(self) -> str:
        return f"<Run {self.id}{' finished' if self.finished else ''}>"

    # -- the relay's side -------------------------------------------------------------------

    def push(self, item: Record | Control) -> None:
        self._items.append(item)
        self._arrived.set()

    def ask(self, execution: AsyncExecution, password: bool) -> None:
        """The code waits in ``input()``: the next ``input`` call answers ``execution``."""
        self._asking = execution
        self.push(Control("waiting-input", options={"is_password": password}))

    def stop_asking(self) -> None:
        self._asking = None

    # -- the caller's side ------------------------------------------------------------------

    @property
    def waiting_input(self) -> bool:
        return self._asking is not None

    async def answer(self, text: str) -> None:
        execution, self._asking = self._asking, None
        if execution is None:
            raise BackendAPIError.problem(
                400,
                "Bad Request",
                "invalid-api-params",
                f"run {self.id} is not waiting for input: use mode 'continue'",
            )
        await execution.send_input(text)

    async def next_result(self, flush_timeout: float) -> dict[str, Any]:
        """The next slice as Backend.AI's result object (``runId``, ``status``, ``console``,
        ``exitCode``, ``options``)."""
        async with self._reading:
            console: list[Record] = []
            with anyio.move_on_after(flush_timeout):
                while True:
                    while self._items:
                        item = self._items.popleft()
                        if isinstance(item, Control):
                            self.finished = self.finished or item.status == "finished"
                            return self._result(item.status, console, item.exit_code, item.options)
                        _append(console, item)
                    self._arrived = anyio.Event()
                    await self._arrived.wait()
            return self._result("continued", console, None, None)

    def _result(
        self,
        status: str,
        console: list[Record],
        exit_code: int | None,
        options: dict[str, Any] | None,
    ) -> dict[str, Any]:
        return {
            "runId": self.id,
            "status": status,
            "exitCode": exit_code,
            "options": options,
            "console": console,
        }


def _append(console: list[Record], record: Record) -> None:
    kind = record[0]
    if kind in ("stdout", "stderr") and console and console[-1][0] == kind:
        console[-1] = [kind, console[-1][1] + record[1]]
    else:
        console.append(list(record))
