"""One execution in a session: its record, its event log, and how its outcome is judged.

Events are kept in order in a log that listeners read by index, so a late listener replays
everything and nothing is ever dropped for a slow one; the log is bounded by the session's
output limit (the recorder refuses output beyond it and marks the result truncated).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import anyio

from ..boxes.base import BoxStats
from ..kernel.outputs import ExecutionRecorder
from ..models import (
    EndEvent,
    ExecutionEvent,
    ExecutionResult,
    ExecutionStatus,
    InputRequestEvent,
    Usage,
)
from ..waits import first

__all__ = ["Execution", "Verdict", "judge", "new_execution_id"]

RESEND_AFTER = 0.25
"""Silence after an interrupt for this long means the signal was lost: it is sent again."""
REPLY_AFTER_IDLE = 0.5
"""How long a reply may trail the kernel's idle status before it is judged never to come."""


def new_execution_id() -> str:
    return f"exe_{secrets.token_hex(12)}"


class Execution:
    def __init__(
        self,
        session_id: str,
        code: str,
        timeout: float,
        output_limit: int,
        execution_id: str | None = None,
    ) -> None:
        self.id = execution_id or new_execution_id()
        self.session_id = session_id
        self.code = code
        self.timeout = timeout
        self.status = ExecutionStatus.QUEUED
        self.recorder = ExecutionRecorder(output_limit=output_limit)
        self.events: list[ExecutionEvent] = []
        self.result: ExecutionResult | None = None
        self.created_at = datetime.now(UTC)
        self.started_at: datetime | None = None
        self.settled = anyio.Event()
        """Set when the kernel has answered, died, or an interrupt went unheeded."""
        self.begun = anyio.Event()
        """Set when the kernel has begun the cell: ipykernel heeds SIGINT only from then on."""
        self.idle = anyio.Event()
        """Set when the kernel is idle again after the cell, with or without a reply."""
        self.heard = 0
        """How many of the kernel's messages for this cell have arrived."""
        self.done = anyio.Event()
        self.waiting_input = False
        self.interrupted = False
        self.timed_out = False
        self.unresponsive = False
        self.restart_requested = False
        self._changed = anyio.Event()

    def publish(self, event: ExecutionEvent) -> None:
        if isinstance(event, InputRequestEvent):
            self.waiting_input = True
        self.events.append(event)
        changed, self._changed = self._changed, anyio.Event()
        changed.set()

    def on_message(self, channel: str, message: dict[str, object]) -> None:
        """The kernel's handler for this execution's messages (and for the kernel's death)."""
        if channel == "exit":
            self.settled.set()
            return
        self.heard += 1
        event = self.recorder.feed(channel, message)
        if self.recorder.begun:
            self.begun.set()
        if self.recorder.idle:
            self.idle.set()
        if event is not None:
            self.publish(event)
        if self.recorder.done:
            self.settled.set()

    async def wait_begun(self, timeout: float) -> None:
        """Until the kernel has begun the cell or the execution has settled."""
        with anyio.move_on_after(timeout):
            await first(self.begun.wait, self.settled.wait)

    async def heeds_interrupt(self, resend: Callable[[], Awaitable[None]], grace: float) -> bool:
        """Whether the kernel stopped the cell within ``grace`` of an interrupt.

        ipykernel can lose a SIGINT that lands in its own code between execute_input and the
        cell: either the request ends with idle and no reply (the kernel is alive and waiting,
        so that counts as stopped), or the signal is swallowed and the cell runs on. So while
        nothing at all is heard from the kernel, the signal is sent again; a kernel that talks
        but does not stop is judged at ``grace``, as before."""
        deadline = anyio.current_time() + grace
        heard = self.heard
        while not (self.settled.is_set() or self.idle.is_set()):
            remaining = deadline - anyio.current_time()
            if remaining <= 0:
                break
            with anyio.move_on_after(min(RESEND_AFTER, remaining)):
                await first(self.settled.wait, self.idle.wait)
            silent = self.heard == heard and anyio.current_time() < deadline
            if silent and not (self.settled.is_set() or self.idle.is_set()):
                await resend()
            heard = self.heard
        if not self.settled.is_set() and self.idle.is_set():
            with anyio.move_on_after(REPLY_AFTER_IDLE):
                await self.settled.wait()  # the reply travels on another socket than idle
            self.settled.set()
        return self.settled.is_set()

    def finish(self, result: ExecutionResult) -> None:
        if self.result is not None:
            return
        self.result = result
        self.status = result.status
        self.waiting_input = False
        self.publish(EndEvent(result))
        self.done.set()

    def cancelled(self, message: str) -> ExecutionResult:
        return self.make_result(ExecutionStatus.CANCELLED, Usage(), message=message)

    def make_result(
        self,
        status: ExecutionStatus,
        usage: Usage,
        *,
        restarted: bool = False,
        message: str | None = None,
    ) -> ExecutionResult:
        recorder = self.recorder
        return ExecutionResult(
            id=self.id,
            session_id=self.session_id,
            status=status,
            execution_count=recorder.execution_count,
            text=recorder.text,
            stdout=recorder.stdout,
            stderr=recorder.stderr,
            outputs=recorder.outputs,
            error=recorder.error,
            usage=usage,
            restarted=restarted,
            truncated=recorder.truncated,
            message=message,
            started_at=self.started_at,
            finished_at=datetime.now(UTC),
        )

    async def stream(self) -> AsyncIterator[ExecutionEvent]:
        """Every event from the first, then new ones as they come, ending with ``EndEvent``."""
        index = 0
        while True:
            while index < len(self.events):
                event = self.events[index]
                index += 1
                yield event
                if isinstance(event, EndEvent):
                    return
            await self._changed.wait()


