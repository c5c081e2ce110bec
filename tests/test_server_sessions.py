"""The server's session API end to end: real kernels in boxes, a real database (SQLite and
PostgreSQL), the app in process through Starlette's TestClient (HTTP and WebSockets), and one
`execbox serve` subprocess for the request log.

Each test starts the sessions it needs and drives as much as it can through each of them:
a kernel is the slow part.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import httpx
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketTestSession
from websockets.sync.client import connect

from execbox.engine import Retention
from execbox.server import ServerSettings, create_app
from execbox.server.jupyter.routes import kernel_id_of
from server_support import (
    Keys,
    ServerProcess,
    as_text,
    auth,
    capture,
    db_rows,
    make_keys,
    wait_until,
)

GIB = 1 << 30
ACTIVE = ("queued", "running")
T = TypeVar("T")


# -- helpers ----------------------------------------------------------------------------------


def assert_error(response: httpx.Response, status: int, kind: str | None = None) -> dict[str, Any]:
    """The JSON error shape; returns the error object."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json"), response.headers
    error: dict[str, Any] = response.json()["error"]
    assert isinstance(error["message"], str)
    assert error["message"]
    if kind is not None:
        assert error["type"] == kind, error
    return error


def new_session(api: TestClient, key: str, **body: Any) -> dict[str, Any]:
    response = api.post("/v1/sessions", json=body, headers=auth(key))
    assert response.status_code == 201, response.text
    view: dict[str, Any] = response.json()
    assert view["status"] == "idle", view
    return view


def execute(api: TestClient, key: str, session_id: str, code: str, **extra: Any) -> dict[str, Any]:
    """Run code with ``wait``: the stored execution, result included."""
    response = api.post(
        f"/v1/sessions/{session_id}/executions",
        json={"code": code, "wait": True, **extra},
        headers=auth(key),
    )
    assert response.status_code == 200, response.text
    view: dict[str, Any] = response.json()
    assert view["status"] not in ACTIVE, view
    return view


