"""Human sizes ("128M", "1G", 4096) to bytes, strictly: a typo must not become a huge limit."""

from __future__ import annotations

import re

from .errors import InvalidLimits

__all__ = ["format_size", "parse_size"]

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*$", re.IGNORECASE)


def parse_size(value: int | str, *, name: str = "size") -> int:
    """Bytes from an int or a string such as ``"128M"``, ``"1.5G"``, ``"64KiB"``."""
    if isinstance(value, bool):
        raise InvalidLimits(f"{name}: expected a size, got a boolean")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str):
        match = _PATTERN.match(value)
        if match is None:
            raise InvalidLimits(f"{name}: cannot read {value!r} as a size (try '128M' or '1G')")
        number, unit = match.groups()
        size = int(float(number) * _UNITS[unit.upper()])
    else:
        raise InvalidLimits(f"{name}: expected a size, got {type(value).__name__}")
    if size <= 0:
        raise InvalidLimits(f"{name}: must be positive, got {value!r}")
    return size


def format_size(size: int) -> str:
    """The shortest exact spelling, e.g. 134217728 -> "128M"."""
    for unit in ("T", "G", "M", "K"):
        if size % _UNITS[unit] == 0:
            return f"{size // _UNITS[unit]}{unit}"
    return str(size)
