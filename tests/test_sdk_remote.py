"""What only a remote client has: choosing the server (argument or environment), reaching it,
and carrying its errors back as the exceptions an embedded client raises. Everything else of
the SDK runs on both transports in test_jobs, test_sessions and test_uploads."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest

import execbox
from execbox.client import remote
from execbox.store import Store
from execbox.store.accounts import TenantLimits
from server_support import ServerProcess, auth, free_port


def _jobs_on(server: ServerProcess) -> list[str]:
    answer = httpx.get(f"{server.base}/v1/jobs", headers=auth(server.key), timeout=10)
    return [job["id"] for job in answer.json()["jobs"]]


def test_environment_chooses_the_server(
    sdk_server: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EXECBOX_URL and EXECBOX_API_KEY make Client() remote; engine options keep it embedded."""
    monkeypatch.setenv("EXECBOX_URL", sdk_server.base)
    monkeypatch.setenv("EXECBOX_API_KEY", sdk_server.key)
    with execbox.Client() as client:
        job = client.submit({"main.py": "print('via env')"})
        assert job.wait(timeout=60).stdout == "via env\n"
    assert job.id in _jobs_on(sdk_server)
    with execbox.Client(pool_size=0) as embedded:
        local = embedded.submit({"main.py": "print('here')"})
        assert local.wait(timeout=60).stdout == "here\n"
    assert local.id not in _jobs_on(sdk_server)