@dataclass(kw_only=True)
class Verdict:
    """How an execution ended, and what that means for its session."""

    status: ExecutionStatus
    message: str | None = None
    restart: bool = False
    end_session: str | None = None


def judge(execution: Execution, kernel_alive: bool, before: BoxStats, after: BoxStats) -> Verdict:
    """The status of a settled execution, from the kernel's answer and the box's counters."""
    fresh_oom = after.memory_counted and after.oom_kills > before.oom_kills
    fresh_pids = after.pids_refusals > before.pids_refusals
    if not kernel_alive:
        # A fork bomb of kernel copies also exhausts memory: the process limit is the cause.
        if fresh_pids:
            return Verdict(
                status=ExecutionStatus.PIDS_LIMIT,
                message="the kernel died at the session's process limit; the session ended",
                end_session="pids_limit",
            )
        if fresh_oom:
            return Verdict(
                status=ExecutionStatus.MEMORY_LIMIT,
                message="the kernel was killed at the session's memory limit; the session ended",
                end_session="memory_limit",
            )
        return Verdict(
            status=ExecutionStatus.KERNEL_DIED,
            message="the kernel died; it was restarted and its state is lost",
            restart=True,
        )
    if fresh_pids:
        return Verdict(
            status=ExecutionStatus.PIDS_LIMIT,
            message="the code hit the session's process limit (a fork bomb?); the session ended",
            end_session="pids_limit",
        )
    timeout = f"{execution.timeout:g} s"
    waiting = " waiting for input" if execution.waiting_input else ""
    if execution.restart_requested:
        return Verdict(
            status=ExecutionStatus.INTERRUPTED,
            message="the session was restarted during this execution: its state is lost",
            restart=True,
        )
    if execution.unresponsive:
        status = ExecutionStatus.TIMEOUT if execution.timed_out else ExecutionStatus.INTERRUPTED
        cause = (
            f"ran past its timeout of {timeout}{waiting}"
            if execution.timed_out
            else "was interrupted"
        )
        return Verdict(
            status=status,
            message=f"the execution {cause} and ignored the interrupt: the kernel was "
            "restarted and its state is lost",
            restart=True,
        )
    if execution.timed_out:
        return Verdict(
            status=ExecutionStatus.TIMEOUT,
            message=f"the execution ran past its timeout of {timeout}{waiting}; it was "
            "interrupted and the session's state is kept",
        )
    if execution.interrupted:
        return Verdict(status=ExecutionStatus.INTERRUPTED, message="the execution was interrupted")
    recorder = execution.recorder
    if recorder.reply_status == "ok":
        message = None
        if fresh_oom:
            message = "a process of this execution was killed at the session's memory limit"
        return Verdict(status=ExecutionStatus.OK, message=message)
    if recorder.reply_status == "aborted":
        return Verdict(status=ExecutionStatus.CANCELLED, message="the kernel aborted the execution")
    return Verdict(status=ExecutionStatus.ERROR)
