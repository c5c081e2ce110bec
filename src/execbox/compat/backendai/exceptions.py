"""The errors of the Backend.AI client, rooted in execbox's own tree.

``except BackendError`` catches what Backend.AI code expects to catch, and ``except
ExecboxError`` still catches everything, so code of either world keeps working::

    ExecboxError
    └── BackendError
        ├── BackendAPIError      the "server" refused: unknown image or run, ended session
        └── BackendClientError   the call itself is wrong: bad mode, bad token, no session
"""

from __future__ import annotations

from typing import Any

from ...errors import ExecboxError

__all__ = ["APIVersionWarning", "BackendAPIError", "BackendClientError", "BackendError"]

PROBLEM = "https://api.backend.ai/probs/"


class BackendError(ExecboxError):
    """Any error of the Backend.AI compatibility layer."""


class BackendAPIError(BackendError):
    """A refusal shaped as Backend.AI's API gives it: HTTP ``status``, ``reason`` and ``data``
    (a problem document with ``type`` and ``title``)."""

    def __init__(self, status: int, reason: str, data: Any) -> None:
        super().__init__(status, reason, data)

    @classmethod
    def problem(cls, status: int, reason: str, kind: str, title: str) -> BackendAPIError:
        return cls(status, reason, {"type": PROBLEM + kind, "title": title})

    @property
    def status(self) -> int:
        status: int = self.args[0]
        return status

    @property
    def reason(self) -> str:
        reason: str = self.args[1]
        return reason

    @property
    def data(self) -> Any:
        return self.args[2]

    def __str__(self) -> str:
        title = self.data.get("title") if isinstance(self.data, dict) else self.data
        return f"{self.status} {self.reason}: {title}"


class BackendClientError(BackendError):
    """The call cannot be made as asked: an invalid argument, or no open session."""


class APIVersionWarning(UserWarning):
    """Kept for imports that name it; execbox negotiates no API version."""
