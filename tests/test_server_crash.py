"""A real server killed with SIGKILL, or stopped with SIGTERM, while jobs and cells run.

After a crash nothing may be lost or doubled and nothing may be left: the next server process
(same database) ends every record the dead one left ``queued`` or ``running`` as ``error`` /
``server_restart``, closes its sessions the same way, leaves finished records as they were, and
reaps the dead process's boxes (processes, cgroups, box records) before it serves. A SIGTERM
ends everything itself, records it, and exits within its grace time.

Both on SQLite and on a real PostgreSQL server; the servers run without warm pools so that
"nothing left" is exact.
"""

from __future__ import annotations

import contextlib
import json
import signal
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio
import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from conftest import CANARY
from execbox.boxes.local.host import probe
from execbox.store import Store
from helpers import box_cgroups, box_processes, box_records, leftovers
from server_support import Keys, ServerProcess, auth, make_keys, wait_until

NO_POOLS = ("--pool-size", "0", "--session-pool-size", "0")
TERMINAL_JOB = {"succeeded", "failed", "timeout", "memory_limit", "killed", "error"}
ACTIVE = {"queued", "running"}
# Spinning jobs get a quarter of a core: the machine has two, and other tests share them.
SPIN = {"files": {"main.py": "while True:\n    pass\n"}, "limits": {"cpus": 0.25}}
SLEEP = {"files": {"main.py": "import time\ntime.sleep(60)\n"}}
QUICK_OK = {"files": {"main.py": "print('quick and done')\n"}}
QUICK_FAIL = {"files": {"main.py": "import sys\nprint('failing on purpose')\nsys.exit(3)\n"}}


# -- helpers ----------------------------------------------------------------------------------


def api(server: ServerProcess, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.base, headers=auth(key), timeout=60)


def read_records(url: str, key: str) -> dict[str, Any]:
    """Everything the store holds for the tenant of ``key``, straight from the database."""

    async def read() -> dict[str, Any]:
        async with Store(url) as store:
            principal = await store.principal(key)
            assert principal is not None
            tenant = principal.tenant_id
            jobs = await store.list_jobs(tenant, limit=1000)
            sessions = await store.list_sessions(tenant, limit=1000)
            executions = [
                execution
                for session in sessions
                for execution in await store.list_executions(tenant, session["id"], limit=1000)
            ]
            full_jobs = {job["id"]: await store.get_job(tenant, job["id"]) for job in jobs}
            ids = [row["id"] for row in (*jobs, *sessions, *executions)]
            histories = {object_id: await store.status_history(object_id) for object_id in ids}
            counts = {name: await store.count(name) for name in ("jobs", "sessions", "executions")}
        return {
            "jobs": {job["id"]: job for job in jobs},
            "full_jobs": full_jobs,
            "job_ids": [job["id"] for job in jobs],
            "sessions": {session["id"]: session for session in sessions},
            "session_ids": [session["id"] for session in sessions],
            "executions": {execution["id"]: execution for execution in executions},
            "execution_ids": [execution["id"] for execution in executions],
            "histories": histories,
            "counts": counts,
        }

    return anyio.run(read)


def statuses(history: list[dict[str, Any]]) -> list[str]:
    return [change["status"] for change in history]


def wait_running_job(client: httpx.Client, job_id: str) -> None:
    wait_until(
        lambda: client.get(f"/v1/jobs/{job_id}").json()["status"] == "running",
        30,
        f"job {job_id} running",
    )


def wait_running_execution(client: httpx.Client, session_id: str, execution_id: str) -> None:
    path = f"/v1/sessions/{session_id}/executions/{execution_id}"
    wait_until(
        lambda: client.get(path).json()["status"] == "running",
        30,
        f"execution {execution_id} running",
    )


def new_session(client: httpx.Client) -> str:
    response = client.post("/v1/sessions", json={})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def execute(client: httpx.Client, session_id: str, code: str, *, wait: bool) -> dict[str, Any]:
    response = client.post(
        f"/v1/sessions/{session_id}/executions", json={"code": code, "wait": wait}
    )
    assert response.status_code == (200 if wait else 202), response.text
    return dict(response.json())


