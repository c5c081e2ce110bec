"""The schema, in SQLAlchemy Core. Changes go through a new Alembic revision, never edits here
alone."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

__all__ = ["api_keys", "executions", "jobs", "metadata", "sessions", "status_changes", "tenants"]

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ID = String(40)
WHEN = DateTime(timezone=True)

tenants = Table(
    "tenants",
    metadata,
    Column("id", ID, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("created_at", WHEN, nullable=False),
    # The most a client of this tenant may ask for; asks beyond are clamped.
    Column("max_memory", BigInteger, nullable=False),
    Column("max_cpus", Float, nullable=False),
    Column("max_pids", Integer, nullable=False),
    Column("max_disk", BigInteger, nullable=False),
    Column("max_output", BigInteger, nullable=False),
    Column("max_timeout", Float, nullable=False),
    Column("max_ttl", Float, nullable=False),
    Column("allow_network", Boolean, nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", ID, primary_key=True),
    Column("tenant_id", ID, ForeignKey("tenants.id"), nullable=False, index=True),
    Column("name", String(200), nullable=False),
    Column("secret_sha256", String(64), nullable=False),
    Column("admin", Boolean, nullable=False),
    Column("max_sessions", Integer, nullable=False),
    Column("max_jobs", Integer, nullable=False),
    Column("created_at", WHEN, nullable=False),
    Column("revoked_at", WHEN),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", ID, primary_key=True),
    Column("tenant_id", ID, ForeignKey("tenants.id"), nullable=False),
    Column("key_id", ID, nullable=False),
    Column("status", String(20), nullable=False),
    Column("spec", JSON, nullable=False),
    Column("created_at", WHEN, nullable=False),
    Column("started_at", WHEN),
    Column("finished_at", WHEN),
    Column("exit_code", Integer),
    Column("reason", String(100)),
    Column("message", Text),
    Column("stdout", LargeBinary),
    Column("stderr", LargeBinary),
    Column("stdout_truncated", Boolean, nullable=False, default=False),
    Column("stderr_truncated", Boolean, nullable=False, default=False),
    Column("wall_seconds", Float),
    Column("cpu_seconds", Float),
    Column("peak_memory_bytes", BigInteger),
    Index(None, "tenant_id", "created_at"),
    Index(None, "status"),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id", ID, primary_key=True),
    Column("tenant_id", ID, ForeignKey("tenants.id"), nullable=False),
    Column("key_id", ID, nullable=False),
    Column("client_token", String(200)),
    Column("status", String(20), nullable=False),
    Column("reason", String(100)),
    Column("spec", JSON, nullable=False),
    Column("created_at", WHEN, nullable=False),
    Column("closed_at", WHEN),
    Index(None, "tenant_id", "client_token"),
    Index(None, "tenant_id", "created_at"),
    Index(None, "status"),
)

executions = Table(
    "executions",
    metadata,
    Column("id", ID, primary_key=True),
    Column("session_id", ID, ForeignKey("sessions.id"), nullable=False),
    Column("tenant_id", ID, ForeignKey("tenants.id"), nullable=False),
    Column("status", String(20), nullable=False),
    Column("code", Text, nullable=False),
    Column("created_at", WHEN, nullable=False),
    Column("started_at", WHEN),
    Column("finished_at", WHEN),
    Column("execution_count", Integer),
    Column("reason", String(100)),
    Column("result", JSON),
    Column("truncated", Boolean, nullable=False, default=False),
    Column("wall_seconds", Float),
    Column("cpu_seconds", Float),
    Column("peak_memory_bytes", BigInteger),
    Index(None, "session_id", "created_at"),
    Index(None, "status"),
)

status_changes = Table(
    "status_changes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("object_id", ID, nullable=False, index=True),
    Column("status", String(20), nullable=False),
    Column("reason", String(100)),
    Column("at", WHEN, nullable=False),
)
