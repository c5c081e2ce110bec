"""Orchestration: jobs (and later sessions) on a backend, with warm pools. No HTTP here."""

from .engine import Engine

__all__ = ["Engine"]
