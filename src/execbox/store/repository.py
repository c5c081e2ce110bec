"""The only module that writes SQL: every record the server keeps goes through a ``Store``.

Writes are short transactions, each committed before the caller goes on (the engine awaits
them through the server's journal). SQLite runs in the event loop's own thread: a commit in WAL
mode takes ~0.1 ms, less than the hop to a driver thread costs (aiosqlite: ~1.5 ms a
transaction), and a transaction that never awaits cannot interleave with another. Other
processes (the CLI) are waited for through ``busy_timeout``. PostgreSQL goes through asyncpg.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Executable, Row, create_engine, event, func, insert, select, update
from sqlalchemy.engine import Connection, CursorResult, Engine
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ..errors import ExecboxError
from ..models import ExecutionResult, JobResult
from ..models.wire import to_json
from ..paths import state_dir
from .accounts import KeyInfo, NewKey, Principal, TenantLimits, parse_key
from .tables import api_keys, executions, jobs, sessions, status_changes, tenants

__all__ = ["ACTIVE", "Store", "default_database_url"]

ACTIVE = ("queued", "running")
"""Statuses of jobs and executions that a restart leaves without an owner."""
MIGRATIONS = Path(__file__).parent / "migrations"


def default_database_url() -> str:
    return f"sqlite+aiosqlite:///{state_dir() / 'execbox.db'}"


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    """SQLite hands times back without their zone; every time we store is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def _record(row: Row[Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    data = dict(row._mapping)
    for key, value in data.items():
        if isinstance(value, datetime):
            data[key] = _aware(value)
    return data


def _upgrade(connection: Connection) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


class Store:
    def __init__(self, url: str | None = None) -> None:
        self.url = url or default_database_url()
        self.is_sqlite = self.url.startswith("sqlite")
        self._sync: Engine | None = None
        self._async: AsyncEngine | None = None

    async def __aenter__(self) -> Store:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def open(self) -> None:
        """Connect and bring the schema up to date (Alembic migrations)."""
        try:
            if self.is_sqlite:
                self._sync = self._open_sqlite()
            else:
                self._async = await self._open_async()
        except (ImportError, ValueError) as exc:  # an unknown dialect or a missing driver
            raise ExecboxError(f"cannot use the database {self._safe_url()}: {exc}") from None
        except Exception as exc:
            await self.aclose()
            raise ExecboxError(f"cannot open the database {self._safe_url()}: {exc}") from exc

    def _open_sqlite(self) -> Engine:
        # Any driver suffix (sqlite+aiosqlite://) is dropped: SQLite runs in this thread.
        path = self.url.partition(":///")[2]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            # Records hold code and outputs: readable by the service alone.
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        engine = create_engine(
            f"sqlite:///{path}", connect_args={"check_same_thread": False, "timeout": 5}
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        self._sync = engine
        with engine.begin() as connection:
            _upgrade(connection)
        return engine

    async def _open_async(self) -> AsyncEngine:
        engine = create_async_engine(self.url, pool_size=10, max_overflow=20, pool_pre_ping=True)
        self._async = engine
        async with engine.begin() as connection:
            await connection.run_sync(_upgrade)
        return engine

    def _safe_url(self) -> str:
        """The URL without its password, for messages and logs."""
        from sqlalchemy.engine import make_url

        try:
            return make_url(self.url).render_as_string(hide_password=True)
        except Exception:
            return "(unparseable URL)"

    async def aclose(self) -> None:
        sync, self._sync = self._sync, None
        if sync is not None:
            sync.dispose()
        engine, self._async = self._async, None
        if engine is not None:
            await engine.dispose()

    @contextlib.asynccontextmanager
    async def _write(self) -> AsyncIterator[_Connection]:
        """One transaction, committed on exit."""
        if self._sync is not None:
            with self._sync.begin() as connection:
                yield _InLoop(connection)
        elif self._async is not None:
            async with self._async.begin() as connection:
                yield connection
        else:
            raise ExecboxError("the store is not open")

    _read = _write

    @staticmethod
    async def _changed(
        connection: _Connection, object_id: str, status: str, at: datetime, reason: str | None
    ) -> None:
        await connection.execute(
            insert(status_changes).values(object_id=object_id, status=status, reason=reason, at=at)
        )

    # -- tenants and keys ---------------------------------------------------------------------

    async def create_key(
        self,
        tenant: str,
        *,
        name: str = "",
        admin: bool = False,
        max_sessions: int = 16,
        max_jobs: int = 16,
        limits: TenantLimits | None = None,
    ) -> NewKey:
        """A new key for ``tenant``, created with ``limits`` if it is new (else updated to them)."""
        key = NewKey.generate()
        async with self._write() as connection:
            row = (
                await connection.execute(select(tenants.c.id).where(tenants.c.name == tenant))
            ).first()
            if row is None:
                tenant_id = f"ten_{secrets.token_hex(8)}"
                values = asdict(limits or TenantLimits())
                await connection.execute(
                    insert(tenants).values(id=tenant_id, name=tenant, created_at=_now(), **values)
                )
            else:
                tenant_id = row.id
                if limits is not None:
                    await connection.execute(
                        update(tenants).where(tenants.c.id == tenant_id).values(**asdict(limits))
                    )
            await connection.execute(
                insert(api_keys).values(
                    id=key.id,
                    tenant_id=tenant_id,
                    name=name,
                    secret_sha256=key.secret_sha256,
                    admin=admin,
                    max_sessions=max_sessions,
                    max_jobs=max_jobs,
                    created_at=_now(),
                )
            )
        return key

    async def local_principal(self) -> Principal:
        """The caller of a ``--no-auth`` server: tenant ``local``, created on first use."""
        async with self._write() as connection:
            row = (
                await connection.execute(select(tenants).where(tenants.c.name == "local"))
            ).first()
            if row is None:
                tenant_id = f"ten_{secrets.token_hex(8)}"
                await connection.execute(
                    insert(tenants).values(
                        id=tenant_id, name="local", created_at=_now(), **asdict(TenantLimits())
                    )
                )
            else:
                tenant_id = row.id
        return Principal(
            key_id="local",
            tenant_id=tenant_id,
            tenant_name="local",
            limits=TenantLimits(allow_network=True),
            admin=True,
            max_sessions=1000,
            max_jobs=1000,
        )

    async def list_keys(self) -> list[KeyInfo]:
        query = (
            select(api_keys, tenants.c.name.label("tenant"))
            .join(tenants, tenants.c.id == api_keys.c.tenant_id)
            .order_by(api_keys.c.created_at)
        )
        async with self._read() as connection:
            rows = (await connection.execute(query)).all()
        return [
            KeyInfo(
                id=row.id,
                tenant=row.tenant,
                name=row.name,
                admin=row.admin,
                max_sessions=row.max_sessions,
                max_jobs=row.max_jobs,
                created_at=_aware(row.created_at) or _now(),
                revoked_at=_aware(row.revoked_at),
            )
            for row in rows
        ]

    async def revoke_key(self, key_id: str) -> bool:
        async with self._write() as connection:
            done = await connection.execute(
                update(api_keys)
                .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=_now())
            )
        return bool(done.rowcount)

    async def principal(self, token: str) -> Principal | None:
        """The caller a key belongs to, or None for a malformed, unknown or revoked key."""
        parsed = parse_key(token)
        if parsed is None:
            return None
        limit_columns = [tenants.c[name] for name in TenantLimits.__slots__]
        query = (
            select(api_keys, tenants.c.name.label("tenant_name"), *limit_columns)
            .join(tenants, tenants.c.id == api_keys.c.tenant_id)
            .where(api_keys.c.id == parsed.key_id)
        )
        async with self._read() as connection:
            row = (await connection.execute(query)).first()
        if row is None or row.revoked_at is not None or not parsed.matches(row.secret_sha256):
            return None
        limits = TenantLimits(**{name: getattr(row, name) for name in TenantLimits.__slots__})
        return Principal(
            key_id=row.id,
            tenant_id=row.tenant_id,
            tenant_name=row.tenant_name,
            limits=limits,
            admin=row.admin,
            max_sessions=row.max_sessions,
            max_jobs=row.max_jobs,
        )

    # -- jobs ---------------------------------------------------------------------------------

    async def insert_job(
        self, job_id: str, principal: Principal, spec: Mapping[str, Any], created_at: datetime
    ) -> None:
        async with self._write() as connection:
            await connection.execute(
                insert(jobs).values(
                    id=job_id,
                    tenant_id=principal.tenant_id,
                    key_id=principal.key_id,
                    status="queued",
                    spec=dict(spec),
                    created_at=created_at,
                )
            )
            await self._changed(connection, job_id, "queued", created_at, None)

    async def job_running(self, job_id: str, started_at: datetime) -> None:
        async with self._write() as connection:
            await connection.execute(
                update(jobs)
                .where(jobs.c.id == job_id)
                .values(status="running", started_at=started_at)
            )
            await self._changed(connection, job_id, "running", started_at, None)

    async def job_finished(self, result: JobResult) -> None:
        finished = result.finished_at or _now()
        async with self._write() as connection:
            await connection.execute(
                update(jobs)
                .where(jobs.c.id == result.id)
                .values(
                    status=result.status.value,
                    started_at=result.started_at,
                    finished_at=finished,
                    exit_code=result.exit_code,
                    reason=result.reason,
                    message=result.message,
                    stdout=result.stdout_bytes,
                    stderr=result.stderr_bytes,
                    stdout_truncated=result.stdout_truncated,
                    stderr_truncated=result.stderr_truncated,
                    wall_seconds=result.usage.wall_seconds,
                    cpu_seconds=result.usage.cpu_seconds,
                    peak_memory_bytes=result.usage.peak_memory_bytes,
                )
            )
            await self._changed(connection, result.id, result.status.value, finished, result.reason)

    async def get_job(self, tenant_id: str, job_id: str) -> dict[str, Any] | None:
        query = select(jobs).where(jobs.c.id == job_id, jobs.c.tenant_id == tenant_id)
        async with self._read() as connection:
            return _record((await connection.execute(query)).first())

    async def list_jobs(
        self,
        tenant_id: str,
        *,
        status: Sequence[str] = (),
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        columns = [c for c in jobs.c if c.name not in ("stdout", "stderr")]
        query = select(*columns).where(jobs.c.tenant_id == tenant_id)
        if status:
            query = query.where(jobs.c.status.in_(status))
        # SQLite keeps times as UTC text without their offset: compare in UTC everywhere.
        if since is not None:
            query = query.where(jobs.c.created_at >= _utc(since))
        if until is not None:
            query = query.where(jobs.c.created_at < _utc(until))
        query = query.order_by(jobs.c.created_at.desc()).limit(limit)
        async with self._read() as connection:
            rows = (await connection.execute(query)).all()
        return [r for r in map(_record, rows) if r is not None]

    # -- sessions -----------------------------------------------------------------------------

    async def insert_session(
        self,
        session_id: str,
        principal: Principal,
        spec: Mapping[str, Any],
        created_at: datetime,
        client_token: str | None = None,
    ) -> None:
        async with self._write() as connection:
            await connection.execute(
                insert(sessions).values(
                    id=session_id,
                    tenant_id=principal.tenant_id,
                    key_id=principal.key_id,
                    client_token=client_token,
                    status="open",
                    spec=dict(spec),
                    created_at=created_at,
                )
            )
            await self._changed(connection, session_id, "open", created_at, None)

    async def close_session(self, session_id: str, reason: str) -> None:
        at = _now()
        async with self._write() as connection:
            done = await connection.execute(
                update(sessions)
                .where(sessions.c.id == session_id, sessions.c.status != "closed")
                .values(status="closed", reason=reason, closed_at=at)
            )
            if done.rowcount:
                await self._changed(connection, session_id, "closed", at, reason)

    async def get_session(self, tenant_id: str, session_id: str) -> dict[str, Any] | None:
        query = select(sessions).where(
            sessions.c.id == session_id, sessions.c.tenant_id == tenant_id
        )
        async with self._read() as connection:
            return _record((await connection.execute(query)).first())

    async def open_session_by_token(self, tenant_id: str, token: str) -> dict[str, Any] | None:
        query = (
            select(sessions)
            .where(
                sessions.c.tenant_id == tenant_id,
                sessions.c.client_token == token,
                sessions.c.status != "closed",
            )
            .order_by(sessions.c.created_at.desc())
        )
        async with self._read() as connection:
            return _record((await connection.execute(query)).first())

    async def list_sessions(
        self, tenant_id: str, *, status: Sequence[str] = (), limit: int = 100
    ) -> list[dict[str, Any]]:
        query = select(sessions).where(sessions.c.tenant_id == tenant_id)
        if status:
            query = query.where(sessions.c.status.in_(status))
        query = query.order_by(sessions.c.created_at.desc()).limit(limit)
        async with self._read() as connection:
            rows = (await connection.execute(query)).all()
        return [r for r in map(_record, rows) if r is not None]

    # -- executions ---------------------------------------------------------------------------

    async def insert_execution(
        self,
        execution_id: str,
        session_id: str,
        principal: Principal,
        code: str,
        created_at: datetime,
    ) -> None:
        async with self._write() as connection:
            await connection.execute(
                insert(executions).values(
                    id=execution_id,
                    session_id=session_id,
                    tenant_id=principal.tenant_id,
                    status="queued",
                    code=code,
                    created_at=created_at,
                )
            )
            await self._changed(connection, execution_id, "queued", created_at, None)

    async def execution_running(self, execution_id: str, started_at: datetime) -> None:
        async with self._write() as connection:
            await connection.execute(
                update(executions)
                .where(executions.c.id == execution_id)
                .values(status="running", started_at=started_at)
            )
            await self._changed(connection, execution_id, "running", started_at, None)

    async def execution_finished(self, result: ExecutionResult) -> None:
        finished = result.finished_at or _now()
        async with self._write() as connection:
            await connection.execute(
                update(executions)
                .where(executions.c.id == result.id)
                .values(
                    status=result.status.value,
                    started_at=result.started_at,
                    finished_at=finished,
                    execution_count=result.execution_count,
                    result=to_json(result),
                    truncated=result.truncated,
                    wall_seconds=result.usage.wall_seconds,
                    cpu_seconds=result.usage.cpu_seconds,
                    peak_memory_bytes=result.usage.peak_memory_bytes,
                )
            )
            reason = result.status.value if not result.ok else None
            await self._changed(connection, result.id, result.status.value, finished, reason)

    async def execution_refused(self, execution_id: str, message: str) -> None:
        """An execution recorded but never queued (its session closed in between)."""
        at = _now()
        result = {"id": execution_id, "status": "cancelled", "message": message}
        async with self._write() as connection:
            await connection.execute(
                update(executions)
                .where(executions.c.id == execution_id)
                .values(status="cancelled", reason="refused", finished_at=at, result=result)
            )
            await self._changed(connection, execution_id, "cancelled", at, "refused")

    async def get_execution(
        self, tenant_id: str, session_id: str, execution_id: str
    ) -> dict[str, Any] | None:
        query = select(executions).where(
            executions.c.id == execution_id,
            executions.c.session_id == session_id,
            executions.c.tenant_id == tenant_id,
        )
        async with self._read() as connection:
            return _record((await connection.execute(query)).first())

    async def list_executions(
        self, tenant_id: str, session_id: str, *, limit: int = 100
    ) -> list[dict[str, Any]]:
        columns = [c for c in executions.c if c.name != "result"]
        query = (
            select(*columns)
            .where(executions.c.session_id == session_id, executions.c.tenant_id == tenant_id)
            .order_by(executions.c.created_at.desc())
            .limit(limit)
        )
        async with self._read() as connection:
            rows = (await connection.execute(query)).all()
        return [r for r in map(_record, rows) if r is not None]

    async def status_history(self, object_id: str) -> list[dict[str, Any]]:
        query = (
            select(status_changes.c.status, status_changes.c.reason, status_changes.c.at)
            .where(status_changes.c.object_id == object_id)
            .order_by(status_changes.c.id)
        )
        async with self._read() as connection:
            rows = (await connection.execute(query)).all()
        return [r for r in map(_record, rows) if r is not None]

    # -- start-up -----------------------------------------------------------------------------

    async def reconcile(self, reason: str = "server_restart") -> dict[str, int]:
        """End what a previous server process left running: its boxes died with it."""
        at = _now()
        message = "the server restarted while this ran; its box was destroyed"
        counts: dict[str, int] = {}
        async with self._write() as connection:
            for name, table, status in (
                ("jobs", jobs, "error"),
                ("executions", executions, "error"),
                ("sessions", sessions, "closed"),
            ):
                active = ACTIVE if table is not sessions else ("open",)
                ids = (
                    (await connection.execute(select(table.c.id).where(table.c.status.in_(active))))
                    .scalars()
                    .all()
                )
                counts[name] = len(ids)
                if not ids:
                    continue
                values: dict[str, Any] = {"status": status, "reason": reason}
                if table is sessions:
                    values["closed_at"] = at
                else:
                    values["finished_at"] = at
                if table is jobs:
                    values["message"] = message
                await connection.execute(update(table).where(table.c.id.in_(ids)).values(**values))
                await connection.execute(
                    insert(status_changes),
                    [{"object_id": i, "status": status, "reason": reason, "at": at} for i in ids],
                )
        return counts

    async def count(self, table_name: str, **where: Any) -> int:
        """Rows of a table matching equalities; for tests and metrics."""
        table = {"jobs": jobs, "sessions": sessions, "executions": executions}[table_name]
        query = select(func.count()).select_from(table)
        for column, value in where.items():
            query = query.where(table.c[column] == value)
        async with self._read() as connection:
            return int((await connection.execute(query)).scalar_one())


class _Connection(Protocol):
    async def execute(
        self, statement: Executable, parameters: Any = None, /
    ) -> CursorResult[Any]: ...


class _InLoop:
    """A sync connection behind the async interface the repository is written against."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    async def execute(self, statement: Executable, parameters: Any = None, /) -> CursorResult[Any]:
        return self._connection.execute(statement, parameters)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()
