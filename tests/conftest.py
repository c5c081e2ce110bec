"""Shared fixtures: real boxes on this host, an isolated state directory, planted canaries."""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# Set before any engine exists: the launcher's own environment holds the canary, as a server's
# would hold its secrets. No box may ever show it.
CANARY = f"canary-{secrets.token_hex(12)}"
os.environ["EXECBOX_TEST_CANARY"] = CANARY

_root = Path(tempfile.mkdtemp(prefix="execbox-tests-"))
_root.chmod(0o755)  # box uids read the runtime files under it
os.environ.setdefault("EXECBOX_STATE_DIR", str(_root / "state"))
os.environ.setdefault("EXECBOX_CACHE_DIR", str(_root / "cache"))
# A file only the service may read: its path is known to the tests, never to a box.
SECRET_FILE = _root / "server-secret"
SECRET_FILE.write_text(CANARY)
SECRET_FILE.chmod(0o600)

import execbox  # noqa: E402 - after the environment above is in place
from helpers import Invariants  # noqa: E402


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The run's state and cache go with it (the kernel's environment alone is ~400 MB);
    set EXECBOX_CACHE_DIR to keep a cache from one run to the next."""
    shutil.rmtree(_root, ignore_errors=True)


@pytest.fixture(scope="session")
def client() -> Iterator[execbox.Client]:
    """A client without warm boxes, so that after a job no box at all may remain."""
    with execbox.Client(pool_size=0) as c:
        yield c


@pytest.fixture
def pooled_client() -> Iterator[execbox.Client]:
    """Warm boxes live as long as their client: this one's are gone before the next test."""
    with execbox.Client(pool_size=2) as c:
        yield c


@pytest.fixture
def invariants(client: execbox.Client) -> Invariants:
    return Invariants(client, CANARY)


# -- the server -------------------------------------------------------------------------------

import contextlib  # noqa: E402
from collections.abc import Callable  # noqa: E402
from collections.abc import Iterator as _Iterator  # noqa: E402
from typing import Any  # noqa: E402

from server_support import (  # noqa: E402
    Keys,
    PostgresServer,
    ServerProcess,
    make_keys,
    open_key,
    postgres,
)

# -- one SDK suite, two transports ------------------------------------------------------------


@pytest.fixture(scope="module")
def sdk_server(tmp_path_factory: pytest.TempPathFactory) -> _Iterator[ServerProcess]:
    """A real `execbox serve` for the remote half of the SDK suite; ``.key`` opens it.

    One per module: its SIGTERM at the module's end closes what the module's remote sessions
    left open (as a server would keep them), so no box outlives the module that made it."""
    url = f"sqlite:///{tmp_path_factory.mktemp('sdk-server') / 'execbox.db'}"
    key = open_key(url)
    with ServerProcess(url, "--pool-size", "0", "--session-pool-size", "0") as server:
        server.key = key
        yield server


@pytest.fixture(scope="module", params=["embedded", "remote"])
def sdk_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    """How a test opens its client: an engine in this process, or a server over HTTP. The
    tests that take it run on both, since the SDK promises one behaviour for the two."""
    if request.param == "embedded":
        return {"pool_size": 0, "session_pool_size": 0}
    server: ServerProcess = request.getfixturevalue("sdk_server")
    return {"url": server.base, "api_key": server.key}


@pytest.fixture(scope="session")
def postgres_server() -> _Iterator[PostgresServer]:
    """One PostgreSQL cluster for the whole run; each test gets a database of its own."""
    with postgres() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on SQLite and on a real PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'execbox.db'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.new_database()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'execbox.db'}"


@pytest.fixture
def keys(database_url: str) -> Keys:
    return make_keys(database_url)


@pytest.fixture
def fresh_app(database_url: str) -> _Iterator[Callable[..., Any]]:
    """Apps of the test's own settings on the parametrised database, each closed at the end."""
    from fastapi.testclient import TestClient

    from execbox.server import ServerSettings, create_app

    with contextlib.ExitStack() as stack:

        def make(**settings: Any) -> TestClient:
            app = create_app(
                ServerSettings(
                    database_url=database_url, pool_size=0, session_pool_size=0, **settings
                )
            )
            return stack.enter_context(TestClient(app))

        yield make


@pytest.fixture
def api(fresh_app: Callable[..., Any], keys: Keys) -> object:
    """The app in process (Starlette's TestClient), on the parametrised database."""
    return fresh_app()
