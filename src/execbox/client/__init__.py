"""The SDK: async written once in ``_async``; ``scripts/unasync`` generates ``_sync``."""

from ._async.client import AsyncClient, AsyncJob
from ._sync.client import Client, Job

__all__ = ["AsyncClient", "AsyncJob", "Client", "Job"]
