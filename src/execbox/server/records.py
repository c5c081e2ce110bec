"""The engine's journal on a server: each change is committed to the store before the engine
goes on, then counted in the metrics, and a finished object gives back its key's quota."""

from __future__ import annotations

from datetime import datetime

from ..models import ExecutionResult, JobResult
from ..store import Store
from .metrics import Metrics
from .quotas import Quotas

__all__ = ["Records"]


class Records:
    def __init__(self, store: Store, metrics: Metrics, quotas: Quotas) -> None:
        self.store = store
        self.metrics = metrics
        self.quotas = quotas

    async def job_running(self, job_id: str, started_at: datetime) -> None:
        await self.store.job_running(job_id, started_at)

    async def job_finished(self, result: JobResult) -> None:
        try:
            await self.store.job_finished(result)
        finally:
            self.quotas.release(result.id)
            self.metrics.job_finished(result)

    async def execution_running(self, execution_id: str, started_at: datetime) -> None:
        await self.store.execution_running(execution_id, started_at)

    async def execution_finished(self, result: ExecutionResult) -> None:
        await self.store.execution_finished(result)
        self.metrics.execution_finished(result)

    async def session_closed(self, session_id: str, reason: str) -> None:
        try:
            await self.store.close_session(session_id, reason)
        finally:
            self.quotas.release(session_id)
            self.metrics.sessions_closed.labels(reason).inc()
