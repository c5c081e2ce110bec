"""execbox: run untrusted Python in isolated boxes and get back everything it produced.

    import execbox

    with execbox.Client() as client:
        result = client.run({"main.py": "print('hello')"}, limits=execbox.Limits(memory="128M"))
        print(result.status, result.stdout)

This module imports only the SDK surface: no server, no kernel machinery.
"""

from .client import AsyncClient, AsyncJob, Client, Job
from .errors import (
    BoxError,
    ExecboxError,
    ExecboxTimeout,
    InvalidFiles,
    InvalidLimits,
    InvalidSpec,
    IsolationUnavailable,
    JobNotFound,
    NoEntrypoint,
    RequirementsError,
)
from .models import JobEvent, JobResult, JobStatus, Limits, OutputEvent, StatusEvent, Usage

__version__ = "0.1.0"

__all__ = [
    "AsyncClient",
    "AsyncJob",
    "BoxError",
    "Client",
    "ExecboxError",
    "ExecboxTimeout",
    "InvalidFiles",
    "InvalidLimits",
    "InvalidSpec",
    "IsolationUnavailable",
    "Job",
    "JobEvent",
    "JobNotFound",
    "JobResult",
    "JobStatus",
    "Limits",
    "NoEntrypoint",
    "OutputEvent",
    "RequirementsError",
    "StatusEvent",
    "Usage",
]
