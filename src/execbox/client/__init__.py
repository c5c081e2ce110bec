"""The SDK: async written once in ``_async``; ``scripts/unasync`` generates ``_sync``."""

from ._async.client import AsyncClient, AsyncJob
from ._async.sessions import AsyncExecution, AsyncFiles, AsyncSession
from ._sync.client import Client, Job
from ._sync.sessions import Execution, Files, Session

__all__ = [
    "AsyncClient",
    "AsyncExecution",
    "AsyncFiles",
    "AsyncJob",
    "AsyncSession",
    "Client",
    "Execution",
    "Files",
    "Job",
    "Session",
]