def read_until_closed(socket: ClientConnection) -> tuple[list[dict[str, Any]], int | None]:
    """Every message until the server closes the socket (bounded), and its close code."""
    messages: list[dict[str, Any]] = []
    for _ in range(1000):
        try:
            messages.append(json.loads(socket.recv(timeout=10)))
        except ConnectionClosed as closed:
            return messages, closed.rcvd.code if closed.rcvd is not None else None
    raise AssertionError(f"the socket stayed open: {messages[-3:]}")


def nothing_left(timeout: float, what: str) -> None:
    wait_until(lambda: not leftovers(), timeout, what)


def serves_a_job_and_a_session(client: httpx.Client) -> None:
    """A benign job and a benign session on this server, both correct; the session closed."""
    job = client.post("/v1/jobs", params={"wait": True}, json=QUICK_OK)
    assert job.status_code == 200, job.text
    assert job.json()["status"] == "succeeded", job.json()
    assert job.json()["stdout"] == "quick and done\n"
    session_id = new_session(client)
    result = execute(client, session_id, "y = 6 * 7\nprint(y)", wait=True)
    assert result["status"] == "ok", result
    assert result["result"]["stdout"] == "42\n"
    again = execute(client, session_id, "print(y + 1)", wait=True)
    assert again["result"]["stdout"] == "43\n", again
    closed = client.delete(f"/v1/sessions/{session_id}")
    assert closed.status_code == 200, closed.text
    assert closed.json()["status"] == "closed"


@pytest.fixture
def keys_sqlite(sqlite_url: str) -> Keys:
    return make_keys(sqlite_url)


class Servers:
    """Servers without warm pools (so "no box left" is exact), each killed at the test's end."""

    def __init__(self) -> None:
        self.started: list[ServerProcess] = []

    def start(self, url: str) -> ServerProcess:
        server = ServerProcess(url, *NO_POOLS)
        self.started.append(server)
        return server.start()


@pytest.fixture
def servers() -> Iterator[Servers]:
    servers = Servers()
    yield servers
    for server in servers.started:
        server.kill()
    # A failed test must not leave boxes for the next one: a last server reaps them.
    if servers.started and leftovers():
        ServerProcess(servers.started[0].url, *NO_POOLS).start().stop()


# -- crash: SIGKILL, then a new server on the same database ------------------------------------


