"""Files inside a box, as the SDK and the server describe them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["DirEntry"]


@dataclass(frozen=True, slots=True)
class DirEntry:
    """One entry of a directory inside a box, as seen without following links."""

    name: str
    kind: Literal["file", "dir", "symlink", "other"]
    size: int
    modified: float
    """Seconds since the epoch."""
