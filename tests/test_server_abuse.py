"""A real server under abuse: oversize bodies and frames, slow and never-reading clients, a flood
of bad keys, key caps, and hostile code sent through the API.

One ``execbox serve`` (SQLite, no warm pools, ``--max-body 64K --max-message 64K``) serves the
whole module. After every hostile case the SECURITY.md invariants are checked through the
server: no canary (the server's environment, a server-only file) in any response, record or
log line; nothing of the box left 2 s after the result (only the boxes of live sessions stay);
the server healthy and a benign job and session still work; the record terminal with the right
reason.
"""

from __future__ import annotations

import array
import base64
import contextlib
import fcntl
import json
import os
import socket
import termios
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from conftest import CANARY, SECRET_FILE
from execbox.boxes.local.host import probe
from execbox.store import Store
from helpers import FORK_BOMB, box_cgroups, box_processes, box_records, leftovers
from server_support import Keys, ServerProcess, auth, make_keys, wait_until

CAP = 64 << 10
OVER = 100 << 10
_GROUPS = probe().cgroups
# Only a pids cgroup counts hits of its limit; under the RLIMIT_NPROC fallback a failed fork
# is just the program's error.
PIDS_LIMIT_REASON = "pids_limit" if _GROUPS and "pids" in _GROUPS.controllers else None

SEEN: list[str] = []
"""Every response body and WebSocket message the tests received: none may hold the canary."""


# -- the server and its clients -----------------------------------------------------------------


class Served:
    def __init__(self, server: ServerProcess, keys: Keys, capped: str, db_path: Path) -> None:
        self.server = server
        self.keys = keys
        self.capped = capped
        self.db_path = db_path

    def client(self, key: str | None = None, **options: Any) -> httpx.Client:
        def remember(response: httpx.Response) -> None:
            response.read()
            SEEN.append(response.text)

        headers = auth(key) if key is not None else {}
        options.setdefault("timeout", 60)
        return httpx.Client(
            base_url=self.server.base,
            headers=headers,
            event_hooks={"response": [remember]},
            **options,
        )

    def ws_url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.server.port}{path}"

    def websocket(self, path: str, key: str) -> ClientConnection:
        return connect(self.ws_url(path), additional_headers=auth(key), max_size=None, proxy=None)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    db_path = tmp_path_factory.mktemp("abuse") / "execbox.db"
    url = f"sqlite:///{db_path}"
    keys = make_keys(url)

    async def capped_key() -> str:
        async with Store(url) as store:
            return (await store.create_key("tenant-capped", max_sessions=1, max_jobs=2)).token

    capped = anyio.run(capped_key)
    server = ServerProcess(
        url, "--pool-size", "0", "--session-pool-size", "0", "--max-body", "64K",
        "--max-message", "64K",
    ).start()  # fmt: skip
    try:
        yield Served(server, keys, capped, db_path)
    finally:
        server.stop()


