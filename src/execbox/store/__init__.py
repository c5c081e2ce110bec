"""Durable records of tenants, keys, jobs, sessions and executions (SQLite or PostgreSQL)."""

from .repository import Store, default_database_url

__all__ = ["Store", "default_database_url"]