def test_sigkill_then_restart_ends_records_and_reaps_boxes(
    database_url: str, keys: Keys, servers: Servers
) -> None:
    assert not leftovers(), f"boxes left by an earlier test: {leftovers()}"
    first = servers.start(database_url)
    with api(first, keys.a) as client:
        # Finished before the crash: their records must come through unchanged.
        finished_jobs = []
        for body, status in ((QUICK_OK, "succeeded"), (QUICK_FAIL, "failed")):
            response = client.post("/v1/jobs", params={"wait": True}, json=body)
            assert response.status_code == 200, response.text
            assert response.json()["status"] == status, response.json()
            finished_jobs.append(response.json()["id"])

        # Running at the crash.
        running_jobs = []
        for body in (SPIN, SPIN, SLEEP, SLEEP):
            response = client.post("/v1/jobs", json=body)
            assert response.status_code == 201, response.text
            running_jobs.append(response.json()["id"])

        busy = new_session(client)
        idle = new_session(client)
        tokened = client.post("/v1/sessions", json={"client_token": "agent-7"})
        assert tokened.status_code == 201, tokened.text
        tokened_id = tokened.json()["id"]
        finished_executions = [
            execute(client, busy, "x = 1\nprint('busy ready')", wait=True)["id"],
            execute(client, idle, "z = 2\nprint('idle ready')", wait=True)["id"],
        ]
        running_execution = execute(client, busy, "import time\ntime.sleep(60)", wait=False)["id"]
        queued_execution = execute(client, busy, "print('never runs')", wait=False)["id"]

        for job_id in running_jobs:
            wait_running_job(client, job_id)
        wait_running_execution(client, busy, running_execution)

    before = read_records(database_url, keys.a)
    assert before["counts"] == {"jobs": 6, "sessions": 3, "executions": 4}, before["counts"]
    for job_id in running_jobs:
        assert before["jobs"][job_id]["status"] == "running"
    assert before["executions"][running_execution]["status"] == "running"
    assert before["executions"][queued_execution]["status"] == "queued"
    assert {s["status"] for s in before["sessions"].values()} == {"open"}
    # A box per running job and per session (the finished jobs' boxes are being destroyed).
    wait_until(lambda: len(box_records()) == len(running_jobs) + 3, 10, "one box per live object")
    assert box_processes(), "no box process runs before the crash"

    # One more session is being created when the server dies: its record is written before
    # its box starts, so the crash leaves an open record and a box of any age.
    with api(first, keys.a) as creator, ThreadPoolExecutor(1) as pool:
        pending = pool.submit(creator.post, "/v1/sessions", json={})
        wait_until(
            lambda: len(box_records()) == len(running_jobs) + 4, 30, "the next session's box"
        )
        live_boxes = set(box_records())
        first.kill()
        with contextlib.suppress(httpx.HTTPError):
            pending.result(timeout=30)

    # SIGKILL runs no cleanup: the box records and cgroups are still there for the next server
    # to reap (the processes themselves may already be gone with --die-with-parent).
    assert set(box_records()) == live_boxes, leftovers()
    if probe().cgroups is not None:
        assert box_cgroups(), leftovers()
    crashed = read_records(database_url, keys.a)
    for job_id in running_jobs:
        assert crashed["jobs"][job_id]["status"] == "running", "changed without a server"

    second = servers.start(database_url)
    # Reaped at start-up (and nothing new: no warm pools).
    nothing_left(10, "the killed server's boxes reaped by the next one")
    assert not box_processes()
    assert not box_cgroups()
    assert not box_records()

    after = read_records(database_url, keys.a)

    # No record lost, none doubled; the one more session is the only new record.
    assert after["counts"] == {**before["counts"], "sessions": 4}, after["counts"]
    for name in ("job_ids", "session_ids", "execution_ids"):
        assert len(after[name]) == len(set(after[name])), f"duplicate ids in {name}"
    assert sorted(after["job_ids"]) == sorted(before["job_ids"])
    assert sorted(after["execution_ids"]) == sorted(before["execution_ids"])
    (half_made,) = set(after["session_ids"]) - set(before["session_ids"])
    assert after["counts"]["jobs"] == len(finished_jobs) + len(running_jobs)

    # Every job and execution is terminal; those that were running ended by the restart.
    for job_id in running_jobs:
        job = after["full_jobs"][job_id]
        assert (job["status"], job["reason"]) == ("error", "server_restart"), job
        assert job["finished_at"] is not None
        assert "restart" in (job["message"] or ""), job["message"]
        assert statuses(after["histories"][job_id]) == ["queued", "running", "error"]
        assert after["histories"][job_id][-1]["reason"] == "server_restart"
    for execution_id, expected in (
        (running_execution, ["queued", "running", "error"]),
        (queued_execution, ["queued", "error"]),
    ):
        execution = after["executions"][execution_id]
        assert (execution["status"], execution["reason"]) == ("error", "server_restart")
        assert execution["finished_at"] is not None
        assert statuses(after["histories"][execution_id]) == expected
        assert after["histories"][execution_id][-1]["reason"] == "server_restart"
    assert all(job["status"] in TERMINAL_JOB for job in after["jobs"].values())
    assert not any(e["status"] in ACTIVE for e in after["executions"].values())

    # Finished ones are exactly as they were.
    for job_id in finished_jobs:
        assert after["full_jobs"][job_id] == before["full_jobs"][job_id]
        assert after["histories"][job_id] == before["histories"][job_id]
        assert statuses(after["histories"][job_id])[-1] in ("succeeded", "failed")
    for execution_id in finished_executions:
        assert after["executions"][execution_id] == before["executions"][execution_id]
        assert after["histories"][execution_id] == before["histories"][execution_id]
        assert statuses(after["histories"][execution_id]) == ["queued", "running", "ok"]

    # Every session is closed by the restart, once.
    for session_id in (busy, idle, tokened_id, half_made):
        session = after["sessions"][session_id]
        assert (session["status"], session["reason"]) == ("closed", "server_restart"), session
        assert session["closed_at"] is not None
        assert statuses(after["histories"][session_id]) == ["open", "closed"]
        assert after["histories"][session_id][-1]["reason"] == "server_restart"

    # Terminal statuses appear once, at the end of every history.
    for object_id, history in after["histories"].items():
        ends = [s for s in statuses(history) if s in TERMINAL_JOB | {"ok", "closed"}]
        assert len(ends) == 1, (object_id, history)
        assert statuses(history)[-1] == ends[0], (object_id, history)

    with api(second, keys.a) as client:
        # The API tells the same story, and nothing about the old objects hangs or revives.
        for job_id in running_jobs:
            view = client.get(f"/v1/jobs/{job_id}").json()
            assert (view["status"], view["reason"]) == ("error", "server_restart"), view
            assert statuses(view["history"]) == ["queued", "running", "error"], view
        view = client.get(f"/v1/sessions/{busy}").json()
        assert (view["status"], view["reason"]) == ("closed", "server_restart"), view
        refused = client.post(f"/v1/sessions/{idle}/executions", json={"code": "print(z)"})
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"]["reason"] == "server_restart"
        listed = client.get("/v1/jobs").json()["jobs"]
        assert len(listed) == len({job["id"] for job in listed}) == 6

        # A client token of a session the crash closed gets a new session, once.
        again = client.post("/v1/sessions", json={"client_token": "agent-7"})
        assert again.status_code == 201, again.text
        assert again.json()["id"] != tokened_id
        same = client.post("/v1/sessions", json={"client_token": "agent-7"})
        assert (same.status_code, same.json()["id"]) == (200, again.json()["id"]), same.text
        assert client.delete(f"/v1/sessions/{again.json()['id']}").status_code == 200

        serves_a_job_and_a_session(client)
    nothing_left(5, "the new server's job and session boxes destroyed")
    final = read_records(database_url, keys.a)
    assert final["counts"] == {"jobs": 7, "sessions": 6, "executions": 6}, final["counts"]

    code = second.stop()
    assert code in (0, -signal.SIGTERM), second.log()[-3000:]
    for server in (first, second):
        assert CANARY not in server.log(), "the canary reached the server log"
    assert not leftovers()