def new_session(http: httpx.Client, **body: Any) -> str:
    response = http.post("/v1/sessions", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def execute(http: httpx.Client, session_id: str, code: str, **extra: Any) -> dict[str, Any]:
    response = http.post(
        f"/v1/sessions/{session_id}/executions", json={"code": code, "wait": True, **extra}
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def run_job(http: httpx.Client, source: str, **extra: Any) -> dict[str, Any]:
    response = http.post(
        "/v1/jobs", params={"wait": True}, json={"files": {"main.py": source}, **extra}
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def healthy(served: Served) -> None:
    """The server answers, and a benign job and a benign session run correctly."""
    with served.client(served.keys.a) as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        job = run_job(http, "print('still fine')")
        assert (job["status"], job["stdout"]) == ("succeeded", "still fine\n"), job
        session_id = new_session(http)
        try:
            result = execute(http, session_id, "print(sum(range(10)))")
            assert result["status"] == "ok", result
            assert result["result"]["stdout"] == "45\n"
        finally:
            http.delete(f"/v1/sessions/{session_id}")


def read_db(served: Served, call: Callable[[Store], Any]) -> Any:
    async def read() -> Any:
        async with Store(f"sqlite:///{served.db_path}") as store:
            return await call(store)

    return anyio.run(read)


def open_sessions(served: Served) -> int:
    async def count(store: Store) -> int:
        return await store.count("sessions", status="open")

    return int(read_db(served, count))


def boxes_settle_to(baseline: dict[str, set[Any]], served: Served) -> None:
    """Within 2 s, only the boxes that were there before remain: one per live session."""

    def settled() -> bool:
        return (
            set(box_records()) == baseline["records"]
            and set(box_cgroups()) == baseline["cgroups"]
            and set(box_processes()) <= baseline["processes"]
        )

    deadline = time.monotonic() + 2.0
    while not settled() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert settled(), f"left behind 2 s after the result: {leftovers()} (before: {baseline})"
    live = open_sessions(served)
    assert len(box_records()) == len(box_cgroups()) == live, (leftovers(), live)


def box_baseline() -> dict[str, set[Any]]:
    return {
        "records": set(box_records()),
        "cgroups": set(box_cgroups()),
        "processes": set(box_processes()),
    }


def no_secrets(served: Served) -> None:
    """No canary and no key in any response, the server's log, or the database's files."""
    secrets = [CANARY]
    keys = [served.keys.a, served.keys.b, served.keys.admin, served.keys.revoked, served.capped]
    log = served.server.log()
    stored = b"".join(
        path.read_bytes()
        for path in served.db_path.parent.iterdir()
        if path.name.startswith(served.db_path.name)
    )
    for secret in secrets:
        assert not any(secret in text for text in SEEN), "a canary reached a response"
        assert secret not in log, "a canary reached the server log"
        assert secret.encode() not in stored, "a canary reached the database"
    for key in keys:
        secret_part = key.rsplit("_", 1)[-1]
        assert secret_part not in log, "an API key reached the server log"
        assert secret_part.encode() not in stored, "an API key is stored in clear"


@pytest.fixture
def clean(served: Served) -> Iterator[None]:
    """Each test starts and ends with no box of its own: every session it opened is closed."""
    yield
    for key in (served.keys.a, served.keys.b, served.capped):
        with served.client(key) as http:
            for session in http.get("/v1/sessions", params={"status": "open"}).json()["sessions"]:
                http.delete(f"/v1/sessions/{session['id']}")
            for job in http.get("/v1/jobs", params={"status": ["queued", "running"]}).json()[
                "jobs"
            ]:
                http.post(f"/v1/jobs/{job['id']}/kill")
    wait_until(lambda: not leftovers(), 10, "boxes left after the test")


# -- oversize bodies and frames -------------------------------------------------------------------


def _chunks(total: int, size: int = 8 << 10) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        part = min(size, total - sent)
        yield b"x" * part
        sent += part


def _too_large(response: httpx.Response) -> None:
    assert response.status_code == 413, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"]["type"] == "PayloadTooLarge", response.text


def test_request_bodies_over_the_cap_get_413_json(served: Served, clean: None) -> None:
    big_job = {"files": {"main.py": "# " + "x" * OVER + "\nprint('no')\n"}}
    with served.client(served.keys.a) as http:
        # Declared length over the cap: refused before the body is read.
        _too_large(http.post("/v1/jobs", json=big_job))
        # No declared length: a chunked body is cut off once it passes the cap.
        chunked = http.post(
            "/v1/jobs",
            content=_chunks(OVER),
            headers={"content-type": "application/json"},
        )
        assert chunked.request.headers.get("transfer-encoding") == "chunked"
        assert "content-length" not in chunked.request.headers
        _too_large(chunked)
        # Multipart uploads, declared and chunked.
        files = {"files": ("data.bin", b"\0" * OVER, "application/octet-stream")}
        _too_large(http.post("/v1/jobs", files=files, data={"spec": "{}"}))
        boundary = "execbox-abuse"

        def multipart() -> Iterator[bytes]:
            for index in range(200):  # many small parts, 100 KiB in all
                yield (
                    (
                        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; '
                        f'filename="f{index}.py"\r\n\r\n'
                    ).encode()
                    + b"#" * 512
                    + b"\r\n"
                )
            yield f"--{boundary}--\r\n".encode()

        _too_large(
            http.post(
                "/v1/jobs",
                content=multipart(),
                headers={"content-type": f"multipart/form-data; boundary={boundary}"},
            )
        )

        session_id = new_session(http)
        path = f"/v1/sessions/{session_id}/files/big.bin"
        _too_large(http.put(path, content=b"\1" * OVER))
        put_chunked = http.put(path, content=_chunks(OVER))
        assert put_chunked.request.headers.get("transfer-encoding") == "chunked"
        _too_large(put_chunked)
        listed = http.get(f"/v1/sessions/{session_id}/files").json()["entries"]
        assert "big.bin" not in [entry["name"] for entry in listed], listed

        # Just under the cap is served, in both forms.
        under = {"files": {"main.py": "# " + "x" * (CAP - 2048) + "\nprint('fits')\n"}}
        fits = http.post("/v1/jobs", params={"wait": True}, json=under)
        assert fits.status_code == 200, fits.text
        assert fits.json()["stdout"] == "fits\n"
        small = http.put(path, content=_chunks(CAP - 1024))
        assert small.status_code == 200, small.text
        assert small.json()["size"] == CAP - 1024
        # The cap is exact: 64 KiB is served, a byte more is not.
        exact = http.put(path, content=b"\2" * CAP)
        assert (exact.status_code, exact.json()["size"]) == (200, CAP), exact.text
        _too_large(http.put(path, content=b"\2" * (CAP + 1)))
        _too_large(http.put(path, content=_chunks(CAP + 1)))
        assert http.get(path).content == b"\2" * CAP
        http.delete(f"/v1/sessions/{session_id}")
    healthy(served)


def _closed_with(socket: ClientConnection, timeout: float = 10.0) -> int | None:
    """Read until the server closes the socket; its close code."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            SEEN.append(str(socket.recv(timeout=max(0.1, deadline - time.monotonic()))))
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd is not None else None
    except TimeoutError:
        pass
    raise AssertionError(f"the socket stayed open {timeout} s")


def _run_over_socket(socket: ClientConnection, code: str, limit: int = 10_000) -> dict[str, Any]:
    """Execute over a session socket; every message up to and with ``end``."""
    socket.send(json.dumps({"type": "execute", "code": code, "ref": "r1"}))
    messages = []
    for _ in range(limit):
        text = str(socket.recv(timeout=60))
        SEEN.append(text)
        message = json.loads(text)
        messages.append(message)
        if message["type"] == "end":
            return {"messages": messages, "end": message}
        assert message["type"] != "error", message
    raise AssertionError(f"no end within {limit} messages")


def test_websocket_messages_over_the_cap_close_with_1009(served: Served, clean: None) -> None:
    with served.client(served.keys.a) as http:
        session_id = new_session(http)
        stream = f"/v1/sessions/{session_id}/stream"

        # Under the cap: an execute message of ~60 KiB runs.
        with served.websocket(stream, served.keys.a) as socket:
            code = "s = '" + "a" * (CAP - 4096) + "'\nprint(len(s))"
            ran = _run_over_socket(socket, code)
            assert ran["end"]["result"]["status"] == "ok", ran["end"]
            assert ran["end"]["result"]["stdout"] == f"{CAP - 4096}\n"

        # Over it, in one frame: closed with 1009.
        with served.websocket(stream, served.keys.a) as socket:
            code = "s = '" + "a" * OVER + "'"
            socket.send(json.dumps({"type": "execute", "code": code}))
            assert _closed_with(socket) == 1009

        # Over it in fragments of 16 KiB, each small: the message counts, closed with 1009.
        with served.websocket(stream, served.keys.a) as socket:
            message = json.dumps({"type": "execute", "code": "s = '" + "b" * OVER + "'"})
            socket.send(message[i : i + (16 << 10)] for i in range(0, len(message), 16 << 10))
            assert _closed_with(socket) == 1009

        # Binary frames too.
        with served.websocket(stream, served.keys.a) as socket:
            socket.send(b"{" + b" " * OVER + b"}")
            assert _closed_with(socket) == 1009

        # Nothing of it ran, and the session and the server are as they were.
        executions = http.get(f"/v1/sessions/{session_id}/executions").json()["executions"]
        assert len(executions) == 1, executions
        assert execute(http, session_id, "print(s[:3], len(s))")["result"]["stdout"] == (
            f"aaa {CAP - 4096}\n"
        )
        with served.websocket(stream, served.keys.a) as socket:
            assert _run_over_socket(socket, "print('again')")["end"]["result"]["stdout"] == (
                "again\n"
            )
        http.delete(f"/v1/sessions/{session_id}")
    healthy(served)


# -- slow and stuck clients -----------------------------------------------------------------------


def _slowloris(port: int, count: int, key: str) -> list[socket.socket]:
    """Sockets that each sent the start of a request and will never finish it."""
    sockets = []
    for index in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        if index % 2:
            # Headers never end.
            sock.sendall(b"GET /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        else:
            # Headers complete and authenticated, the body promised and never sent.
            body_start = b'{"files": {"main.py": "'
            sock.sendall(
                b"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                + f"Authorization: Bearer {key}\r\n".encode()
                + b"Content-Type: application/json\r\nContent-Length: 60000\r\n\r\n"
                + body_start
            )
        sockets.append(sock)
    return sockets


def _trickle(sockets: list[socket.socket], stop: threading.Event) -> None:
    """A byte per socket every 0.3 s, for as long as the test runs (at most 120 s)."""
    deadline = time.monotonic() + 120
    while not stop.wait(0.3) and time.monotonic() < deadline:
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.send(b"a")


def _raw_websocket(port: int, path: str, key: str) -> socket.socket:
    """A WebSocket opened by hand, with a small receive buffer, that the test never reads."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    nonce = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {nonce}\r\n"
            f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {key}\r\n\r\n"
        ).encode()
    )
    head = b""
    for _ in range(4096):
        if head.endswith(b"\r\n\r\n"):
            break
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def _frame(payload: bytes) -> bytes:
    """One masked text frame, as a client must send it."""
    header = bytearray([0x81])
    if len(payload) < 126:
        header.append(0x80 | len(payload))
    elif len(payload) < 1 << 16:
        header += bytes([0x80 | 126]) + len(payload).to_bytes(2, "big")
    else:
        header += bytes([0x80 | 127]) + len(payload).to_bytes(8, "big")
    mask = os.urandom(4)
    return bytes(header) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


FLOOD = textwrap.dedent(
    """
    import sys
    line = "x" * 65535 + "\\n"
    for _ in range(320):  # 20 MiB
        sys.stdout.write(line)
        sys.stdout.flush()
    print("printed it all")
    """
)


def test_slow_and_stuck_clients_do_not_hold_up_others(served: Served, clean: None) -> None:
    stop = threading.Event()
    slow = _slowloris(served.server.port, 40, served.keys.b)
    trickler = threading.Thread(target=_trickle, args=(slow, stop), daemon=True)
    trickler.start()
    stuck: socket.socket | None = None
    try:
        with served.client(served.keys.a) as http:
            flooded = new_session(http)
            other = new_session(http)

            # A client that asks for 20 MiB of output and never reads a byte of it.
            stuck = _raw_websocket(
                served.server.port, f"/v1/sessions/{flooded}/stream", served.keys.a
            )
            stuck.sendall(_frame(json.dumps({"type": "execute", "code": FLOOD}).encode()))

            # Meanwhile, everyone else is served.
            for _ in range(5):
                listed = http.get("/v1/jobs")
                assert listed.status_code == 200, listed.text
            job = run_job(http, "print('served meanwhile')")
            assert (job["status"], job["stdout"]) == ("succeeded", "served meanwhile\n"), job
            result = execute(http, other, "print(6 * 7)")
            assert (result["status"], result["result"]["stdout"]) == ("ok", "42\n"), result
            with served.websocket(f"/v1/sessions/{other}/stream", served.keys.a) as socket:
                ran = _run_over_socket(socket, "for i in range(3): print(i)")
            assert ran["end"]["result"]["stdout"] == "0\n1\n2\n", ran["end"]

            # The flood itself runs to its end and is recorded, read or not.
            def flood_recorded() -> dict[str, Any] | None:
                rows = http.get(f"/v1/sessions/{flooded}/executions").json()["executions"]
                done = [row for row in rows if row["status"] not in ("queued", "running")]
                return done[0] if done else None

            record = wait_until(flood_recorded, 90, "the unread execution recorded")
            assert record["status"] == "ok", record
            assert record["truncated"] is True, record  # 20 MiB is over the session's 8 MiB

            # The server did send to the stuck client, which read none of it.
            waiting = array.array("i", [0])
            fcntl.ioctl(stuck.fileno(), termios.FIONREAD, waiting)
            assert waiting[0] > 0, "nothing reached the stuck client"

            # Its session is not stuck behind the unread socket.
            assert execute(http, flooded, "print('next')")["result"]["stdout"] == "next\n"
            assert http.get("/healthz").json() == {"status": "ok"}
    finally:
        stop.set()
        trickler.join(5)
        for sock in [*slow, *([stuck] if stuck else [])]:
            sock.close()
    healthy(served)


def _log_entries(served: Served) -> list[dict[str, Any]]:
    entries = []
    for line in served.server.log().splitlines():
        with contextlib.suppress(ValueError):
            entries.append(json.loads(line))
    return entries


def test_a_client_hanging_up_mid_body_is_not_a_server_error(served: Served, clean: None) -> None:
    """A client that goes away while sending its body is the client's doing: no 500 in the
    request log, no error and no traceback in the server's log (else any key holder can fill
    the log, and alerts on 5xx, at will)."""
    before = len(_log_entries(served))
    hung_up = []
    for _ in range(3):
        sock = socket.create_connection(("127.0.0.1", served.server.port), timeout=10)
        sock.sendall(
            b"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + f"Authorization: Bearer {served.keys.a}\r\n".encode()
            + b"Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n"
            + b'{"files": {"main.py": "'
        )
        hung_up.append(sock)
    with served.client(served.keys.a) as http:
        assert http.get("/v1/jobs").status_code == 200  # the server has read the requests
    for sock in hung_up:
        sock.close()

    def logged() -> list[dict[str, Any]]:
        new = _log_entries(served)[before:]
        requests = [
            entry
            for entry in new
            if entry.get("message") == "request" and entry.get("method") == "POST"
        ]
        return new if len(requests) >= len(hung_up) else []

    entries = wait_until(logged, 10, "the hung-up requests logged")
    statuses = [e["status"] for e in entries if e.get("message") == "request"]
    errors = [
        f"{e['logger']}: {e['message'].strip()} ({e.get('exception', '').splitlines()[-1:]})"
        for e in entries
        if e.get("level") in ("error", "critical")
    ]
    assert not errors, f"hang-ups logged as server errors: {errors}"
    assert 500 not in statuses, f"hang-ups logged as 500: {statuses}"
    healthy(served)


# -- floods of bad keys, and per-key caps ---------------------------------------------------------


def test_a_flood_of_bad_keys_does_not_affect_a_good_client(served: Served, clean: None) -> None:
    unknown = "ebx_" + "0" * 16 + "_" + "f" * 64
    bad_headers = [
        {},
        {"Authorization": "Bearer not-a-key"},
        {"Authorization": f"Bearer {unknown}"},
        {"Authorization": f"Bearer {served.keys.revoked}"},
        {"X-API-Key": unknown},
        {"Authorization": f"Basic {unknown}"},
    ]

    attackers = [
        httpx.Client(base_url=served.server.base, headers=headers, timeout=30)
        for headers in bad_headers
    ]

    def attack(index: int) -> int:
        bad = attackers[index % len(attackers)]
        if index % 3 == 0:
            response = bad.post("/v1/jobs", json={"files": {"main.py": "print(1)"}})
        elif index % 3 == 1:
            response = bad.get("/v1/sessions")
        else:
            response = bad.get(f"/v1/jobs/job_{index:024x}/stdout")
        SEEN.append(response.text)
        return response.status_code

    good_results: list[int] = []
    with contextlib.ExitStack() as stack, ThreadPoolExecutor(max_workers=8) as pool:
        for attacker in attackers:
            stack.enter_context(attacker)
        attacks = [pool.submit(attack, index) for index in range(240)]
        with served.client(served.keys.a) as http:
            for _ in range(10):
                good_results.append(http.get("/v1/jobs").status_code)
            job = run_job(http, "print('good client')")
            session_id = new_session(http)
            result = execute(http, session_id, "print('still mine')")
            http.delete(f"/v1/sessions/{session_id}")
        codes = [future.result(timeout=120) for future in attacks]
    assert set(codes) == {401}, sorted(set(codes))
    assert set(good_results) == {200}, good_results
    assert job["stdout"] == "good client\n", job
    assert result["result"]["stdout"] == "still mine\n", result

    # WebSocket upgrades with bad keys are refused the same way.
    for headers in bad_headers:
        with pytest.raises(InvalidStatus) as refused:
            connect(
                served.ws_url(f"/v1/sessions/ses_{'0' * 24}/stream"),
                additional_headers=headers,
                proxy=None,
            )
        assert refused.value.response.status_code == 401
    assert unknown.rsplit("_", 1)[-1] not in served.server.log()
    no_secrets(served)


def test_per_key_caps_refuse_floods_with_429(served: Served, clean: None) -> None:
    sleeper = {"files": {"main.py": "import time\ntime.sleep(60)\n"}}
    with served.client(served.capped) as capped, served.client(served.keys.a) as other:
        held = [capped.post("/v1/jobs", json=sleeper) for _ in range(2)]
        assert [r.status_code for r in held] == [201, 201], [r.text for r in held]
        flood = [capped.post("/v1/jobs", json=sleeper) for _ in range(5)]
        assert {r.status_code for r in flood} == {429}, [r.text for r in flood]
        assert flood[0].json()["error"]["type"] == "QuotaExceeded"
        session_id = new_session(capped)
        extra = capped.post("/v1/sessions", json={})
        assert extra.status_code == 429, extra.text

        # Another key is not affected.
        job = run_job(other, "print('other key')")
        assert job["stdout"] == "other key\n", job

        # A killed job gives its place back.
        killed = capped.post(f"/v1/jobs/{held[0].json()['id']}/kill")
        assert killed.json()["status"] == "killed", killed.text
        wait_until(
            lambda: capped.post("/v1/jobs", params={"wait": True}, json={
                "files": {"main.py": "print('a place again')"}
            }).status_code == 200,
            10,
            "a job accepted once a place is free",
        )  # fmt: skip
        capped.post(f"/v1/jobs/{held[1].json()['id']}/kill")
        capped.delete(f"/v1/sessions/{session_id}")
        assert new_session(capped)


# -- hostile code through the server ----------------------------------------------------------


PEEK = textwrap.dedent(
    f"""
    import glob, os
    seen = [os.environ.get("EXECBOX_TEST_CANARY") or ""]
    for path in glob.glob("/proc/*/environ") + glob.glob("/proc/*/cmdline"):
        try:
            seen.append(open(path, "rb").read().decode(errors="replace"))
        except OSError:
            pass
    try:
        seen.append(open({str(SECRET_FILE)!r}).read())
    except OSError as exc:
        seen.append(type(exc).__name__)
    print(seen)
    """
)


def test_memory_bomb_cell_ends_its_session_with_memory_limit(served: Served, clean: None) -> None:
    with served.client(served.keys.a) as http:
        bystander = new_session(http)  # a live session whose box must stay
        assert execute(http, bystander, "kept = 'here'")["status"] == "ok"
        baseline = box_baseline()
        session_id = new_session(http, limits={"memory": "256M"})
        peek = execute(http, session_id, PEEK)
        assert peek["status"] == "ok", peek
        assert (
            peek["result"]["stdout"].rstrip().endswith(("FileNotFoundError']", "PermissionError']"))
        )
        bomb = execute(
            http,
            session_id,
            "chunks = []\nwhile True:\n    chunks.append(bytearray(16 << 20))",
            timeout=60,
        )
        assert bomb["status"] == "memory_limit", bomb
        assert "memory" in (bomb["result"]["message"] or ""), bomb
        view = http.get(f"/v1/sessions/{session_id}").json()
        assert (view["status"], view["reason"]) == ("closed", "memory_limit"), view
        refused = http.post(f"/v1/sessions/{session_id}/executions", json={"code": "1"})
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"]["reason"] == "memory_limit"

        boxes_settle_to(baseline, served)

        async def records(store: Store) -> Any:
            principal = await store.principal(served.keys.a)
            assert principal is not None
            return (
                await store.get_session(principal.tenant_id, session_id),
                await store.get_execution(principal.tenant_id, session_id, bomb["id"]),
                await store.status_history(session_id),
            )

        session, execution, history = read_db(served, records)
        assert (session["status"], session["reason"]) == ("closed", "memory_limit"), session
        assert execution["status"] == "memory_limit", execution
        assert [change["status"] for change in history] == ["open", "closed"]
        assert execute(http, bystander, "print(kept)")["result"]["stdout"] == "here\n"
        http.delete(f"/v1/sessions/{bystander}")
    healthy(served)
    no_secrets(served)


def test_fork_bomb_job_is_contained_and_recorded(served: Served, clean: None) -> None:
    bomb = FORK_BOMB
    with served.client(served.keys.b) as http:
        bystander = new_session(http)
        baseline = box_baseline()
        peek = run_job(http, PEEK)
        assert peek["status"] == "succeeded", peek
        job = run_job(http, bomb, limits={"pids": 32}, timeout=30)
        assert job["status"] == "failed", job
        assert job["reason"] == PIDS_LIMIT_REASON, job
        assert job["exit_code"] == 3, job
        assert "fork failed" in job["stdout"], job
        boxes_settle_to(baseline, served)

        async def record(store: Store) -> Any:
            principal = await store.principal(served.keys.b)
            assert principal is not None
            return (
                await store.get_job(principal.tenant_id, job["id"]),
                await store.status_history(job["id"]),
            )

        row, history = read_db(served, record)
        assert (row["status"], row["reason"]) == ("failed", PIDS_LIMIT_REASON), row
        assert [change["status"] for change in history] == ["queued", "running", "failed"]
        assert execute(http, bystander, "print('bystander fine')")["status"] == "ok"
        http.delete(f"/v1/sessions/{bystander}")
    healthy(served)
    no_secrets(served)


def test_fork_bomb_cell_ends_its_session_with_pids_limit(served: Served, clean: None) -> None:
    with served.client(served.keys.b) as http:
        baseline = box_baseline()
        session_id = new_session(http, limits={"pids": 64})
        result = execute(http, session_id, "import os\nwhile True:\n    os.fork()", timeout=30)
        assert result["status"] == "pids_limit", result
        view = http.get(f"/v1/sessions/{session_id}").json()
        assert (view["status"], view["reason"]) == ("closed", "pids_limit"), view
        boxes_settle_to(baseline, served)
    healthy(served)
    no_secrets(served)
