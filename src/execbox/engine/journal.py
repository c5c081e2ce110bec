"""Where the engine reports the changes a durable record must hold, and waits until it has.

The engine awaits each call at the point it names: a job's ``running`` before its box is
claimed, an execution's ``running`` before its code reaches the kernel, and every result
before anyone can see it. A failure to record ``running`` ends the job or execution as an
error without running it; a failure to record a result is logged and the result is still
returned (the record is then reconciled at the next start).
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from ..models import ExecutionResult, JobResult

__all__ = ["Journal", "NullJournal"]


class Journal(Protocol):
    async def job_running(self, job_id: str, started_at: datetime) -> None: ...

    async def job_finished(self, result: JobResult) -> None: ...

    async def execution_running(self, execution_id: str, started_at: datetime) -> None: ...

    async def execution_finished(self, result: ExecutionResult) -> None: ...

    async def session_closed(self, session_id: str, reason: str) -> None: ...


class NullJournal:
    """The embedded engine's journal: the caller holds the results, nothing is stored."""

    async def job_running(self, job_id: str, started_at: datetime) -> None:
        pass

    async def job_finished(self, result: JobResult) -> None:
        pass

    async def execution_running(self, execution_id: str, started_at: datetime) -> None:
        pass

    async def execution_finished(self, result: ExecutionResult) -> None:
        pass

    async def session_closed(self, session_id: str, reason: str) -> None:
        pass
