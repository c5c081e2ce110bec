"""Limits of a box and what it used: shared by jobs and sessions."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from ..errors import InvalidLimits
from ..sizes import parse_size

__all__ = ["Limits", "Usage", "validate_timeout"]

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


@dataclass(frozen=True, slots=True)
class Usage:
    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0
    peak_memory_bytes: int = 0
