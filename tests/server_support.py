"""Real servers for the server tests: a throwaway PostgreSQL cluster, and `execbox serve` run
as a subprocess on 127.0.0.1 (so it can be killed with SIGKILL and started again)."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
from fastapi.testclient import TestClient
from sqlalchemy import select

from execbox.store import Store
from execbox.store.accounts import TenantLimits
from execbox.store.tables import metadata

VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout} s (last: {last!r})")


class PostgresServer:
    """initdb + pg_ctl from Debian's packages, trust auth on 127.0.0.1 only, in a temp dir.

    As root, the cluster runs as the ``postgres`` user (PostgreSQL refuses root)."""

    def __init__(self) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not found:
            raise RuntimeError(
                "PostgreSQL is not installed: run scripts/install --dev (apt-get install postgresql)"
            )
        self.bin = Path(found[-1]).parent
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="execbox-pg-"))
        self.data = self.root / "data"
        self.user: str | None = None
        if os.geteuid() == 0:
            self.user = "postgres"
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self.root.chmod(0o755)

    def _run(self, *argv: str) -> None:
        prefix = ["setpriv", f"--reuid={self.user}", f"--regid={self.user}", "--init-groups"]
        command = [*prefix, *argv] if self.user else list(argv)
        subprocess.run(command, check=True, capture_output=True, cwd=self.root)

    def start(self) -> None:
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres")
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-w", "-l",
            str(self.root / "log"), "start",
        )  # fmt: skip

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def new_database(self) -> str:
        """A fresh, empty database; its SQLAlchemy URL."""
        name = f"t_{uuid.uuid4().hex[:12]}"

        async def create() -> None:
            import asyncpg

            connection = await asyncpg.connect(
                host="127.0.0.1", port=self.port, user="postgres", database="postgres"
            )
            try:
                await connection.execute(f'CREATE DATABASE "{name}"')
            finally:
                await connection.close()

        anyio.run(create)
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{name}"


@dataclass
class Keys:
    a: str
    b: str
    admin: str
    revoked: str
    a_key_id: str


def make_keys(url: str, *, max_sessions: int = 16, max_jobs: int = 16) -> Keys:
    """Two tenants (a and b), an admin, and a key of tenant a that is already revoked."""

    async def create() -> Keys:
        async with Store(url) as store:
            a = await store.create_key("tenant-a", max_sessions=max_sessions, max_jobs=max_jobs)
            b = await store.create_key("tenant-b", max_sessions=max_sessions, max_jobs=max_jobs)
            admin = await store.create_key("ops", admin=True)
            revoked = await store.create_key("tenant-a")
            await store.revoke_key(revoked.id)
            return Keys(a.token, b.token, admin.token, revoked.token, a.id)

    return anyio.run(create)


def open_key(url: str) -> str:
    """A key whose tenant may ask for everything the SDK tests ask for, network included."""

    async def create() -> str:
        async with Store(url) as store:
            limits = TenantLimits(allow_network=True)
            key = await store.create_key("sdk", max_sessions=64, max_jobs=64, limits=limits)
            return key.token

    return anyio.run(create)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


class ServerProcess:
    """`execbox serve` in a subprocess; its JSON log lines go to ``log_path``."""

    def __init__(self, url: str, *extra: str, port: int | None = None) -> None:
        self.url = url
        self.extra = extra
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(tempfile.mkstemp(prefix="execbox-serve-", suffix=".log")[1])
        self.process: subprocess.Popen[bytes] | None = None
        self.key = ""

    def start(self, timeout: float = 60.0) -> ServerProcess:
        argv = [
            str(VENV_BIN / "execbox"), "serve", "--db", self.url, "--port", str(self.port),
            *self.extra,
        ]  # fmt: skip
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True)

        def healthy() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited: {self.log_path.read_text()[-3000:]}")
            try:
                return httpx.get(f"{self.base}/healthz", timeout=1).json()["status"] == "ok"
            except (httpx.HTTPError, ValueError):
                return False

        wait_until(healthy, timeout, "execbox serve coming up")
        return self

    def kill(self) -> None:
        """SIGKILL, as a crash would: no shutdown code runs."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM: the graceful shutdown."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@contextlib.contextmanager
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def capture(client: TestClient) -> list[bytes]:
    """Every response body the client receives from now on."""
    seen: list[bytes] = []

    def hook(response: httpx.Response) -> None:
        response.read()
        seen.append(response.content)

    client.event_hooks["response"].append(hook)
    return seen


def db_rows(url: str) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table, read with the server's own Store."""

    async def read() -> dict[str, list[dict[str, Any]]]:
        async with Store(url) as store, store._read() as connection:
            return {
                table.name: [
                    dict(row._mapping) for row in (await connection.execute(select(table))).all()
                ]
                for table in metadata.sorted_tables
            }

    return anyio.run(read)


def as_text(value: Any) -> str:
    """Rows as searchable text: bytes decoded, JSON columns dumped."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{as_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(as_text(v) for v in value) + "]"
    return str(value)