# -- graceful: SIGTERM ------------------------------------------------------------------------


def test_sigterm_ends_running_work_records_it_and_leaves_no_box(
    database_url: str, keys: Keys, servers: Servers
) -> None:
    assert not leftovers(), f"boxes left by an earlier test: {leftovers()}"
    server = servers.start(database_url)
    with api(server, keys.a) as client:
        jobs = [client.post("/v1/jobs", json=body).json()["id"] for body in (SLEEP, SPIN)]
        session_id = new_session(client)
        execution_id = execute(client, session_id, "import time\ntime.sleep(60)", wait=False)["id"]
        for job_id in jobs:
            wait_running_job(client, job_id)
        wait_running_execution(client, session_id, execution_id)
    assert box_processes()

    # A client watching the cell keeps its socket open through the shutdown.
    path = f"/v1/sessions/{session_id}/executions/{execution_id}/stream"
    watcher = connect(f"ws://127.0.0.1:{server.port}{path}", additional_headers=auth(keys.a))

    # stop() waits 30 s, far past the server's grace (5 s for requests, 10 s for jobs), then
    # SIGKILLs: a server that needed that shows as -9.
    code = server.stop(timeout=30)
    with watcher:
        watched, close_code = read_until_closed(watcher)
    # Closed as a server going away (1001) or restarting (1012), not dropped (1006).
    assert close_code in (1001, 1012), (close_code, watched)
    assert server.process is not None
    assert server.process.poll() is not None
    assert code != -signal.SIGKILL, f"SIGTERM did not end the server: {server.log()[-3000:]}"
    assert code in (0, -signal.SIGTERM), (code, server.log()[-3000:])
    assert "Application shutdown complete" in server.log()

    # The server destroyed its own boxes: nobody reaps after it here.
    nothing_left(2, "boxes left after a graceful shutdown")

    records = read_records(database_url, keys.a)
    for job_id in jobs:
        job = records["full_jobs"][job_id]
        assert job["status"] in TERMINAL_JOB, job
        assert (job["status"], job["reason"]) == ("error", "shutdown"), job
        assert statuses(records["histories"][job_id]) == ["queued", "running", "error"]
    # The cell's session was closed under it: the execution is cancelled, the session closed
    # by the engine (not left for the next process to reconcile).
    execution = records["executions"][execution_id]
    assert execution["status"] == "cancelled", execution
    assert statuses(records["histories"][execution_id]) == ["queued", "running", "cancelled"]
    session = records["sessions"][session_id]
    assert (session["status"], session["reason"]) == ("closed", "shutdown"), session
    assert statuses(records["histories"][session_id]) == ["open", "closed"]
    assert CANARY not in server.log()

    # The next server has nothing to reconcile.
    again = servers.start(database_url)
    assert "ended what a previous server process left running" not in again.log()
    assert read_records(database_url, keys.a)["histories"] == records["histories"]
    again.stop()
    assert not leftovers()


