"""Wire models shared by the SDK, the engine and the server.

Plain frozen dataclasses: importing them costs nothing and they serialise with ``to_dict``.
Validation happens on construction, so an invalid object never exists.
"""

from .files import DirEntry
from .jobs import TERMINAL_STATUSES, JobEvent, JobResult, JobStatus, OutputEvent, StatusEvent
from .limits import Limits, Usage, validate_timeout
from .sessions import (
    ClearOutputEvent,
    DisplayEvent,
    EndEvent,
    ErrorEvent,
    ExecutionError,
    ExecutionEvent,
    ExecutionResult,
    ExecutionStatus,
    InputRequestEvent,
    Output,
    ResultEvent,
    SessionInfo,
    SessionStatus,
    StreamEvent,
)

__all__ = [
    "TERMINAL_STATUSES",
    "ClearOutputEvent",
    "DirEntry",
    "DisplayEvent",
    "EndEvent",
    "ErrorEvent",
    "ExecutionError",
    "ExecutionEvent",
    "ExecutionResult",
    "ExecutionStatus",
    "InputRequestEvent",
    "JobEvent",
    "JobResult",
    "JobStatus",
    "Limits",
    "Output",
    "OutputEvent",
    "ResultEvent",
    "SessionInfo",
    "SessionStatus",
    "StatusEvent",
    "StreamEvent",
    "Usage",
    "validate_timeout",
]
