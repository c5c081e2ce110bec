"""Wire models shared by the SDK, the engine and (later) the server.

Plain frozen dataclasses: importing them costs nothing and they serialise with ``to_dict``.
Validation happens on construction, so an invalid object never exists.
"""

from __future__ import annotations

import enum
import math
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from .errors import InvalidLimits
from .sizes import parse_size

__all__ = [
    "TERMINAL_STATUSES",
    "JobEvent",
    "JobResult",
    "JobStatus",
    "Limits",
    "OutputEvent",
    "StatusEvent",
    "Usage",
]

_KIB, _MIB, _GIB, _TIB = 1 << 10, 1 << 20, 1 << 30, 1 << 40

# Bounds beyond which a limit is a mistake, not a wish.
_MEMORY_RANGE = (16 * _MIB, 1 * _TIB)
_DISK_RANGE = (1 * _MIB, 1 * _TIB)
_OUTPUT_RANGE = (1 * _KIB, 1 * _GIB)
_PIDS_RANGE = (4, 1 << 22)
_CPUS_RANGE = (0.01, 1024.0)


def _bounded_size(value: int | str, name: str, bounds: tuple[int, int]) -> int:
    size = parse_size(value, name=name)
    low, high = bounds
    if not low <= size <= high:
        raise InvalidLimits(f"{name}: {value!r} is outside the allowed range {low}..{high} bytes")
    return size


@dataclass(frozen=True, slots=True)
class Limits:
    """Resource limits of one box. Sizes accept ``"128M"``, ``"1G"`` or bytes."""

    memory: int | str = "512M"
    cpus: float = 1.0
    pids: int = 128
    disk: int | str = "256M"
    output: int | str = "8M"
    """Bytes kept per output stream; the rest is drained and counted, never buffered."""

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "memory", _bounded_size(self.memory, "memory", _MEMORY_RANGE))
        set_(self, "disk", _bounded_size(self.disk, "disk", _DISK_RANGE))
        set_(self, "output", _bounded_size(self.output, "output", _OUTPUT_RANGE))
        if isinstance(self.pids, bool) or not isinstance(self.pids, int):
            raise InvalidLimits(f"pids: expected an integer, got {self.pids!r}")
        if not _PIDS_RANGE[0] <= self.pids <= _PIDS_RANGE[1]:
            raise InvalidLimits(f"pids: {self.pids} is outside {_PIDS_RANGE[0]}..{_PIDS_RANGE[1]}")
        if isinstance(self.cpus, bool) or not isinstance(self.cpus, int | float):
            raise InvalidLimits(f"cpus: expected a number, got {self.cpus!r}")
        if not (math.isfinite(self.cpus) and _CPUS_RANGE[0] <= self.cpus <= _CPUS_RANGE[1]):
            raise InvalidLimits(f"cpus: {self.cpus} is outside {_CPUS_RANGE[0]}..{_CPUS_RANGE[1]}")
        set_(self, "cpus", float(self.cpus))

    @property
    def memory_bytes(self) -> int:
        assert isinstance(self.memory, int)
        return self.memory

    @property
    def disk_bytes(self) -> int:
        assert isinstance(self.disk, int)
        return self.disk

    @property
    def output_bytes(self) -> int:
        assert isinstance(self.output, int)
        return self.output

    def merged(self, **changes: Any) -> Limits:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def validate_timeout(timeout: float | None, *, name: str = "timeout") -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise InvalidLimits(f"{name}: expected seconds, got {timeout!r}")
    if not (math.isfinite(timeout) and 0 < timeout <= 7 * 24 * 3600):
        raise InvalidLimits(f"{name}: {timeout!r} must be > 0 and at most a week")
    return float(timeout)


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
class Usage:
    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0
    peak_memory_bytes: int = 0


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
