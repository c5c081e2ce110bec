"""What a server is started with; the CLI's ``serve`` options map onto these one to one."""

from __future__ import annotations

from dataclasses import dataclass

from ..engine import Retention

__all__ = ["SERVER_RETENTION", "ServerSettings"]

SERVER_RETENTION = Retention(jobs=64, sessions=32, executions=16)


@dataclass(frozen=True, kw_only=True)
class ServerSettings:
    database_url: str | None = None
    """SQLAlchemy URL; None means a SQLite file in the state directory."""
    backend: str = "local"
    no_auth: bool = False
    """Local development only: every request acts as one built-in tenant."""
    max_body: int = 32 << 20
    """Largest request body (uploads included); larger ones get 413."""
    max_message: int = 4 << 20
    """Largest WebSocket message from a client; larger ones close the socket with 1009."""
    session_idle_timeout: float = 1800.0
    """Applied to sessions that do not ask for one; running code counts as activity."""
    pool_size: int = 2
    session_pool_size: int = 1
    max_concurrent_jobs: int = 16
    kernel_packages: tuple[str, ...] | None = None
    shutdown_grace: float = 5.0
    retention: Retention = SERVER_RETENTION
    """Finished objects kept in memory for live lookups; the database keeps every record."""
