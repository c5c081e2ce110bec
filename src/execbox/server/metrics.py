"""Prometheus metrics, in a registry of the app's own (two apps in one process never clash)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from ..engine import Engine
from ..models import ExecutionResult, JobResult
from .quotas import Quotas

__all__ = ["Metrics"]

_DURATIONS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)


class Metrics:
    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.jobs = Counter(
            "execbox_jobs", "Jobs finished, by status", ["status"], registry=registry
        )
        self.executions = Counter(
            "execbox_executions", "Executions finished, by status", ["status"], registry=registry
        )
        self.sessions_closed = Counter(
            "execbox_sessions_closed", "Sessions closed, by reason", ["reason"], registry=registry
        )
        self.job_seconds = Histogram(
            "execbox_job_duration_seconds", "Wall time of jobs", buckets=_DURATIONS,
            registry=registry,
        )  # fmt: skip
        self.execution_seconds = Histogram(
            "execbox_execution_duration_seconds", "Wall time of executions", buckets=_DURATIONS,
            registry=registry,
        )  # fmt: skip
        self.requests = Counter(
            "execbox_http_requests", "Requests answered, by method and status class",
            ["method", "status"], registry=registry,
        )  # fmt: skip
        self.live_boxes = Gauge("execbox_live_boxes", "Boxes alive now", registry=registry)
        self.pool_ready = Gauge(
            "execbox_pool_ready_boxes", "Warm boxes waiting, by pool", ["pool"], registry=registry
        )
        self.live = Gauge(
            "execbox_live_objects", "Live sessions and jobs", ["kind"], registry=registry
        )

    def job_finished(self, result: JobResult) -> None:
        self.jobs.labels(result.status.value).inc()
        self.job_seconds.observe(result.usage.wall_seconds)

    def execution_finished(self, result: ExecutionResult) -> None:
        self.executions.labels(result.status.value).inc()
        self.execution_seconds.observe(result.usage.wall_seconds)

    def render(self, engine: Engine, quotas: Quotas) -> bytes:
        """The exposition text, with the gauges read now."""
        self.live_boxes.set(engine.backend.live_boxes())
        for pool, ready in engine.pool_sizes().items():
            self.pool_ready.labels(pool).set(ready)
        for kind in ("session", "job"):
            self.live.labels(kind).set(quotas.live(kind))
        return generate_latest(self.registry)