def test_streams_of_work_from_an_earlier_server_process_come_from_the_record(
    sqlite_url: str, keys_sqlite: Keys, servers: Servers
) -> None:
    """A new process holds nothing of the old one's objects: their event streams must be
    answered from the records (a result line, an ``end`` event), not break mid-response."""
    first = servers.start(sqlite_url)
    with api(first, keys_sqlite.a) as client:
        job = client.post("/v1/jobs", params={"wait": True}, json=QUICK_OK).json()
        assert job["status"] == "succeeded", job
        running = client.post("/v1/jobs", json=SLEEP).json()["id"]
        session_id = new_session(client)
        done = execute(client, session_id, "print('done before')", wait=True)["id"]
        cell = execute(client, session_id, "import time\ntime.sleep(60)", wait=False)["id"]
        wait_running_job(client, running)
        wait_running_execution(client, session_id, cell)
    first.kill()
    second = servers.start(sqlite_url)
    problems: list[str] = []  # every stream is tried; all that went wrong is reported at once
    with api(second, keys_sqlite.a) as client:
        for execution_id, status in ((cell, "error"), (done, "ok")):
            path = f"/v1/sessions/{session_id}/executions/{execution_id}"
            response = client.get(f"{path}/events", timeout=10)
            assert response.status_code == 200, response.text
            last = json.loads(response.text.splitlines()[-1])
            assert last["type"] == "end", response.text
            if (last.get("result") or {}).get("status") != status:
                problems.append(f"NDJSON end of the {status} execution: {last}")
            stream_url = f"ws://127.0.0.1:{second.port}{path}/stream"
            with connect(stream_url, additional_headers=auth(keys_sqlite.a)) as socket:
                message = json.loads(socket.recv(timeout=10))
            assert message["type"] == "end", message
            assert message["execution_id"] == execution_id
            if (message.get("result") or {}).get("status") != status:
                problems.append(f"WebSocket end of the {status} execution: {message}")
        refused = client.post(f"/v1/sessions/{session_id}/executions", json={"code": "1"})
        assert refused.status_code == 409, refused.text
        for job_id, status in ((running, "error"), (job["id"], "succeeded")):
            try:
                response = client.get(f"/v1/jobs/{job_id}/events", timeout=10)
            except httpx.HTTPError as exc:
                problems.append(f"GET /v1/jobs/<{status} job>/events broke off: {exc!r}")
                continue
            lines = response.text.splitlines()
            last = json.loads(lines[-1]) if lines else {}
            if response.status_code != 200 or last.get("type") != "result":
                problems.append(f"GET /v1/jobs/<{status} job>/events: {response.text[-500:]}")
            elif last["result"]["status"] != status:
                problems.append(f"GET /v1/jobs/<{status} job>/events: {last}")
    second.stop()
    nothing_left(5, "boxes left")
    assert not problems, "\n".join(problems)


def test_sigterm_exit_status_is_zero(sqlite_url: str, servers: Servers) -> None:
    """`execbox serve` stopped by SIGTERM shuts down cleanly and says so with status 0."""
    server = servers.start(sqlite_url)
    code = server.stop(timeout=30)
    assert "Application shutdown complete" in server.log()
    assert code == 0, f"exit status {code} after a clean shutdown on SIGTERM"
