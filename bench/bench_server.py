"""The server's latency beside its floors, in one run (median, p95, ratios), and a soak.

    .venv/bin/python bench/bench_server.py [--runs N] [--burst N] [--jobs N] [--db URL]
        [--spacing S] [--soak] [--full] [--sessions N] [--seconds S] [--seed N] [--log-level LEVEL]

The benchmark starts its own ``execbox serve`` on 127.0.0.1 (a SQLite file in a temporary
directory, unless ``--db`` names another database, e.g. ``postgresql+asyncpg://...``) with a key
made by ``execbox keys create``, and stops it at the end with SIGTERM, by its pid. Server and
embedded engine share a state directory of their own (removed at the end); the package cache
is the shared one.

Rows, measured in interleaved rounds so that noise falls on all of them alike, after an untimed
warm-up (the execute rows: a burst of ``--burst`` back-to-back executions per round, after one
untimed execution; the job rows: ``--jobs`` jobs per round, ``--spacing`` s of sleep (0.5)
before each, outside the clock, so the warm pool keeps up):
  GET /healthz (floor)            keep-alive httpx.Client: the HTTP round trip, no key, no route
  embedded execute 1+1 (floor)    ``session.execute("1+1")`` through ``execbox.Client(pool_size=2)``
                                  in this process: the engine with no server in front
  server WS execute 1+1           ``{"type": "execute", "code": "1+1"}`` on one WebSocket to
                                  ``/v1/sessions/{id}/stream``, until its ``end`` (checked: ok, 2)
  server HTTP execute 1+1         ``POST /v1/sessions/{id}/executions`` with ``"wait": true``
  embedded job print(1) (floor)   ``client.run({"main.py": "print(1)"})``
  server job print(1)             ``POST /v1/jobs?wait=true`` (checked: stdout "1\\n")
  remote SDK execute 1+1          ``session.execute("1+1")`` through ``Client(url, api_key=...)``
  remote SDK job print(1)         ``client.run(...)`` through the remote client: one multipart
                                  ``POST /v1/jobs?wait=true&output=base64``
  remote SDK submit+wait print(1) ``client.submit(...).wait()``: the multipart submit, then a
                                  long-poll GET with the output as base64
"x floor" divides by the floor of the row's kind (executions by the embedded execute, jobs by
the embedded job); "+ms" is what the server adds to it. ``--runs 0`` skips the table.
A second table splits each timed call by the stamps its result carries: created -> started
(where the result has ``created_at``), started -> finished (the engine's own account of the
work), and the rest of the call (everything else the client waited for: HTTP or WebSocket,
auth, records written before and after, serialisation).
Targets: server WS execute 1+1 <= 6 ms median (>= 7x ipybox's 44.8 ms back to back); server job
print(1) <= 30 ms median.

Soak (``--soak``; ``--full`` = 32 sessions for 10 minutes; default 4 sessions for 20 s): N
concurrent sessions, each an asyncio WebSocket client, send batches of 1-3 benign cells
(arithmetic with a known answer, a known number of printed lines, a small matplotlib plot, a cell
that raises) and, rarely and always alone, a hostile cell (a memory bomb -> ``memory_limit``,
which closes the session; a fork bomb -> ``pids_limit``, likewise; an infinite loop with a 1 s
timeout -> ``timeout``; each kind at least once). A closed session is replaced by a new one.
Every cell carries a unique marker (its ``ref``, and in its code and output), so its result is
checked exactly: status, stdout as streamed and as in the result, outputs, error. Every wait is
bounded. At the end: 0 lost results (each submitted execution got exactly one ``end``), 0
duplicates (no second ``accepted``/``end``, no event after the ``end``, no event for an unknown
execution), every benign answer exact, and the database holds exactly one terminal record per
submitted execution, with the status its ``end`` carried. Throughput (executions/s), the
latency of benign cells (from their submission, or the previous cell's end when queued behind
it, to their end) and the server's RSS are reported. The exit status is 1 if any check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

EXECBOX = str(Path(sys.executable).parent / "execbox")
TIMEOUT = 60.0
"""Bound of every wait in the table: a stuck row fails the run instead of hanging it."""
SETTLE = 0.05
PROGRAM = {"main.py": "print(1)"}
IPYBOX_EXECUTE_MS = 44.8
WS_TARGET_MS, JOB_TARGET_MS = 6.0, 30.0

SOAK_LIMITS = {"memory": "256M", "pids": 64}
BENIGN = {"arithmetic": 40, "prints": 30, "plot": 10, "raise": 10}
HOSTILE = {"memory bomb": 0.003, "fork bomb": 0.003, "infinite loop": 0.008}
"""Chance of each hostile kind per batch; each kind is also forced once, early."""
EXPECTED_STATUS = {
    "raise": "error",
    "memory bomb": "memory_limit",
    "fork bomb": "pids_limit",
    "infinite loop": "timeout",
}
CLOSES_SESSION = ("memory_limit", "pids_limit")
CELL_BOUND = 120.0
"""Longest wait for the ends of one batch (a bomb or a busy machine included)."""
DRAIN = 0.3
"""How long a socket is still read before it is closed, for late duplicates."""
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _percentile95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _rss_mib(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


# -- the server -------------------------------------------------------------------------------


class Server:
    """``execbox serve`` in a subprocess of its own session; its log in ``root``."""

    def __init__(self, url: str, root: Path, options: argparse.Namespace) -> None:
        self.url = url
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.ws_base = f"ws://127.0.0.1:{self.port}"
        self.log_path = root / "serve.log"
        self.argv = [
            EXECBOX, "serve", "--db", url, "--host", "127.0.0.1", "--port", str(self.port),
            "--pool-size", str(options.pool_size),
            "--session-pool-size", str(options.session_pool_size),
            "--log-level", options.log_level,
        ]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv, stdout=log, stderr=log, start_new_session=True
            )
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"the server exited at start:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError, ValueError):
                if httpx.get(f"{self.base}/healthz", timeout=1).json()["status"] == "ok":
                    return
            time.sleep(0.05)
        raise SystemExit(f"the server did not come up within {TIMEOUT} s:\n{self.log_tail()}")

    def stop(self) -> int | None:
        """SIGTERM to our own server, by its pid; SIGKILL if it is not gone in 30 s."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        return self.process.returncode

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def log_problems(self) -> list[str]:
        """Log lines at level error or above (the server logs JSON, one object a line)."""
        found = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                level = json.loads(line).get("level", "")
            except ValueError:
                level = "error" if "Traceback" in line else ""
            if level in ("error", "critical"):
                found.append(line)
        return found