def submit(api: TestClient, key: str, session_id: str, code: str) -> str:
    """Queue code without waiting: 202 and the execution's id."""
    response = api.post(
        f"/v1/sessions/{session_id}/executions", json={"code": code}, headers=auth(key)
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert (body["session_id"], body["status"]) == (session_id, "queued"), body
    return str(body["id"])


def ended(api: TestClient, key: str, session_id: str, execution_id: str) -> dict[str, Any]:
    url = f"/v1/sessions/{session_id}/executions/{execution_id}"

    def check() -> dict[str, Any] | None:
        view = api.get(url, headers=auth(key)).json()
        return view if view["status"] not in ACTIVE else None

    return wait_until(check, 60, f"execution {execution_id} to end")


def until(ws: WebSocketTestSession, done: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    """Messages up to and including the first for which ``done`` holds (at most 500)."""
    seen: list[dict[str, Any]] = []
    for _ in range(500):
        message = ws.receive_json()
        seen.append(message)
        if done(message):
            return seen
    raise AssertionError(f"no such message among {seen[-10:]}")


def of_type(kind: str) -> Callable[[dict[str, Any]], bool]:
    return lambda message: message["type"] == kind


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# -- lifecycle, executions, records -----------------------------------------------------------


def test_session_lifecycle_executions_and_records(
    api: TestClient, keys: Keys, database_url: str
) -> None:
    seen = capture(api)
    secret = f"hush-{secrets.token_hex(12)}"
    token = f"agent-{secrets.token_hex(4)}"
    submitted: dict[str, str] = {}  # execution id -> code

    session = new_session(
        api,
        keys.a,
        limits={"memory": "64G", "cpus": 8, "pids": 100_000},
        env={"TOKEN": secret},
        client_token=token,
    )
    sid = session["id"]
    assert sid.startswith("ses_")
    assert session["client_token"] == token
    assert session["reason"] is None
    limits = session["spec"]["limits"]
    assert (limits["memory"], limits["cpus"], limits["pids"]) == (2 * GIB, 2.0, 512)
    assert session["spec"]["env"] == {"TOKEN": "***"}

    # get-or-create: the open session of the token, 200 and not a new one
    again = api.post("/v1/sessions", json={"client_token": token}, headers=auth(keys.a))
    assert (again.status_code, again.json()["id"]) == (200, sid)

    first = execute(api, keys.a, sid, "x = 20\nprint('hi')\nx * 2 + 2")
    submitted[first["id"]] = first["code"]
    result = first["result"]
    assert (first["status"], result["status"]) == ("ok", "ok"), result
    assert (result["text"], result["stdout"], result["stderr"]) == ("hi\n42\n", "hi\n", "")
    assert result["outputs"] == [{"kind": "result", "data": {"text/plain": "42"}, "metadata": {}}]
    assert result["error"] is None
    assert first["usage"]["wall_seconds"] > 0

    state = execute(api, keys.a, sid, "x + 1")
    submitted[state["id"]] = state["code"]
    assert state["result"]["text"] == "21\n"

    env = execute(
        api,
        keys.a,
        sid,
        "import hashlib, os\nhashlib.sha256(os.environ['TOKEN'].encode()).hexdigest()",
    )
    submitted[env["id"]] = env["code"]
    assert env["result"]["outputs"][0]["data"]["text/plain"] == repr(sha(secret))

    failing = execute(api, keys.a, sid, "print('before')\nraise ValueError('bad thing')")
    submitted[failing["id"]] = failing["code"]
    assert failing["status"] == "error"
    error = failing["result"]["error"]
    assert (error["ename"], error["evalue"]) == ("ValueError", "bad thing")
    assert error["traceback"]
    assert failing["result"]["stdout"] == "before\n"

    # The stored execution: the same result, and its history in order.
    stored = api.get(f"/v1/sessions/{sid}/executions/{first['id']}", headers=auth(keys.a))
    assert stored.status_code == 200
    stored_view = stored.json()
    history = stored_view.pop("history")
    assert stored_view == first
    assert [change["status"] for change in history] == ["queued", "running", "ok"]
    times = [datetime.fromisoformat(change["at"]) for change in history]
    assert times == sorted(times)
    assert times[-1] == datetime.fromisoformat(first["finished_at"])
    failed_history = api.get(
        f"/v1/sessions/{sid}/executions/{failing['id']}", headers=auth(keys.a)
    ).json()["history"]
    assert [change["status"] for change in failed_history] == ["queued", "running", "error"]

    # The events of a finished execution, as NDJSON: its stream, then the end with the result.
    events = api.get(f"/v1/sessions/{sid}/executions/{first['id']}/events", headers=auth(keys.a))
    assert events.status_code == 200
    lines = [json.loads(line) for line in events.text.splitlines() if line]
    assert lines[-1]["type"] == "end", lines
    assert lines[-1]["result"]["text"] == "hi\n42\n"

    # input() over HTTP: answered once the execution waits for it.
    asking = submit(api, keys.a, sid, "name = input('who? ')\nprint('hello', name)")
    submitted[asking] = "name = input('who? ')\nprint('hello', name)"
    url = f"/v1/sessions/{sid}/executions/{asking}/input"
    wait_until(
        lambda: api.post(url, json={"value": "bob"}, headers=auth(keys.a)).status_code == 200,
        60,
        "the execution to wait for input",
    )
    answered = ended(api, keys.a, sid, asking)
    assert (answered["status"], answered["result"]["stdout"]) == ("ok", "hello bob\n")
    assert_error(api.post(url, json={"value": "late"}, headers=auth(keys.a)), 409)

    # interrupt a long cell submitted without wait; the state survives it
    sleeper_code = "import time\nopen('started', 'w').close()\ntime.sleep(60)"
    sleeper = submit(api, keys.a, sid, sleeper_code)
    submitted[sleeper] = sleeper_code
    wait_until(
        lambda: (
            api.get(f"/v1/sessions/{sid}/files/started", headers=auth(keys.a)).status_code == 200
        ),
        60,
        "the cell to start",
    )
    busy = api.get(f"/v1/sessions/{sid}", headers=auth(keys.a)).json()
    assert busy["status"] == "busy", busy
    interrupted = api.post(f"/v1/sessions/{sid}/interrupt", headers=auth(keys.a))
    assert interrupted.status_code == 200, interrupted.text
    assert ended(api, keys.a, sid, sleeper)["status"] == "interrupted"
    kept = execute(api, keys.a, sid, "x")
    submitted[kept["id"]] = "x"
    assert kept["result"]["text"] == "20\n"

    # list executions (newest first) and sessions
    listing = api.get(f"/v1/sessions/{sid}/executions", headers=auth(keys.a))
    assert listing.status_code == 200
    executions = listing.json()["executions"]
    assert {e["id"] for e in executions} == set(submitted)
    assert executions[0]["id"] == kept["id"]
    assert executions[-1]["id"] == first["id"]
    assert all("result" not in e for e in executions)
    assert (
        api.get(f"/v1/sessions/{sid}/executions", params={"limit": 2}, headers=auth(keys.a)).json()[
            "executions"
        ]
        == executions[:2]
    )
    sessions = api.get("/v1/sessions", headers=auth(keys.a)).json()["sessions"]
    assert [s["id"] for s in sessions] == [sid]
    assert api.get("/v1/sessions", headers=auth(keys.b)).json()["sessions"] == []
    assert_error(api.get(f"/v1/sessions/{sid}", headers=auth(keys.b)), 404, "SessionNotFound")

    # restart: the state is gone, the files stay
    restarted = api.post(f"/v1/sessions/{sid}/restart", headers=auth(keys.a))
    assert restarted.status_code == 200, restarted.text
    lost = execute(api, keys.a, sid, "x")
    submitted[lost["id"]] = "x"
    assert (lost["status"], lost["result"]["error"]["ename"]) == ("error", "NameError")
    assert api.get(f"/v1/sessions/{sid}/files/started", headers=auth(keys.a)).status_code == 200

    # delete: closed, reason closed; then nothing runs
    deleted = api.delete(f"/v1/sessions/{sid}", headers=auth(keys.a))
    assert deleted.status_code == 200, deleted.text
    assert (deleted.json()["status"], deleted.json()["reason"]) == ("closed", "closed")
    view = api.get(f"/v1/sessions/{sid}", headers=auth(keys.a)).json()
    assert (view["status"], view["reason"]) == ("closed", "closed")
    assert view["closed_at"] is not None
    refused = api.post(
        f"/v1/sessions/{sid}/executions", json={"code": "1", "wait": True}, headers=auth(keys.a)
    )
    assert assert_error(refused, 409, "SessionClosed")["reason"] == "closed"
    assert_error(api.post(f"/v1/sessions/{sid}/interrupt", headers=auth(keys.a)), 409)
    assert_error(api.post(f"/v1/sessions/{sid}/restart", headers=auth(keys.a)), 409)

    # the token now gets a new session
    renewed = api.post("/v1/sessions", json={"client_token": token}, headers=auth(keys.a))
    assert renewed.status_code == 201, renewed.text
    assert renewed.json()["id"] != sid
    api.delete(f"/v1/sessions/{renewed.json()['id']}", headers=auth(keys.a))

    # Records: every execution with its code and a terminal status; the secret nowhere.
    rows = db_rows(database_url)
    recorded = {row["id"]: row for row in rows["executions"] if row["session_id"] == sid}
    assert set(recorded) == set(submitted)
    for execution_id, code in submitted.items():
        row = recorded[execution_id]
        assert row["code"] == code
        assert row["status"] not in ACTIVE, row
        assert row["finished_at"] is not None
        assert row["result"]["status"] == row["status"]
    assert recorded[sleeper]["status"] == "interrupted"
    assert recorded[failing["id"]]["status"] == "error"
    statuses = {row["id"]: row["status"] for row in rows["sessions"]}
    assert statuses == {sid: "closed", renewed.json()["id"]: "closed"}
    assert seen
    assert not [body for body in seen if secret.encode() in body]
    dump = as_text(rows)
    assert sid in dump
    assert secret not in dump
    assert keys.a.rsplit("_", 1)[1] not in dump  # keys are stored hashed


def test_session_requests_refused_with_json_errors(api: TestClient, keys: Keys) -> None:
    denied = api.post("/v1/sessions", json={"network": True}, headers=auth(keys.a))
    assert "network" in assert_error(denied, 403, "PermissionDenied")["message"]
    for bad in ("-1", "lots"):
        response = api.post("/v1/sessions", json={"limits": {"memory": bad}}, headers=auth(keys.a))
        message = assert_error(response, 400, "InvalidLimits")["message"]
        assert "memory" in message
        assert bad in message
    unknown = api.post("/v1/sessions", json={"kernal": "python3"}, headers=auth(keys.a))
    error = assert_error(unknown, 422, "ValidationError")
    assert "kernal" in error["message"]
    assert error["details"][0]["loc"] == ["body", "kernal"]
    for raw in (b"not json{", b"[1]"):
        response = api.post(
            "/v1/sessions",
            content=raw,
            headers={**auth(keys.a), "content-type": "application/json"},
        )
        assert 400 <= response.status_code < 500, response.text
        assert_error(response, response.status_code)
    assert_error(api.get("/v1/sessions/ses_nope", headers=auth(keys.a)), 404, "SessionNotFound")
    assert_error(api.post("/v1/sessions", json={}), 401, "AuthenticationError")
    assert_error(api.post("/v1/sessions", json={}, headers=auth(keys.revoked)), 401)
    assert api.get("/v1/sessions", headers=auth(keys.a)).json()["sessions"] == []

    session = new_session(api, keys.a)
    sid = session["id"]
    assert session["spec"]["limits"]["memory"] < 2 * GIB  # the default, not the maximum
    executions = f"/v1/sessions/{sid}/executions"
    bad_execution = api.post(executions, json={"code": "1", "wiat": True}, headers=auth(keys.a))
    assert "wiat" in assert_error(bad_execution, 422, "ValidationError")["message"]
    assert_error(api.post(executions, json={"code": None}, headers=auth(keys.a)), 422)
    assert_error(api.post(executions, json={"code": "1", "timeout": -1}, headers=auth(keys.a)), 400)
    missing = api.get(f"{executions}/exe_nope", headers=auth(keys.a))
    assert_error(missing, 404, "SessionNotFound")
    timed_out = execute(api, keys.a, sid, "import time\ntime.sleep(30)", timeout=0.5)
    assert timed_out["status"] == "timeout"
    assert execute(api, keys.a, sid, "1 + 1")["result"]["text"] == "2\n"


def test_idle_timeout_closes_the_session(api: TestClient, keys: Keys) -> None:
    sid = new_session(api, keys.a, idle_timeout=1)["id"]

    def closed() -> dict[str, Any] | None:
        view = api.get(f"/v1/sessions/{sid}", headers=auth(keys.a)).json()
        return view if view["status"] == "closed" else None

    view = wait_until(closed, 30, "the idle session to close")
    assert view["reason"] == "idle_timeout"
    assert view["spec"]["idle_timeout"] == 1
    refused = api.post(f"/v1/sessions/{sid}/executions", json={"code": "1"}, headers=auth(keys.a))
    assert assert_error(refused, 409, "SessionClosed")["reason"] == "idle_timeout"
    listed = api.get("/v1/sessions", params={"status": "closed"}, headers=auth(keys.a)).json()
    assert [s["id"] for s in listed["sessions"]] == [sid]
    assert api.get("/v1/sessions", params={"status": "open"}, headers=auth(keys.a)).json() == {
        "sessions": []
    }


# -- files and images -------------------------------------------------------------------------


def test_files_round_trip_and_plots(api: TestClient, keys: Keys) -> None:
    sid = new_session(api, keys.a)["id"]
    files = f"/v1/sessions/{sid}/files"
    blob = bytes(range(256)) * 8 + b"\x00\xff"

    put = api.put(f"{files}/data/blob.bin", content=blob, headers=auth(keys.a))
    assert (put.status_code, put.json()) == (200, {"path": "data/blob.bin", "size": len(blob)})
    got = api.get(f"{files}/data/blob.bin", headers=auth(keys.a))
    assert got.status_code == 200
    assert got.content == blob
    assert got.headers["content-type"] == "application/octet-stream"

    uploaded = api.post(
        files,
        files=[
            ("files", ("in/a.txt", b"alpha\n", "text/plain")),
            ("files", ("in/b.bin", b"\x00\x01\xfe", "application/octet-stream")),
        ],
        headers=auth(keys.a),
    )
    assert uploaded.status_code == 200, uploaded.text
    assert uploaded.json() == {"written": ["in/a.txt", "in/b.bin"]}
    root = api.get(files, headers=auth(keys.a)).json()
    assert root["path"] == ""
    assert {(e["name"], e["kind"]) for e in root["entries"]} == {("data", "dir"), ("in", "dir")}
    inner = api.get(files, params={"path": "in"}, headers=auth(keys.a)).json()["entries"]
    assert {(e["name"], e["kind"], e["size"]) for e in inner} == {
        ("a.txt", "file", 6),
        ("b.bin", "file", 3),
    }

    # Code sees the uploads, and what it writes can be downloaded.
    code = (
        "data = open('data/blob.bin', 'rb').read() + open('in/b.bin', 'rb').read()\n"
        "open('out.bin', 'wb').write(data[::-1])\n"
        "open('in/a.txt').read().strip()"
    )
    made = execute(api, keys.a, sid, code)
    assert made["result"]["text"] == "'alpha'\n", made
    out = api.get(f"{files}/out.bin", headers=auth(keys.a))
    assert (out.status_code, out.content) == (200, (blob + b"\x00\x01\xfe")[::-1])

    deleted = api.delete(f"{files}/in/a.txt", headers=auth(keys.a))
    assert (deleted.status_code, deleted.json()) == (200, {"path": "in/a.txt", "deleted": True})
    inner = api.get(files, params={"path": "in"}, headers=auth(keys.a)).json()["entries"]
    assert [e["name"] for e in inner] == ["b.bin"]
    gone = execute(api, keys.a, sid, "import os\nos.path.exists('in/a.txt')")
    assert gone["result"]["text"] == "False\n"

    # Paths that leave the workspace are refused.
    escape = api.put(f"{files}/..%2Fescape.txt", content=b"x", headers=auth(keys.a))
    assert ".." in assert_error(escape, 400)["message"]
    assert_error(api.get(files, params={"path": "../"}, headers=auth(keys.a)), 400)
    assert_error(api.get(f"{files}/in%2F..%2F..%2Fetc%2Fpasswd", headers=auth(keys.a)), 400)

    # A plot arrives as a PNG among the outputs.
    plot = execute(
        api,
        keys.a,
        sid,
        "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.title('t')\nplt.show()",
    )
    assert plot["status"] == "ok", plot
    images = [o["data"]["image/png"] for o in plot["result"]["outputs"] if "image/png" in o["data"]]
    assert len(images) == 1, plot["result"]["outputs"]
    assert base64.b64decode(images[0]).startswith(b"\x89PNG\r\n\x1a\n")

    # Another tenant reaches none of it.
    assert_error(api.get(f"{files}/out.bin", headers=auth(keys.b)), 404, "SessionNotFound")


def test_missing_file_is_a_client_error(api: TestClient, keys: Keys) -> None:
    """Asking for a file that is not there is the caller's mistake (404), not the box's."""
    sid = new_session(api, keys.a)["id"]
    files = f"/v1/sessions/{sid}/files"
    answers = {
        "GET file": api.get(f"{files}/nope.txt", headers=auth(keys.a)),
        "GET dir": api.get(files, params={"path": "no/such/dir"}, headers=auth(keys.a)),
        "DELETE file": api.delete(f"{files}/nope.txt", headers=auth(keys.a)),
    }
    wrong = {
        what: (response.status_code, response.text)
        for what, response in answers.items()
        if not 400 <= response.status_code < 500
    }
    assert not wrong, wrong
    for response in answers.values():
        assert_error(response, response.status_code)
    # The session is none the worse for it.
    assert execute(api, keys.a, sid, "1 + 1")["result"]["text"] == "2\n"


def test_an_open_socket_holds_an_idle_session(api: TestClient, keys: Keys) -> None:
    """A connected client is activity, as in Jupyter: neither the session socket nor a
    Jupyter channels socket lets an idle session close; idle time counts once they leave."""
    sid = new_session(api, keys.a, idle_timeout=1)["id"]
    kernel = kernel_id_of(sid)

    def status() -> str:
        return str(api.get(f"/v1/sessions/{sid}", headers=auth(keys.a)).json()["status"])

    with api.websocket_connect(f"/v1/sessions/{sid}/stream", headers=auth(keys.a)):
        time.sleep(2.5)  # the idle timeout twice over, and several reaper rounds
        assert status() == "idle"
        with api.websocket_connect(f"/api/kernels/{kernel}/channels", headers=auth(keys.a)):
            pass
    with api.websocket_connect(f"/api/kernels/{kernel}/channels", headers=auth(keys.a)):
        time.sleep(2.5)
        assert status() == "idle"
    left = time.monotonic()
    view = wait_until(lambda: status() == "closed" or None, 30, "the idle session to close")
    assert view
    assert time.monotonic() - left >= 0.9  # counted from the last socket's leaving
    reason = api.get(f"/v1/sessions/{sid}", headers=auth(keys.a)).json()["reason"]
    assert reason == "idle_timeout"


# -- WebSockets -------------------------------------------------------------------------------


def test_websocket_execute_input_interrupt_errors_and_replay(api: TestClient, keys: Keys) -> None:
    sid = new_session(api, keys.a)["id"]
    stream = f"/v1/sessions/{sid}/stream"
    with api.websocket_connect(stream, headers=auth(keys.a)) as ws:
        ws.send_json(
            {
                "type": "execute",
                "code": "import time\nprint('a', flush=True)\ntime.sleep(0.2)\nprint('b')\n41 + 1",
                "ref": "r1",
            }
        )
        messages = until(ws, of_type("end"))
        accepted = messages[0]
        assert (accepted["type"], accepted["ref"]) == ("accepted", "r1"), messages
        eid = accepted["execution_id"]
        assert all(m["execution_id"] == eid for m in messages)
        kinds = [m["type"] for m in messages]
        assert "stream" in kinds
        assert kinds.index("stream") < kinds.index("result") < kinds.index("end")
        texts = "".join(m["text"] for m in messages if m["type"] == "stream")
        assert texts == "a\nb\n"
        end = messages[-1]["result"]
        assert (end["id"], end["status"], end["text"]) == (eid, "ok", "a\nb\n42\n")

        # input(): the request arrives, the answer is sent back and echoed
        ws.send_json({"type": "execute", "code": "x = input('name? ')\nprint('got', x)"})
        messages = until(ws, of_type("input_request"))
        request = messages[-1]
        assert request["prompt"] == "name? "
        ws.send_json({"type": "input", "execution_id": request["execution_id"], "value": "bob"})
        messages = until(ws, of_type("end"))
        assert messages[-1]["result"]["stdout"] == "got bob\n"

        # interrupt over the socket, once the cell is surely running
        ws.send_json(
            {"type": "execute", "code": "import time\nprint('started', flush=True)\ntime.sleep(60)"}
        )
        until(ws, lambda m: m["type"] == "stream" and "started" in m["text"])
        ws.send_json({"type": "interrupt"})
        messages = until(ws, of_type("end"))
        assert messages[-1]["result"]["status"] == "interrupted"
        assert messages[-1]["result"]["error"]["ename"] == "KeyboardInterrupt"

        # malformed messages: an error each, and the socket goes on
        ws.send_text("this is not json")
        assert ws.receive_json()["type"] == "error"
        ws.send_json([1, 2])
        assert ws.receive_json()["type"] == "error"
        ws.send_json({"type": "frobnicate", "ref": 9})
        error = ws.receive_json()
        assert (error["type"], error["ref"], error["error"]["type"]) == ("error", 9, "InvalidSpec")
        ws.send_json({"type": "execute", "ref": "no-code"})
        error = ws.receive_json()
        assert (error["type"], error["ref"]) == ("error", "no-code")
        ws.send_json({"type": "input", "execution_id": eid, "value": "nobody asked"})
        assert ws.receive_json()["type"] == "error"

        # two back to back: both accepted, both end, in order
        ws.send_json({"type": "execute", "code": "print(1)", "ref": 1})
        ws.send_json({"type": "execute", "code": "print(2)", "ref": 2})
        messages = until(ws, lambda m: m["type"] == "end" and m["result"]["stdout"] == "2\n")
        accepted = [m for m in messages if m["type"] == "accepted"]
        assert [m["ref"] for m in accepted] == [1, 2]
        ends = [m for m in messages if m["type"] == "end"]
        assert [e["result"]["stdout"] for e in ends] == ["1\n", "2\n"]
        assert [e["execution_id"] for e in ends] == [m["execution_id"] for m in accepted]
        last = ends[-1]["execution_id"]
        assert ends[0]["result"]["execution_count"] < ends[1]["result"]["execution_count"]

    # The stream of one finished execution replays it.
    with api.websocket_connect(
        f"/v1/sessions/{sid}/executions/{last}/stream", headers=auth(keys.a)
    ) as ws:
        messages = until(ws, of_type("end"))
        assert messages[-1]["result"]["stdout"] == "2\n"
        assert "".join(m["text"] for m in messages if m["type"] == "stream") == "2\n"

    # Everything it ran is recorded.
    recorded = api.get(f"/v1/sessions/{sid}/executions", headers=auth(keys.a)).json()
    statuses = [e["status"] for e in recorded["executions"]][::-1]
    assert statuses == ["ok", "ok", "interrupted", "ok", "ok"]


# -- quotas -----------------------------------------------------------------------------------


def test_session_quota_frees_when_a_session_closes(
    database_url: str, fresh_app: Callable[..., TestClient]
) -> None:
    keys = make_keys(database_url, max_jobs=1, max_sessions=1)
    api = fresh_app()
    first = new_session(api, keys.a, client_token="mine")
    refused = api.post("/v1/sessions", json={}, headers=auth(keys.a))
    assert_error(refused, 429, "QuotaExceeded")
    # get-or-create of the open one is no new session
    same = api.post("/v1/sessions", json={"client_token": "mine"}, headers=auth(keys.a))
    assert (same.status_code, same.json()["id"]) == (200, first["id"])
    assert len(api.get("/v1/sessions", headers=auth(keys.a)).json()["sessions"]) == 1

    api.delete(f"/v1/sessions/{first['id']}", headers=auth(keys.a))
    second = new_session(api, keys.a)
    assert execute(api, keys.a, second["id"], "6 * 7")["result"]["text"] == "42\n"


# -- the request log of a real server ---------------------------------------------------------


def test_request_log_lines_without_secrets(sqlite_url: str) -> None:
    keys = make_keys(sqlite_url)
    secret = f"hush-{secrets.token_hex(12)}"
    server = ServerProcess(sqlite_url, "--pool-size", "0", "--session-pool-size", "0")
    with server, httpx.Client(base_url=server.base, timeout=60) as http:
        created = http.post("/v1/sessions", json={"env": {"TOKEN": secret}}, headers=auth(keys.a))
        assert created.status_code == 201, created.text
        sid = created.json()["id"]
        code = "import hashlib, os\nhashlib.sha256(os.environ['TOKEN'].encode()).hexdigest()"
        ran = http.post(
            f"/v1/sessions/{sid}/executions",
            json={"code": code, "wait": True},
            headers=auth(keys.a),
        )
        assert ran.json()["result"]["text"] == f"{sha(secret)!r}\n"
        ws_url = f"ws://127.0.0.1:{server.port}/v1/sessions/{sid}/stream"
        with connect(ws_url, additional_headers=auth(keys.a), open_timeout=30) as ws:
            ws.send(json.dumps({"type": "execute", "code": "print('over the socket')"}))
            for _ in range(100):
                message = json.loads(ws.recv(timeout=60))
                if message["type"] == "end":
                    break
            assert message["type"] == "end"
            assert message["result"]["stdout"] == "over the socket\n"
        assert http.get("/v1/jobs", headers=auth(keys.a)).status_code == 200
        assert http.get("/v1/sessions/ses_nope", headers=auth(keys.a)).status_code == 404
        assert http.get("/v1/jobs", headers=auth(keys.revoked)).status_code == 401
        assert http.get("/v1/jobs", headers={"X-API-Key": keys.b}).status_code == 200
        assert http.delete(f"/v1/sessions/{sid}", headers=auth(keys.a)).status_code == 200
    log = server.log()
    records = []
    for line in log.splitlines():
        if line.startswith("{"):
            records.append(json.loads(line))
    requests = [r for r in records if r.get("message") == "request"]

    def logged(method: str, path: str) -> dict[str, Any]:
        found = [r for r in requests if (r["method"], r["path"]) == (method, path)]
        assert found, (method, path, requests)
        return found[0]

    assert (logged("POST", "/v1/sessions")["status"], logged("POST", "/v1/sessions")["tenant"]) == (
        201,
        "tenant-a",
    )
    execution = logged("POST", f"/v1/sessions/{sid}/executions")
    assert (execution["status"], execution["tenant"]) == (200, "tenant-a")
    assert execution["key_id"] == keys.a_key_id
    assert logged("GET", "/v1/sessions/ses_nope")["status"] == 404
    jobs = sorted((r["status"], str(r["tenant"])) for r in requests if r["path"] == "/v1/jobs")
    assert jobs == [(200, "tenant-a"), (200, "tenant-b"), (401, "None")]
    assert logged("DELETE", f"/v1/sessions/{sid}")["status"] == 200
    socket = logged("WEBSOCKET", f"/v1/sessions/{sid}/stream")
    assert (socket["status"], socket["tenant"]) == (101, "tenant-a")
    for key in (keys.a, keys.b, keys.revoked):
        assert key.rsplit("_", 1)[1] not in log
    assert secret not in log
    assert sha(secret) not in log


def test_closed_sessions_are_not_kept_in_memory_beyond_the_retention(sqlite_url: str) -> None:
    """The records are in the database: the server keeps few finished objects in memory, so a
    key that cycles sessions with big outputs cannot grow the server without bound."""
    keys = make_keys(sqlite_url)
    settings = ServerSettings(
        database_url=sqlite_url,
        pool_size=0,
        session_pool_size=0,
        retention=Retention(jobs=2, sessions=2, executions=3),
    )
    with TestClient(create_app(settings)) as client:
        engine = client.app.state.services.engine  # type: ignore[attr-defined]
        closed = []
        for _ in range(5):
            session_id = new_session(client, keys.a)["id"]
            for n in range(5):
                result = execute(client, keys.a, session_id, f"print('x' * 100_000); {n}")
                assert result["status"] == "ok", result
            assert len(engine.sessions._get(session_id).executions) <= 3
            assert client.delete(f"/v1/sessions/{session_id}", headers=auth(keys.a)).is_success
            closed.append(session_id)
        # A new session makes room: at most `sessions` closed ones are still held.
        live = new_session(client, keys.a)["id"]
        assert set(engine.sessions.ids()) <= {live, *closed[-2:]}
        # Everything forgotten in memory is still answered from the records.
        for session_id in closed:
            view = client.get(f"/v1/sessions/{session_id}", headers=auth(keys.a)).json()
            assert view["status"] == "closed", view
            listed = client.get(
                f"/v1/sessions/{session_id}/executions", headers=auth(keys.a)
            ).json()["executions"]
            assert len(listed) == 5