def test_async_client_through_the_environment(
    sdk_server: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXECBOX_URL", sdk_server.base + "/")
    monkeypatch.setenv("EXECBOX_API_KEY", sdk_server.key)

    async def main() -> str:
        async with execbox.AsyncClient() as client, client.session() as session:
            await session.execute("word = 'remote'")
            return (await session.execute("word")).text

    assert anyio.run(main) == "'remote'\n"


@pytest.mark.parametrize(
    ("arguments", "match"),
    [
        ({"url": "localhost:8000"}, "url must look like"),
        ({"url": "ftp://host"}, "url must look like"),
        ({"url": "http://"}, "url must look like"),
        ({"url": "http://127.0.0.1:1", "pool_size": 0}, "engine options"),
        ({"api_key": "ebx_x"}, "pass its url"),
    ],
)
def test_bad_client_arguments_raise_invalid_spec(arguments: dict[str, object], match: str) -> None:
    with pytest.raises(execbox.InvalidSpec, match=match):
        execbox.Client(**arguments)  # type: ignore[arg-type]


def test_unreachable_server_is_server_unavailable() -> None:
    with (
        execbox.Client(f"http://127.0.0.1:{free_port()}", api_key="k") as client,
        pytest.raises(execbox.ServerUnavailable, match="cannot reach"),
    ):
        client.run({"main.py": "print(1)"})


class _NotExecbox(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<html>gateway error</html>"
        self.send_response(502 if "jobs/" in self.path else 404)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def not_execbox() -> Iterator[str]:
    """An HTTP server that is not execbox: a proxy's error pages."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotExecbox)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_server_that_is_not_execbox_gives_a_clear_error(not_execbox: str) -> None:
    with execbox.Client(not_execbox) as client:
        with pytest.raises(execbox.ExecboxError, match="execbox server") as missing:
            client.sessions()
        assert type(missing.value) is execbox.ExecboxError
        with pytest.raises(execbox.ExecboxError, match=r"502.*gateway error"):
            client.job("job_x")


def test_bad_and_revoked_keys_are_authentication_errors(sdk_server: ServerProcess) -> None:
    for key in (None, "nonsense", "ebx_" + "0" * 16 + "_" + "0" * 64):
        with (
            execbox.Client(sdk_server.base, api_key=key) as client,
            pytest.raises(execbox.AuthenticationError),
        ):
            client.run({"main.py": "print(1)"})


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with small caps and a tenant that may hold one session and no network."""
    url = f"sqlite:///{tmp_path_factory.mktemp('strict') / 'execbox.db'}"

    async def create() -> str:
        async with Store(url) as store:
            limits = TenantLimits(max_memory=256 << 20, max_timeout=5.0)
            return (await store.create_key("strict", max_sessions=1, limits=limits)).token

    key = anyio.run(create)
    argv = ("--pool-size", "0", "--session-pool-size", "0", "--max-body", "65536")
    with ServerProcess(url, *argv) as server:
        server.key = key
        yield server


def test_server_refusals_are_the_typed_exceptions(strict_server: ServerProcess) -> None:
    """Quota, permission, size and not-found answers become QuotaExceeded, PermissionDenied,
    PayloadTooLarge and the NotFound classes, with the server's message; nothing is lost."""
    with execbox.Client(strict_server.base, api_key=strict_server.key) as client:
        with pytest.raises(execbox.PermissionDenied, match="network"):
            client.run({"main.py": "print(1)"}, network=True)
        with pytest.raises(execbox.PayloadTooLarge):
            client.run({"main.py": "print(1)", "big.bin": b"x" * 100_000})
        with client.session() as session:
            with pytest.raises(execbox.QuotaExceeded):
                client.session().start()
            with pytest.raises(execbox.PayloadTooLarge):
                session.files.write("big.bin", b"x" * 100_000)
            with pytest.raises(execbox.PathNotFound):
                session.files.read("missing.txt")
            assert session.execute("print('still here')").stdout == "still here\n"
        with pytest.raises(execbox.SessionNotFound):
            client.attach("ses_nope")
        with pytest.raises(execbox.JobNotFound):
            client.job("job_nope")
        # A timeout over the tenant's maximum is clamped, and the job still runs.
        result = client.run({"main.py": "import time; time.sleep(60)"}, timeout=600)
        assert result.status is execbox.JobStatus.TIMEOUT
        assert result.usage.wall_seconds < 30


def test_waits_longer_than_one_poll_keep_polling(
    sdk_server: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long wait is several long polls: results still arrive, timeouts still raise."""
    monkeypatch.setattr(remote, "LONG_POLL", 0.2)
    with execbox.Client(sdk_server.base, api_key=sdk_server.key) as client:
        job = client.submit({"main.py": "import time; time.sleep(1.5); print('late')"})
        with pytest.raises(execbox.ExecboxTimeout):
            job.wait(timeout=0.5)
        assert job.wait().stdout == "late\n"
        # run() is one waiting request; a job outlasting it is then polled for, bytes exact.
        slow = "import sys, time; time.sleep(1.5); sys.stdout.buffer.write(b'\\xff late')"
        ran = client.run({"main.py": slow})
        assert ran.status is execbox.JobStatus.SUCCEEDED, ran
        assert ran.stdout_bytes == b"\xff late"
        with client.session() as session:
            execution = session.submit("import time; time.sleep(1.5); print('late')")
            with pytest.raises(execbox.ExecboxTimeout):
                execution.result(timeout=0.5)
            assert execution.result().stdout == "late\n"


def test_absolute_workspace_paths_and_odd_names_round_trip(sdk_server: ServerProcess) -> None:
    with (
        execbox.Client(sdk_server.base, api_key=sdk_server.key) as client,
        client.session() as session,
    ):
        names = ["/workspace/abs.txt", "with space/é ?#%.txt", "deep/a/b/c.bin"]
        for index, name in enumerate(names):
            session.files.write(name, bytes([index]) * 3)
        for index, name in enumerate(names):
            assert session.files.read(name) == bytes([index]) * 3
        assert session.execute("open('with space/é ?#%.txt','rb').read()").text == (
            "b'\\x01\\x01\\x01'\n"
        )
        assert {e.name for e in session.files.list("/workspace")} >= {"abs.txt", "deep"}
        session.files.delete("deep")
        assert "deep" not in {e.name for e in session.files.list()}


def test_a_key_in_the_environment_never_reaches_the_box(
    sdk_server: ServerProcess, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The client's credentials stay in the client: not in the box's environment or files."""
    monkeypatch.setenv("EXECBOX_URL", sdk_server.base)
    monkeypatch.setenv("EXECBOX_API_KEY", sdk_server.key)
    code = "import os, subprocess; print(dict(os.environ)); print(open('/proc/1/environ').read())"
    with execbox.Client() as client:
        result = client.run({"main.py": code})
    assert sdk_server.key not in result.stdout + result.stderr
    assert sdk_server.key.split("_")[2] not in sdk_server.log()