def _make_key(url: str, max_sessions: int) -> str:
    done = subprocess.run(
        [EXECBOX, "keys", "create", "--tenant", "bench", "--db", url,
         "--max-sessions", str(max_sessions), "--max-jobs", "16"],
        check=True, capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip
    return done.stdout.strip()


# -- the table --------------------------------------------------------------------------------


Stamps = tuple[Any, Any, Any]
"""created_at, started_at, finished_at as a result reports them (datetimes or ISO text)."""


def _when(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)


def _stamps(data: Any) -> Stamps:
    get = data.get if isinstance(data, dict) else lambda name: getattr(data, name, None)
    return get("created_at"), get("started_at"), get("finished_at")


class Row:
    """One measure: its action (returning its result's stamps), its samples, its phases."""

    def __init__(self, action: Callable[[], Stamps | None]) -> None:
        self.action = action
        self.samples: list[float] = []
        self.queued: list[float] = []
        """created -> started, ms (jobs, and executions over HTTP)"""
        self.running: list[float] = []
        """started -> finished, ms: the time the engine reports for the work itself"""
        self.rest: list[float] = []
        """the call's time outside created (or started) -> finished, ms"""

    def timed(self) -> None:
        began = time.perf_counter()
        stamps = self.action()
        elapsed = (time.perf_counter() - began) * 1000
        self.samples.append(elapsed)
        if stamps is None:
            return
        created, started, finished = (_when(value) for value in stamps)
        if started is None or finished is None:
            return
        self.running.append((finished - started).total_seconds() * 1000)
        if created is not None:
            self.queued.append((started - created).total_seconds() * 1000)
        first = created or started
        self.rest.append(elapsed - (finished - first).total_seconds() * 1000)


def _table(server: Server, token: str, options: argparse.Namespace) -> None:
    from websockets.sync.client import connect

    import execbox

    headers = {"Authorization": f"Bearer {token}"}
    with contextlib.ExitStack() as stack:
        http = stack.enter_context(
            httpx.Client(base_url=server.base, headers=headers, timeout=TIMEOUT)
        )
        embedded = stack.enter_context(execbox.Client(pool_size=2))
        local = stack.enter_context(embedded.session())
        created = http.post("/v1/sessions", json={})
        assert created.status_code == 201, created.text
        session_id = created.json()["id"]
        stack.callback(http.delete, f"/v1/sessions/{session_id}")
        ws = stack.enter_context(
            connect(
                f"{server.ws_base}/v1/sessions/{session_id}/stream",
                additional_headers=headers,
                open_timeout=TIMEOUT,
            )
        )

        def healthz() -> None:
            response = http.get("/healthz")
            assert response.status_code == 200, response.text

        def embedded_execute() -> Stamps:
            result = local.execute("1+1", timeout=TIMEOUT)
            assert result.status == "ok", result
            assert result.text == "2\n", result
            return _stamps(result)

        def ws_execute() -> Stamps:
            ws.send(json.dumps({"type": "execute", "code": "1+1"}))
            while True:
                message = json.loads(ws.recv(timeout=TIMEOUT))
                if message["type"] == "end":
                    break
                assert message["type"] not in ("error", "accepted") or "execution_id" in message
            result = message["result"]
            assert result["status"] == "ok", result
            assert result["text"] == "2\n", result
            return _stamps(result)

        def http_execute() -> Stamps:
            response = http.post(
                f"/v1/sessions/{session_id}/executions", json={"code": "1+1", "wait": True}
            )
            assert response.status_code == 200, response.text
            view = response.json()
            assert view["result"]["status"] == "ok", view
            assert view["result"]["text"] == "2\n", view
            return _stamps(view)

        remote = stack.enter_context(execbox.Client(server.base, api_key=token))
        remote_session = stack.enter_context(remote.session())

        def sdk_execute() -> Stamps:
            result = remote_session.execute("1+1", timeout=TIMEOUT)
            assert result.status == "ok", result
            assert result.text == "2\n", result
            return _stamps(result)

        def sdk_job() -> Stamps:
            result = remote.run(PROGRAM)
            assert result.stdout == "1\n", result
            return _stamps(result)

        def sdk_submitted_job() -> Stamps:
            result = remote.submit(PROGRAM).wait()
            assert result.stdout == "1\n", result
            return _stamps(result)

        def embedded_job() -> Stamps:
            result = embedded.run(PROGRAM)
            assert result.stdout == "1\n", result
            return _stamps(result)

        def server_job() -> Stamps:
            response = http.post("/v1/jobs", params={"wait": "true"}, json={"files": PROGRAM})
            assert response.status_code == 200, response.text
            view = response.json()
            assert view["stdout"] == "1\n", response.text
            return _stamps(view)

        bursts = {
            "GET /healthz (floor)": Row(healthz),
            "embedded execute 1+1 (floor)": Row(embedded_execute),
            "server WS execute 1+1": Row(ws_execute),
            "server HTTP execute 1+1, wait": Row(http_execute),
            "remote SDK execute 1+1": Row(sdk_execute),
        }
        spaced = {
            "embedded job print(1) (floor)": Row(embedded_job),
            "server job print(1)": Row(server_job),
            "remote SDK job print(1)": Row(sdk_job),
            "remote SDK submit+wait print(1)": Row(sdk_submitted_job),
        }
        began = time.perf_counter()
        for row in bursts.values():
            for _ in range(5):
                row.action()
        for row in spaced.values():
            for _ in range(3):
                time.sleep(options.spacing)
                row.action()
        print(f"warm-up: {time.perf_counter() - began:.1f} s")

        for _ in range(options.runs):
            for row in bursts.values():
                row.action()  # untimed: the switch from the previous row stays off the clock
                for _ in range(options.burst):
                    row.timed()
                time.sleep(SETTLE)
            for _ in range(options.jobs):
                for row in spaced.values():
                    time.sleep(options.spacing)  # the pools refill, outside the clock
                    row.timed()
    _print_table({**bursts, **spaced})


FLOORS = {
    "GET /healthz (floor)": "GET /healthz (floor)",
    "embedded execute 1+1 (floor)": "embedded execute 1+1 (floor)",
    "server WS execute 1+1": "embedded execute 1+1 (floor)",
    "server HTTP execute 1+1, wait": "embedded execute 1+1 (floor)",
    "embedded job print(1) (floor)": "embedded job print(1) (floor)",
    "server job print(1)": "embedded job print(1) (floor)",
    "remote SDK execute 1+1": "embedded execute 1+1 (floor)",
    "remote SDK job print(1)": "embedded job print(1) (floor)",
    "remote SDK submit+wait print(1)": "embedded job print(1) (floor)",
}
TARGETS = {"server WS execute 1+1": WS_TARGET_MS, "server job print(1)": JOB_TARGET_MS}


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.2f}" if values else "-"


