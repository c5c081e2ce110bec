"""The one exception tree of execbox.

Every error the SDK raises is an ``ExecboxError``; foreign errors (OS, subprocess, HTTP) are
translated where they cross into execbox, so callers need one ``except`` clause at most::

    ExecboxError
    ├── InvalidSpec              bad input, raised before any box starts
    │   ├── InvalidFiles         names with "..", absolute paths, NUL, unsafe archive members
    │   ├── InvalidLimits        negative, zero or absurd limits, unparsable sizes
    │   ├── NoEntrypoint         no entrypoint given and none can be inferred
    │   └── PayloadTooLarge      a request body or message over the server's size cap
    ├── RequirementsError        requirements that cannot be resolved to wheels
    ├── JobNotFound              no job with that id in this client
    ├── SessionNotFound          no session (or execution) with that id in this client
    ├── PathNotFound             no such file or directory in a box's workspace
    ├── SessionClosed            the session ended (closed, timed out, or its box hit a limit)
    ├── KernelError              a kernel would not start or answer
    ├── InvalidState             the request does not fit the object's state (input nobody asked)
    ├── CellError                ``raise_for_error()`` on an execution that did not end ok
    ├── AuthenticationError      a missing, malformed, unknown or revoked API key
    ├── PermissionDenied         the key is valid but may not do this (e.g. network, metrics)
    ├── QuotaExceeded            the key already holds as many sessions or jobs as it may
    ├── BoxError                 a box could not be created or driven
    │   └── IsolationUnavailable a protection the caller requires is missing on this host
    ├── ServerUnavailable        a remote client cannot reach its server, or cannot read it
    └── ExecboxTimeout           waiting for a result took longer than asked
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "BoxError",
    "CellError",
    "ExecboxError",
    "ExecboxTimeout",
    "InvalidFiles",
    "InvalidLimits",
    "InvalidSpec",
    "InvalidState",
    "IsolationUnavailable",
    "JobNotFound",
    "KernelError",
    "NoEntrypoint",
    "PathNotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "QuotaExceeded",
    "RequirementsError",
    "ServerUnavailable",
    "SessionClosed",
    "SessionNotFound",
]


class ExecboxError(Exception):
    """Root of every error execbox raises."""


class InvalidSpec(ExecboxError, ValueError):
    """The request itself is wrong; nothing was started."""


class InvalidFiles(InvalidSpec):
    """A file name or archive member would land outside the workspace, or is empty."""


class InvalidLimits(InvalidSpec):
    """A limit is negative, zero, absurd, or not a size we can read."""


class NoEntrypoint(InvalidSpec):
    """No entrypoint was given and none could be inferred from the files."""


class PayloadTooLarge(InvalidSpec):
    """A request body, upload or WebSocket message is larger than the server accepts."""


class AuthenticationError(ExecboxError):
    """The API key is missing, malformed, unknown or revoked."""


class PermissionDenied(ExecboxError):
    """The key is valid but its tenant may not do this."""


class QuotaExceeded(ExecboxError):
    """The key already holds as many live sessions or jobs as it may."""


class RequirementsError(ExecboxError):
    """The host-side step could not resolve the requirements to wheels."""


class JobNotFound(ExecboxError, LookupError):
    """No job with that id is known to this client."""


class SessionNotFound(ExecboxError, LookupError):
    """No session, or no execution in it, with that id is known to this client."""


class PathNotFound(ExecboxError, LookupError):
    """No file or directory at that path in the box."""


class SessionClosed(ExecboxError):
    """The session has ended; ``reason`` says why (``closed``, ``idle_timeout``, ``ttl``…)."""

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason


class InvalidState(ExecboxError):
    """The request does not fit the object's current state, e.g. input nobody asked for."""


class KernelError(ExecboxError):
    """A kernel would not start, or stopped answering."""


class CellError(ExecboxError):
    """The code of an execution raised, or the execution did not end ok."""

    def __init__(
        self, message: str, ename: str, evalue: str, traceback: tuple[str, ...] = ()
    ) -> None:
        super().__init__(message)
        self.ename = ename
        self.evalue = evalue
        self.traceback = traceback


class BoxError(ExecboxError):
    """A box could not be created, driven or destroyed."""


class IsolationUnavailable(BoxError):
    """A protection the caller insisted on is not available on this host."""


class ServerUnavailable(ExecboxError, ConnectionError):
    """A remote client could not reach its server, lost the connection, or got an answer it
    cannot read (a proxy's error page, say). What ran on the server may have happened."""


class ExecboxTimeout(ExecboxError, TimeoutError):
    """Waiting for a result took longer than the caller allowed."""
