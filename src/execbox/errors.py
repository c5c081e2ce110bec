"""The one exception tree of execbox.

Every error the SDK raises is an ``ExecboxError``; foreign errors (OS, subprocess, HTTP) are
translated where they cross into execbox, so callers need one ``except`` clause at most::

    ExecboxError
    ├── InvalidSpec              bad input, raised before any box starts
    │   ├── InvalidFiles         names with "..", absolute paths, NUL, unsafe archive members
    │   ├── InvalidLimits        negative, zero or absurd limits, unparsable sizes
    │   └── NoEntrypoint         no entrypoint given and none can be inferred
    ├── RequirementsError        requirements that cannot be resolved to wheels
    ├── JobNotFound              no job with that id in this client
    ├── BoxError                 a box could not be created or driven
    │   └── IsolationUnavailable a protection the caller requires is missing on this host
    └── ExecboxTimeout           waiting for a result took longer than asked
"""

from __future__ import annotations

__all__ = [
    "BoxError",
    "ExecboxError",
    "ExecboxTimeout",
    "InvalidFiles",
    "InvalidLimits",
    "InvalidSpec",
    "IsolationUnavailable",
    "JobNotFound",
    "NoEntrypoint",
    "RequirementsError",
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


class RequirementsError(ExecboxError):
    """The host-side step could not resolve the requirements to wheels."""


class JobNotFound(ExecboxError, LookupError):
    """No job with that id is known to this client."""


class BoxError(ExecboxError):
    """A box could not be created, driven or destroyed."""


class IsolationUnavailable(BoxError):
    """A protection the caller insisted on is not available on this host."""


class ExecboxTimeout(ExecboxError, TimeoutError):
    """Waiting for a result took longer than the caller allowed."""