def _print_table(rows: dict[str, Row]) -> None:
    medians = {name: statistics.median(row.samples) for name, row in rows.items()}
    print(
        f"\n{'measure':<32} {'n':>5} {'median ms':>10} {'p95 ms':>8} {'x floor':>8} "
        f"{'+ms':>6}  target"
    )
    for name, row in rows.items():
        floor = FLOORS[name]
        ratio = medians[name] / medians[floor]
        extra = "" if floor == name else f"{medians[name] - medians[floor]:>6.1f}"
        target = TARGETS.get(name)
        verdict = ""
        if target is not None:
            met = "met" if medians[name] <= target else "MISSED"
            verdict = f"<= {target:g} ms median: {met}"
        print(
            f"{name:<32} {len(row.samples):>5} {medians[name]:>10.2f} "
            f"{_percentile95(row.samples):>8.2f} {ratio:>8.2f} {extra:>6}  {verdict}"
        )
    ws = medians["server WS execute 1+1"]
    print(
        f"\nserver WS execute 1+1 vs ipybox's {IPYBOX_EXECUTE_MS} ms back to back: "
        f"{IPYBOX_EXECUTE_MS / ws:.1f}x faster (target >= 7x: "
        f"{'met' if IPYBOX_EXECUTE_MS / ws >= 7 else 'MISSED'})"
    )
    print(
        "\nwhere the time goes, medians in ms, from the stamps each result carries:\n"
        f"{'measure':<32} {'created->started':>16} {'started->finished':>18} {'rest of call':>13}"
    )
    for name, row in rows.items():
        if row.running:
            print(
                f"{name:<32} {_median(row.queued):>16} {_median(row.running):>18} "
                f"{_median(row.rest):>13}"
            )


