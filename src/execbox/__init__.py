"""execbox: run untrusted Python in isolated boxes and get back everything it produced.

    import execbox

    with execbox.Client() as client:
        result = client.run({"main.py": "print('hello')"}, limits=execbox.Limits(memory="128M"))
        print(result.status, result.stdout)

        with client.session() as session:
            session.execute("x = 6 * 7")
            print(session.execute("x").text)

This module imports only the SDK surface: no server, no kernel machinery.
"""

from .boxes.base import Mount
from .client import (
    AsyncClient,
    AsyncExecution,
    AsyncJob,
    AsyncSession,
    Client,
    Execution,
    Job,
    Session,
)
from .errors import (
    AuthenticationError,
    BoxError,
    CellError,
    ExecboxError,
    ExecboxTimeout,
    InvalidFiles,
    InvalidLimits,
    InvalidSpec,
    InvalidState,
    IsolationUnavailable,
    JobNotFound,
    KernelError,
    NoEntrypoint,
    PathNotFound,
    PayloadTooLarge,
    PermissionDenied,
    QuotaExceeded,
    RequirementsError,
    ServerUnavailable,
    SessionClosed,
    SessionNotFound,
)
from .models import (
    ClearOutputEvent,
    DirEntry,
    DisplayEvent,
    EndEvent,
    ErrorEvent,
    ExecutionError,
    ExecutionEvent,
    ExecutionResult,
    ExecutionStatus,
    InputRequestEvent,
    JobEvent,
    JobResult,
    JobStatus,
    Limits,
    Output,
    OutputEvent,
    ResultEvent,
    SessionInfo,
    SessionStatus,
    StatusEvent,
    StreamEvent,
    Usage,
)

__version__ = "0.1.0"

__all__ = [
    "AsyncClient",
    "AsyncExecution",
    "AsyncJob",
    "AsyncSession",
    "AuthenticationError",
    "BoxError",
    "CellError",
    "ClearOutputEvent",
    "Client",
    "DirEntry",
    "DisplayEvent",
    "EndEvent",
    "ErrorEvent",
    "ExecboxError",
    "ExecboxTimeout",
    "Execution",
    "ExecutionError",
    "ExecutionEvent",
    "ExecutionResult",
    "ExecutionStatus",
    "InputRequestEvent",
    "InvalidFiles",
    "InvalidLimits",
    "InvalidSpec",
    "InvalidState",
    "IsolationUnavailable",
    "Job",
    "JobEvent",
    "JobNotFound",
    "JobResult",
    "JobStatus",
    "KernelError",
    "Limits",
    "Mount",
    "NoEntrypoint",
    "Output",
    "OutputEvent",
    "PathNotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "QuotaExceeded",
    "RequirementsError",
    "ResultEvent",
    "ServerUnavailable",
    "Session",
    "SessionClosed",
    "SessionInfo",
    "SessionNotFound",
    "SessionStatus",
    "StatusEvent",
    "StreamEvent",
    "Usage",
]
