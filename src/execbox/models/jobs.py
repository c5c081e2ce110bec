"""Jobs: a program run once in a fresh box; its status, result and events."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

from .limits import Usage

__all__ = [
    "TERMINAL_STATUSES",
    "JobEvent",
    "JobResult",
    "JobStatus",
    "OutputEvent",
    "StatusEvent",
]


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMEOUT = "timeout"
    MEMORY_LIMIT = "memory_limit"
    KILLED = "killed"
    ERROR = "error"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset(
    {
        JobStatus.SUCCEEDED,
        JobStatus.FAILED,
        JobStatus.TIMEOUT,
        JobStatus.MEMORY_LIMIT,
        JobStatus.KILLED,
        JobStatus.ERROR,
    }
)


@dataclass(frozen=True, slots=True)
class JobResult:
    """What a finished job produced. ``stdout``/``stderr`` are decoded leniently from the bytes."""

    id: str
    status: JobStatus
    exit_code: int | None
    stdout_bytes: bytes = b""
    stderr_bytes: bytes = b""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    usage: Usage = field(default_factory=Usage)
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    reason: str | None = None
    """A short machine-readable cause, e.g. ``pre_command_failed`` or ``pids_limit``."""
    message: str | None = None
    """One human sentence about why the job ended as it did, when that is not obvious."""

    @property
    def stdout(self) -> str:
        return self.stdout_bytes.decode("utf-8", "replace")

    @property
    def stderr(self) -> str:
        return self.stderr_bytes.decode("utf-8", "replace")

    @property
    def duration(self) -> float:
        return self.usage.wall_seconds

    @property
    def ok(self) -> bool:
        return self.status is JobStatus.SUCCEEDED

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["stdout"], data["stderr"] = self.stdout, self.stderr
        del data["stdout_bytes"], data["stderr_bytes"]
        for key in ("created_at", "started_at", "finished_at"):
            value = data[key]
            data[key] = value.isoformat() if value else None
        return data


@dataclass(frozen=True, slots=True)
class OutputEvent:
    """A chunk of a job's output, as it was produced."""

    stream: Literal["stdout", "stderr"]
    data: bytes


@dataclass(frozen=True, slots=True)
class StatusEvent:
    status: JobStatus
    result: JobResult | None = None
    """Set when ``status`` is terminal."""


JobEvent = OutputEvent | StatusEvent