# -- the soak ---------------------------------------------------------------------------------


@dataclass
class Cell:
    marker: str
    kind: str
    code: str
    expect: str | None = None
    timeout: float | None = None
    session_id: str = ""
    sent: float = 0.0
    execution_id: str | None = None
    accepted: int = 0
    ends: int = 0
    ended_at: float = 0.0
    result: dict[str, Any] | None = None
    refused: dict[str, Any] | None = None
    after_end: int = 0
    events: collections.Counter[str] = field(default_factory=collections.Counter)
    streamed: dict[str, str] = field(default_factory=lambda: {"stdout": "", "stderr": ""})
    latency: float | None = None


def _benign(marker: str, rng: random.Random) -> Cell:
    kind = rng.choices(list(BENIGN), weights=list(BENIGN.values()))[0]
    if kind == "arithmetic":
        a, b, c = rng.randrange(10**9), rng.randrange(10**9), rng.randrange(-1000, 1000)
        return Cell(marker, kind, f"print({marker!r})\n{a} * {b} + {c}", expect=str(a * b + c))
    if kind == "prints":
        lines = rng.randint(1, 50)
        code = f"for i in range({lines}):\n    print({marker!r}, i)"
        return Cell(marker, kind, code, expect="".join(f"{marker} {i}\n" for i in range(lines)))
    if kind == "plot":
        code = (
            "import matplotlib.pyplot as plt\n"
            "fig, ax = plt.subplots(figsize=(2, 2))\n"
            f"ax.plot([0, 1, 2], [0, {rng.randint(1, 9)}, 1])\n"
            f"ax.set_title({marker!r})\n"
            "plt.show()\n"
            f"print({marker!r})"
        )
        return Cell(marker, kind, code)
    return Cell(marker, kind, f"raise ValueError({marker!r})")


def _hostile(marker: str, kind: str) -> Cell:
    if kind == "memory bomb":
        code = f"# {marker}\nchunks = []\nwhile True:\n    chunks.append(b'x' * (16 << 20))"
        return Cell(marker, kind, code, timeout=60)
    if kind == "fork bomb":
        return Cell(marker, kind, f"# {marker}\nimport os\nwhile True:\n    os.fork()", timeout=60)
    return Cell(marker, kind, f"# {marker}\nwhile True:\n    pass", timeout=1)


