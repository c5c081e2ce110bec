"""Orchestration: jobs (and later sessions) on a backend, with warm pools. No HTTP here."""

from .engine import Engine, Retention

__all__ = ["Engine", "Retention"]
