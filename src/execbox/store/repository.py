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

from sqlalchemy import (
    Executable,
    Row,
    Select,
    Table,
    create_engine,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection, CursorResult, Engine
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ..errors import ExecboxError
from ..models import ExecutionResult, JobResult, Usage
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
                self._open_sqlite()
            else:
                await self._open_async()
        except (ImportError, ValueError) as exc:  # an unknown dialect or a missing driver
            raise ExecboxError(f"cannot use the database {self._safe_url()}: {exc}") from None
        except Exception as exc:
            await self.aclose()
            raise ExecboxError(f"cannot open the database {self._safe_url()}: {exc}") from exc

    def _open_sqlite(self) -> None:
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

    async def _open_async(self) -> None:
        engine = create_async_engine(self.url, pool_size=10, max_overflow=20, pool_pre_ping=True)
        self._async = engine
        async with engine.begin() as connection:
            await connection.run_sync(_upgrade)

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
            tenant_id = await self._tenant(connection, tenant, limits)
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

    @staticmethod
    async def _tenant(connection: _Connection, name: str, limits: TenantLimits | None) -> str:
        """The id of tenant ``name``, created if new; ``limits``, if given, become its maxima."""
        row = (await connection.execute(select(tenants.c.id).where(tenants.c.name == name))).first()
        if row is None:
            tenant_id = f"ten_{secrets.token_hex(8)}"
            values = asdict(limits or TenantLimits())
            await connection.execute(
                insert(tenants).values(id=tenant_id, name=name, created_at=_now(), **values)
            )
            return tenant_id
        if limits is not None:
            await connection.execute(
                update(tenants).where(tenants.c.id == row.id).values(**asdict(limits))
            )
        return str(row.id)

    async def local_principal(self) -> Principal:
        """The caller of a ``--no-auth`` server: tenant ``local``, created on first use."""
        async with self._write() as connection:
            tenant_id = await self._tenant(connection, "local", None)
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

    # -- records: each write changes a status and appends it, with its time, to the history --

    async def _create(
        self, table: Table, object_id: str, status: str, at: datetime, **values: Any
    ) -> None:
        async with self._write() as connection:
            await connection.execute(insert(table).values(id=object_id, status=status, **values))
            await self._changed(connection, object_id, status, at, None)

    async def _move(
        self,
        table: Table,
        object_id: str,
        status: str,
        at: datetime,
        *,
        why: str | None = None,
        unless: str | None = None,
        **values: Any,
    ) -> None:
        """Set ``status`` (unless the record is in status ``unless``) and log the change, with
        ``why`` as its reason."""
        change = update(table).where(table.c.id == object_id)
        if unless is not None:
            change = change.where(table.c.status != unless)
        async with self._write() as connection:
            done = await connection.execute(change.values(status=status, **values))
            if done.rowcount:
                await self._changed(connection, object_id, status, at, why)

    async def _one(self, query: Select[Any]) -> dict[str, Any] | None:
        async with self._read() as connection:
            return _record((await connection.execute(query)).first())

    async def _all(self, query: Select[Any]) -> list[dict[str, Any]]:
        async with self._read() as connection:
            rows = (await connection.execute(query)).all()
        return [record for record in map(_record, rows) if record is not None]

    # -- jobs ---------------------------------------------------------------------------------

    async def insert_job(
        self, job_id: str, principal: Principal, spec: Mapping[str, Any], created_at: datetime
    ) -> None:
        await self._create(
            jobs, job_id, "queued", created_at, tenant_id=principal.tenant_id,
            key_id=principal.key_id, spec=dict(spec), created_at=created_at,
        )  # fmt: skip

    async def job_running(self, job_id: str, started_at: datetime) -> None:
        await self._move(jobs, job_id, "running", started_at, started_at=started_at)

    async def job_finished(self, result: JobResult) -> None:
        finished = result.finished_at or _now()
        await self._move(
            jobs,
            result.id,
            result.status.value,
            finished,
            why=result.reason,
            started_at=result.started_at,
            finished_at=finished,
            exit_code=result.exit_code,
            reason=result.reason,
            message=result.message,
            stdout=result.stdout_bytes,
            stderr=result.stderr_bytes,
            stdout_truncated=result.stdout_truncated,
            stderr_truncated=result.stderr_truncated,
            **_usage(result.usage),
        )

    async def get_job(self, tenant_id: str, job_id: str) -> dict[str, Any] | None:
        return await self._one(
            select(jobs).where(jobs.c.id == job_id, jobs.c.tenant_id == tenant_id)
        )

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
        return await self._all(query.order_by(jobs.c.created_at.desc()).limit(limit))

    # -- sessions -----------------------------------------------------------------------------

    async def insert_session(
        self,
        session_id: str,
        principal: Principal,
        spec: Mapping[str, Any],
        created_at: datetime,
        client_token: str | None = None,
    ) -> None:
        await self._create(
            sessions, session_id, "open", created_at, tenant_id=principal.tenant_id,
            key_id=principal.key_id, client_token=client_token, spec=dict(spec),
            created_at=created_at,
        )  # fmt: skip

    async def close_session(self, session_id: str, reason: str) -> None:
        at = _now()
        await self._move(
            sessions,
            session_id,
            "closed",
            at,
            why=reason,
            unless="closed",
            reason=reason,
            closed_at=at,
        )

    async def get_session(self, tenant_id: str, session_id: str) -> dict[str, Any] | None:
        return await self._one(
            select(sessions).where(sessions.c.id == session_id, sessions.c.tenant_id == tenant_id)
        )

    async def open_session_by_token(self, tenant_id: str, token: str) -> dict[str, Any] | None:
        return await self._one(
            select(sessions)
            .where(
                sessions.c.tenant_id == tenant_id,
                sessions.c.client_token == token,
                sessions.c.status != "closed",
            )
            .order_by(sessions.c.created_at.desc())
        )

    async def list_sessions(
        self, tenant_id: str, *, status: Sequence[str] = (), limit: int = 100
    ) -> list[dict[str, Any]]:
        query = select(sessions).where(sessions.c.tenant_id == tenant_id)
        if status:
            query = query.where(sessions.c.status.in_(status))
        return await self._all(query.order_by(sessions.c.created_at.desc()).limit(limit))

    # -- executions ---------------------------------------------------------------------------

    async def insert_execution(
        self,
        execution_id: str,
        session_id: str,
        principal: Principal,
        code: str,
        created_at: datetime,
    ) -> None:
        await self._create(
            executions, execution_id, "queued", created_at, session_id=session_id,
            tenant_id=principal.tenant_id, code=code, created_at=created_at,
        )  # fmt: skip

    async def execution_running(self, execution_id: str, started_at: datetime) -> None:
        await self._move(executions, execution_id, "running", started_at, started_at=started_at)

    async def execution_finished(self, result: ExecutionResult) -> None:
        finished = result.finished_at or _now()
        await self._move(
            executions,
            result.id,
            result.status.value,
            finished,
            why=None if result.ok else result.status.value,
            started_at=result.started_at,
            finished_at=finished,
            execution_count=result.execution_count,
            result=to_json(result),
            truncated=result.truncated,
            **_usage(result.usage),
        )

    async def execution_refused(self, execution_id: str, message: str) -> None:
        """An execution recorded but never queued (its session closed in between)."""
        at = _now()
        result = {"id": execution_id, "status": "cancelled", "message": message}
        await self._move(
            executions, execution_id, "cancelled", at, why="refused", reason="refused",
            finished_at=at, result=result,
        )  # fmt: skip

    async def get_execution(
        self, tenant_id: str, session_id: str, execution_id: str
    ) -> dict[str, Any] | None:
        return await self._one(
            select(executions).where(
                executions.c.id == execution_id,
                executions.c.session_id == session_id,
                executions.c.tenant_id == tenant_id,
            )
        )

    async def list_executions(
        self, tenant_id: str, session_id: str, *, limit: int = 100
    ) -> list[dict[str, Any]]:
        columns = [c for c in executions.c if c.name != "result"]
        return await self._all(
            select(*columns)
            .where(executions.c.session_id == session_id, executions.c.tenant_id == tenant_id)
            .order_by(executions.c.created_at.desc())
            .limit(limit)
        )

    async def status_history(self, object_id: str) -> list[dict[str, Any]]:
        return await self._all(
            select(status_changes.c.status, status_changes.c.reason, status_changes.c.at)
            .where(status_changes.c.object_id == object_id)
            .order_by(status_changes.c.id)
        )

    # -- start-up -----------------------------------------------------------------------------

    async def reconcile(self, reason: str = "server_restart") -> dict[str, int]:
        """End what a previous server process left running: its boxes died with it."""
        at = _now()
        message = "the server restarted while this ran; its box was destroyed"
        ends: tuple[tuple[str, Table, tuple[str, ...], str, dict[str, Any]], ...] = (
            ("jobs", jobs, ACTIVE, "error", {"finished_at": at, "message": message}),
            ("executions", executions, ACTIVE, "error", {"finished_at": at}),
            ("sessions", sessions, ("open",), "closed", {"closed_at": at}),
        )
        counts: dict[str, int] = {}
        async with self._write() as connection:
            for name, table, active, status, values in ends:
                found = await connection.execute(
                    select(table.c.id).where(table.c.status.in_(active))
                )
                ids = found.scalars().all()
                counts[name] = len(ids)
                if ids:
                    await connection.execute(
                        update(table)
                        .where(table.c.id.in_(ids))
                        .values(status=status, reason=reason, **values)
                    )
                    await connection.execute(
                        insert(status_changes),
                        [
                            {"object_id": i, "status": status, "reason": reason, "at": at}
                            for i in ids
                        ],
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


def _usage(usage: Usage) -> dict[str, Any]:
    return {
        "wall_seconds": usage.wall_seconds,
        "cpu_seconds": usage.cpu_seconds,
        "peak_memory_bytes": usage.peak_memory_bytes,
    }


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()