def _problem(cell: Cell) -> str | None:
    """What is wrong with a cell's outcome, or None if it is exactly what its code must give."""
    result = cell.result
    if result is None:
        return "no result"
    status, want = result.get("status"), EXPECTED_STATUS.get(cell.kind, "ok")
    if status != want:
        return f"status {status!r} instead of {want!r}: {result.get('message')}"
    if result.get("id") != cell.execution_id:
        return f"the end carries the result of {result.get('id')!r}"
    if cell.kind not in BENIGN:
        return None
    stdout, outputs = result.get("stdout"), result.get("outputs") or []
    if cell.streamed["stdout"] != stdout or cell.streamed["stderr"] != result.get("stderr"):
        return f"streamed {cell.streamed!r} but the result has {stdout!r} {result.get('stderr')!r}"
    if result.get("stderr"):
        return f"unexpected stderr {result['stderr'][:300]!r}"
    marker_line = f"{cell.marker}\n"
    if cell.kind == "arithmetic":
        got = [(o.get("kind"), o.get("data", {}).get("text/plain")) for o in outputs]
        if stdout != marker_line or got != [("result", cell.expect)] or cell.events["result"] != 1:
            return f"stdout {stdout!r}, outputs {got}, expected {cell.expect!r}"
    elif cell.kind == "prints":
        if stdout != cell.expect or outputs:
            want = len((cell.expect or "").splitlines())
            return f"{len((stdout or '').splitlines())} lines printed, {want} expected"
    elif cell.kind == "plot":
        images = [o.get("data", {}).get("image/png") for o in outputs if o.get("kind") == "display"]
        if stdout != marker_line or len(outputs) != 1 or cell.events["display"] != 1:
            return f"stdout {stdout!r}, {len(outputs)} outputs, {cell.events['display']} displays"
        if not images[0] or not base64.b64decode(images[0]).startswith(PNG_MAGIC):
            return "the display holds no PNG"
    else:
        error = result.get("error") or {}
        if (error.get("ename"), error.get("evalue")) != ("ValueError", cell.marker) or stdout:
            return f"error {error.get('ename')!r} {error.get('evalue')!r}, stdout {stdout!r}"
        if cell.events["error"] != 1:
            return f"{cell.events['error']} error events"
    return None


@dataclass
class Connection:
    session_id: str
    ws: Any
    by_ref: dict[str, Cell] = field(default_factory=dict)
    by_id: dict[str, Cell] = field(default_factory=dict)


@dataclass
class Soak:
    server: Server
    token: str
    sessions: int
    seconds: float
    seed: int
    http: httpx.AsyncClient | None = None
    deadline: float = 0.0
    cells: list[Cell] = field(default_factory=list)
    session_ids: list[str] = field(default_factory=list)
    forced: list[str] = field(default_factory=lambda: list(HOSTILE))
    strays: list[dict[str, Any]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    closed_checks: list[str] = field(default_factory=list)
    replaced: int = 0

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def open(self) -> Connection:
        from websockets.asyncio.client import connect

        assert self.http is not None
        response = await self.http.post("/v1/sessions", json={"limits": SOAK_LIMITS})
        if response.status_code != 201:
            raise RuntimeError(f"session create: {response.status_code} {response.text[:300]}")
        session_id = response.json()["id"]
        self.session_ids.append(session_id)
        ws = await connect(
            f"{self.server.ws_base}/v1/sessions/{session_id}/stream",
            additional_headers=self.headers,
            open_timeout=TIMEOUT,
            ping_interval=None,  # the client's own keep-alive must not fail a busy run
            max_size=16 << 20,
        )
        return Connection(session_id, ws)

    def take(self, connection: Connection, message: dict[str, Any]) -> None:
        kind = message.get("type")
        # An execution's error event and a refused message are both of type "error": only the
        # event names its execution.
        if kind == "accepted" or (kind == "error" and "execution_id" not in message):
            cell = connection.by_ref.get(message.get("ref"))  # type: ignore[arg-type]
            if cell is None:
                self.strays.append(message)
            elif kind == "error":
                cell.refused = message.get("error") or {}
            else:
                cell.accepted += 1
                if cell.execution_id is None:
                    cell.execution_id = message["execution_id"]
                    connection.by_id[cell.execution_id] = cell
            return
        cell = connection.by_id.get(message.get("execution_id"))  # type: ignore[arg-type]
        if cell is None:
            self.strays.append(message)
            return
        if cell.ends:
            cell.after_end += kind != "end"
        cell.events[kind] += 1  # type: ignore[index]
        if kind == "stream":
            name = message.get("name", "?")
            cell.streamed[name] = cell.streamed.get(name, "") + message.get("text", "")
        elif kind == "end":
            cell.ends += 1
            if cell.ends == 1:
                cell.ended_at = time.monotonic()
                cell.result = message.get("result")

    async def run_batch(self, connection: Connection, batch: list[Cell]) -> bool:
        """Send the cells, read until each has ended; True if the session must be replaced."""
        from websockets.exceptions import ConnectionClosed

        for cell in batch:
            cell.session_id = connection.session_id
            cell.sent = time.monotonic()
            connection.by_ref[cell.marker] = cell
            self.cells.append(cell)
            message: dict[str, Any] = {"type": "execute", "code": cell.code, "ref": cell.marker}
            if cell.timeout is not None:
                message["timeout"] = cell.timeout
            try:
                await connection.ws.send(json.dumps(message))
            except ConnectionClosed as exc:
                self.failures.append(f"{connection.session_id}: socket closed on send: {exc}")
                return True
        bound = time.monotonic() + CELL_BOUND
        while any(cell.ends == 0 and cell.refused is None for cell in batch):
            remaining = bound - time.monotonic()
            try:
                if remaining <= 0:
                    raise TimeoutError
                raw = await asyncio.wait_for(connection.ws.recv(), remaining)
            except TimeoutError:
                self.failures.append(f"{connection.session_id}: no end within {CELL_BOUND} s")
                return True
            except ConnectionClosed as exc:
                self.failures.append(f"{connection.session_id}: socket closed: {exc}")
                return True
            self.take(connection, json.loads(raw))
        previous = 0.0
        for cell in batch:
            if cell.ends:
                cell.latency = (cell.ended_at - max(cell.sent, previous)) * 1000
                previous = cell.ended_at
        statuses = [(cell.result or {}).get("status") for cell in batch]
        closing = [status for status in statuses if status in CLOSES_SESSION]
        if closing:
            await self.check_closed(connection.session_id, closing[0])
        return bool(closing) or any(cell.refused is not None for cell in batch)

    async def check_closed(self, session_id: str, reason: str) -> None:
        assert self.http is not None
        response = await self.http.get(f"/v1/sessions/{session_id}")
        view = response.json()
        if (view.get("status"), view.get("reason")) != ("closed", reason):
            self.closed_checks.append(
                f"{session_id}: after {reason}, session is {view.get('status')!r} "
                f"({view.get('reason')!r})"
            )

    async def close(self, connection: Connection) -> None:
        """Read a little longer (late duplicates would show), then close the socket."""
        from websockets.exceptions import ConnectionClosed

        with contextlib.suppress(TimeoutError, ConnectionClosed):
            while True:
                raw = await asyncio.wait_for(connection.ws.recv(), DRAIN)
                self.take(connection, json.loads(raw))
        with contextlib.suppress(Exception):
            await asyncio.wait_for(connection.ws.close(), 5)

    async def worker(self, index: int) -> None:
        rng = random.Random(self.seed * 1000 + index)
        sequence = 0
        while time.monotonic() < self.deadline:
            try:
                connection = await self.open()
            except Exception as exc:
                self.failures.append(f"worker {index}: cannot open a session: {exc!r}")
                return
            try:
                while time.monotonic() < self.deadline:
                    sequence += 1
                    marker = f"m{index}x{sequence}"
                    hostile = None
                    if sequence >= 5 and self.forced:
                        hostile = self.forced.pop()
                    else:
                        for kind, chance in HOSTILE.items():
                            if rng.random() < chance:
                                hostile = kind
                    if hostile is not None:
                        batch = [_hostile(marker, hostile)]
                    else:
                        size = rng.choice((1, 1, 1, 2, 3))
                        batch = [_benign(f"{marker}n{n}", rng) for n in range(size)]
                    if await self.run_batch(connection, batch):
                        self.replaced += 1
                        break
            finally:
                await self.close(connection)

    async def run(self) -> None:
        async with httpx.AsyncClient(
            base_url=self.server.base, headers=self.headers, timeout=TIMEOUT
        ) as http:
            self.http = http
            self.deadline = time.monotonic() + self.seconds
            await asyncio.gather(*(self.worker(index) for index in range(self.sessions)))
            for session_id in self.session_ids:
                with contextlib.suppress(httpx.HTTPError):
                    await http.delete(f"/v1/sessions/{session_id}")

    async def database(self) -> dict[str, int]:
        """Compare the records of every soak session with what the sockets said."""
        from execbox.store import Store

        by_session: dict[str, list[Cell]] = collections.defaultdict(list)
        for cell in self.cells:
            by_session[cell.session_id].append(cell)
        counts = collections.Counter[str]()
        async with Store(self.server.url) as store:
            principal = await store.principal(self.token)
            assert principal is not None
            for session_id in self.session_ids:
                rows = await store.list_executions(principal.tenant_id, session_id, limit=10**7)
                records: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
                for row in rows:
                    records[row["id"]].append(row)
                counts["records"] += len(rows)
                cells = by_session.get(session_id, [])
                accepted = {c.execution_id: c for c in cells if c.execution_id is not None}
                refused = sum(c.refused is not None for c in cells)
                counts["missing"] += sum(1 for e in accepted if e not in records)
                extra = sum(1 for e in records if e not in accepted)
                counts["extra"] += max(0, extra - refused)
                counts["duplicate records"] += sum(len(r) - 1 for r in records.values())
                for execution_id, found in records.items():
                    status = found[0]["status"]
                    counts["not terminal"] += status in ("queued", "running")
                    cell = accepted.get(execution_id)
                    if cell is not None and cell.result is not None:
                        counts["status differs"] += status != cell.result.get("status")
        return dict(counts)


def _soak(server: Server, token: str, options: argparse.Namespace) -> bool:
    soak = Soak(server, token, options.sessions, options.seconds, options.seed)
    rss_before = _rss_mib(server.pid)
    print(
        f"\nsoak: {options.sessions} sessions for {options.seconds:g} s "
        f"(limits {SOAK_LIMITS}), server RSS {rss_before:.1f} MiB before"
    )
    started = time.monotonic()
    asyncio.run(soak.run())
    elapsed = time.monotonic() - started
    rss_after = _rss_mib(server.pid)
    database = asyncio.run(soak.database())

    cells = soak.cells
    lost = [c for c in cells if c.accepted and c.ends == 0]
    never_accepted = [c for c in cells if not c.accepted and c.refused is None]
    duplicates = (
        sum(max(0, c.ends - 1) for c in cells)
        + sum(max(0, c.accepted - 1) for c in cells)
        + sum(c.after_end for c in cells)
    )
    refused = [c for c in cells if c.refused is not None]
    wrong = [(c, p) for c in cells if c.ends and (p := _problem(c)) is not None]
    wrong_benign = [(c, p) for c, p in wrong if c.kind in BENIGN]
    wrong_hostile = [(c, p) for c, p in wrong if c.kind not in BENIGN]
    ended = [c for c in cells if c.ends]

    print(
        f"{len(cells)} executions submitted in {len(soak.session_ids)} sessions "
        f"({soak.replaced} replaced) in {elapsed:.1f} s: {len(ended) / elapsed:.1f} executions/s"
    )
    print(f"\n{'kind':<16} {'n':>6} {'median ms':>10} {'p95 ms':>9}  statuses")
    for kind in (*BENIGN, *HOSTILE):
        of_kind = [c for c in ended if c.kind == kind]
        latencies = [c.latency for c in of_kind if c.latency is not None]
        statuses = collections.Counter((c.result or {}).get("status") for c in of_kind)
        shown = ", ".join(f"{s} {n}" for s, n in statuses.most_common())
        if latencies:
            print(
                f"{kind:<16} {len(of_kind):>6} {statistics.median(latencies):>10.1f} "
                f"{_percentile95(latencies):>9.1f}  {shown}"
            )
        else:
            print(f"{kind:<16} {0:>6}")
    benign = [c.latency for c in ended if c.kind in BENIGN and c.latency is not None]
    if benign:
        print(
            f"{'all benign':<16} {len(benign):>6} {statistics.median(benign):>10.1f} "
            f"{_percentile95(benign):>9.1f}  (submission or previous end -> end)"
        )

    problems = server.log_problems()
    checks = {
        "lost results (accepted, no end)": len(lost),
        "never accepted nor refused": len(never_accepted),
        "duplicates (2nd accepted/end, events after end)": duplicates,
        "stray messages (unknown ref or execution)": len(soak.strays),
        "refused executions": len(refused),
        "wrong benign answers": len(wrong_benign),
        "hostile cells with another outcome": len(wrong_hostile),
        "sessions not closed after a bomb": len(soak.closed_checks),
        "DB records missing": database.get("missing", 0),
        "DB records extra": database.get("extra", 0),
        "DB duplicate records": database.get("duplicate records", 0),
        "DB records not terminal": database.get("not terminal", 0),
        "DB status differs from the end": database.get("status differs", 0),
        "client-side failures (timeouts, closed sockets)": len(soak.failures),
    }
    print()
    for name, count in checks.items():
        print(f"{name:<52} {count:>6}  {'ok' if count == 0 else 'FAILED'}")
    print(
        f"DB: {database.get('records', 0)} execution records for "
        f"{sum(1 for c in cells if c.execution_id)} accepted executions"
    )
    print(
        f"server RSS: {rss_before:.1f} MiB before the soak, {rss_after:.1f} MiB after "
        f"({rss_after - rss_before:+.1f}); server log lines at error level: {len(problems)}"
    )
    for cell, problem in (wrong_benign + wrong_hostile)[:10]:
        print(f"  {cell.kind} {cell.marker} {cell.execution_id}: {problem}")
    for cell in (lost + never_accepted + refused)[:10]:
        print(f"  {cell.kind} {cell.marker} {cell.execution_id}: ends {cell.ends}, {cell.refused}")
    for line in soak.failures[:10] + soak.closed_checks[:10]:
        print(f"  {line}")
    for message in soak.strays[:5]:
        print(f"  stray: {json.dumps(message)[:300]}")
    for line in problems[:5]:
        print(f"  server: {line[:400]}")
    passed = all(count == 0 for count in checks.values())
    print(f"soak: {'PASSED' if passed else 'FAILED'}")
    return passed


# -- the run ----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30, help="rounds of the table (0: none)")
    parser.add_argument("--burst", type=int, default=10, help="executions per round per row")
    parser.add_argument("--jobs", type=int, default=2, help="jobs per round per row")
    parser.add_argument("--spacing", type=float, default=0.5, help="s of sleep before a job")
    parser.add_argument("--db", metavar="URL", help="database URL (default: SQLite in a temp dir)")
    parser.add_argument("--pool-size", type=int, default=2, help="the server's warm boxes")
    parser.add_argument("--session-pool-size", type=int, default=1, help="its warm kernels")
    parser.add_argument("--log-level", default="info", help="the server's log level")
    parser.add_argument("--soak", action="store_true", help="run the soak after the table")
    parser.add_argument("--full", action="store_true", help="the full soak: 32 sessions, 10 min")
    parser.add_argument("--sessions", type=int, default=4, help="concurrent soak sessions")
    parser.add_argument("--seconds", type=float, default=20.0, help="soak duration")
    parser.add_argument("--seed", type=int, default=1)
    options = parser.parse_args()
    if options.full:
        options.soak, options.sessions, options.seconds = True, 32, 600.0

    # A state directory of our own for the server and the embedded engine (box uids must
    # traverse it); the shared package cache stays.
    root = Path(tempfile.mkdtemp(prefix="execbox-bench-server-"))
    os.chmod(root, 0o755)  # noqa: S103 - box uids bind files from it
    (root / "state").mkdir(mode=0o755)
    os.environ["EXECBOX_STATE_DIR"] = str(root / "state")
    url = options.db or f"sqlite:///{root / 'execbox.db'}"
    started, load = time.perf_counter(), os.getloadavg()[0]
    server = Server(url, root, options)
    passed = True
    try:
        token = _make_key(url, max_sessions=options.sessions + 8)
        server.start()
        print(f"server pid {server.pid} on {server.base}, RSS {_rss_mib(server.pid):.1f} MiB")
        if options.runs > 0:
            _table(server, token, options)
        if options.soak:
            passed = _soak(server, token, options)
        print(f"server RSS at the end: {_rss_mib(server.pid):.1f} MiB")
    finally:
        code = server.stop()
        if code not in (0, -signal.SIGTERM, None):  # uvicorn re-raises the signal it handled
            print(f"the server exited with {code} on SIGTERM:\n{server.log_tail()}")
        shutil.rmtree(root, ignore_errors=True)
    elapsed = time.perf_counter() - started
    # The machines are shared: a high load average means other work shared the 2 cores.
    print(f"run time: {elapsed:.1f} s; 1-min load average {load:.2f} before, ", end="")
    print(f"{os.getloadavg()[0]:.2f} after ({os.cpu_count()} cpus)")
    if not passed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
