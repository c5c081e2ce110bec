"""The server's job API end to end: real boxes, a real database (SQLite and PostgreSQL), the
app in process through Starlette's TestClient, and `execbox serve` as a subprocess for the CLI.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import secrets
import tarfile
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

import httpx
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

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
TERMINAL = {"succeeded", "failed", "timeout", "memory_limit", "killed", "error"}
T = TypeVar("T")


# -- helpers ----------------------------------------------------------------------------------


def job_row(url: str, job_id: str) -> dict[str, Any]:
    (row,) = [row for row in db_rows(url)["jobs"] if row["id"] == job_id]
    return row


def assert_error(response: httpx.Response, status: int, kind: str | None = None) -> str:
    """The JSON error shape; returns the message."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json"), response.headers
    error = response.json()["error"]
    assert isinstance(error["message"], str)
    assert error["message"]
    if kind is not None:
        assert error["type"] == kind, error
    return str(error["message"])


def wait_job(api: TestClient, key: str, job_id: str) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        view = api.get(f"/v1/jobs/{job_id}", headers=auth(key)).json()
        return view if view["status"] in TERMINAL else None

    return wait_until(ended, 60, f"job {job_id} to end")


def run(api: TestClient, key: str, body: dict[str, Any]) -> dict[str, Any]:
    response = api.post("/v1/jobs", params={"wait": "true"}, json=body, headers=auth(key))
    assert response.status_code == 200, response.text
    view: dict[str, Any] = response.json()
    return view


def ndjson(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in response.text.splitlines() if line]


def tar_of(files: dict[str, bytes], mode: str = "w") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


# -- create, wait, record ---------------------------------------------------------------------

PROGRAM = """\
import hashlib, os, sys
print(sys.stdin.read().upper(), sys.argv[1:])
print(hashlib.sha256(os.environ["SECRET"].encode()).hexdigest())
"""


def test_create_wait_record_and_history(api: TestClient, keys: Keys, database_url: str) -> None:
    seen = capture(api)
    secret = f"hush-{secrets.token_hex(12)}"

    # Without wait: 201 at once, then the record ends on its own.
    created = api.post(
        "/v1/jobs", json={"files": {"main.py": "print(6 * 7)"}}, headers=auth(keys.a)
    )
    assert created.status_code == 201, created.text
    first = created.json()
    assert first["id"].startswith("job_")
    assert first["status"] in ("queued", "running")
    done = wait_job(api, keys.a, first["id"])
    assert (done["status"], done["exit_code"], done["stdout"]) == ("succeeded", 0, "42\n")

    # With wait: 200 and everything, env values hidden.
    body = {
        "files": {"main.py": PROGRAM},
        "args": ["a", "b c"],
        "stdin": "hello",
        "env": {"SECRET": secret},
    }
    answer = run(api, keys.a, body)
    digest = hashlib.sha256(secret.encode()).hexdigest()
    assert answer["status"] == "succeeded", answer
    assert answer["exit_code"] == 0
    assert answer["stdout"] == f"HELLO ['a', 'b c']\n{digest}\n"
    assert (answer["stderr"], answer["stdout_truncated"], answer["stderr_truncated"]) == (
        "",
        False,
        False,
    )
    usage = answer["usage"]
    assert usage["wall_seconds"] > 0
    assert usage["cpu_seconds"] > 0
    assert usage["peak_memory_bytes"] > 0
    spec = answer["spec"]
    assert spec["env"] == {"SECRET": "***"}
    assert spec["args"] == ["a", "b c"]
    assert spec["entrypoint"] == "main.py"
    assert spec["stdin_bytes"] == 5
    assert spec["files"] == [{"name": "main.py", "kind": "file", "size": len(PROGRAM)}]
    assert spec["network"] is False

    # The record says what the answer said, and its history runs queued -> running -> end.
    record = api.get(f"/v1/jobs/{answer['id']}", headers=auth(keys.a)).json()
    history = record.pop("history")
    assert record == answer
    assert [change["status"] for change in history] == ["queued", "running", "succeeded"]
    times = [datetime.fromisoformat(change["at"]) for change in history]
    assert times == sorted(times)
    assert times[0] == datetime.fromisoformat(answer["created_at"])
    assert times[1] == datetime.fromisoformat(answer["started_at"])
    assert times[2] == datetime.fromisoformat(answer["finished_at"])

    # The database row holds the same.
    row = job_row(database_url, answer["id"])
    assert (row["status"], row["exit_code"], row["stdout"]) == (
        "succeeded",
        0,
        answer["stdout"].encode(),
    )
    assert row["spec"]["env"] == {"SECRET": "***"}

    # Another tenant sees none of it.
    for path in ("", "/stdout", "/events"):
        response = api.get(f"/v1/jobs/{answer['id']}{path}", headers=auth(keys.b))
        assert_error(response, 404, "JobNotFound")
    listed = api.get("/v1/jobs", headers=auth(keys.b)).json()["jobs"]
    assert listed == []

    # The secret went into the box, and nowhere else.
    api.get("/v1/jobs", headers=auth(keys.a))
    api.get(f"/v1/jobs/{answer['id']}/events", headers=auth(keys.a))
    assert seen
    assert not [body for body in seen if secret.encode() in body]
    dump = as_text(db_rows(database_url))
    assert answer["id"] in dump
    assert secret not in dump


def test_multipart_archive_files_parts_and_base64(api: TestClient, keys: Keys) -> None:
    blob = bytes(range(256)) * 3
    check = (
        "import hashlib, sys\n"
        "data = open('data/blob.bin', 'rb').read()\n"
        "from pkg import VALUE\n"
        "print(VALUE, len(data), hashlib.sha256(data).hexdigest(), sys.argv[1:])\n"
    )
    expected = f"7 {len(blob)} {hashlib.sha256(blob).hexdigest()} ['x']\n"
    archive = tar_of(
        {"main.py": check.encode(), "pkg/__init__.py": b"VALUE = 7\n", "data/blob.bin": blob}
    )

    # multipart: spec + archive (plain tar)
    response = api.post(
        "/v1/jobs",
        params={"wait": "true"},
        data={"spec": json.dumps({"args": ["x"]})},
        files={"archive": ("code.tar", archive, "application/x-tar")},
        headers=auth(keys.a),
    )
    assert response.status_code == 200, response.text
    view = response.json()
    assert (view["status"], view["stdout"]) == ("succeeded", expected), view
    names = sorted(entry["name"] for entry in view["spec"]["files"])
    assert names == ["data/blob.bin", "main.py", "pkg/__init__.py"]

    # multipart: spec + files parts, named by their paths
    response = api.post(
        "/v1/jobs",
        params={"wait": "true"},
        data={"spec": json.dumps({"entrypoint": "app/run.py", "args": ["x"]})},
        files=[
            ("files", ("app/run.py", check.encode(), "text/x-python")),
            ("files", ("app/pkg/__init__.py", b"VALUE = 7\n", "text/x-python")),
            ("files", ("data/blob.bin", blob, "application/octet-stream")),
        ],
        headers=auth(keys.a),
    )
    assert response.status_code == 200, response.text
    view = response.json()
    # The entrypoint's directory is on sys.path; the data file is relative to the workspace.
    assert (view["status"], view["stdout"]) == ("succeeded", expected), view
    assert view["spec"]["entrypoint"] == "app/run.py"

    # With output=base64 the waited answer carries the exact bytes, undecodable ones too.
    response = api.post(
        "/v1/jobs",
        params={"wait": "true", "output": "base64"},
        files=[("files", ("main.py", b"import sys; sys.stdout.buffer.write(b'\\xff!')", "x"))],
        headers=auth(keys.a),
    )
    assert response.status_code == 200, response.text
    view = response.json()
    assert base64.b64decode(view["stdout_base64"]) == b"\xff!"
    assert "stdout" not in view

    # An archive and files together are refused.
    response = api.post(
        "/v1/jobs",
        data={"spec": "{}"},
        files=[
            ("archive", ("code.tar", archive, "application/x-tar")),
            ("files", ("extra.py", b"print(1)", "text/x-python")),
        ],
        headers=auth(keys.a),
    )
    assert_error(response, 400, "InvalidSpec")

    # JSON: binary files as base64 next to text files; a gzipped archive as base64.
    view = run(
        api,
        keys.a,
        {
            "files": {"main.py": check, "pkg/__init__.py": "VALUE = 7\n"},
            "files_base64": {"data/blob.bin": base64.b64encode(blob).decode()},
            "args": ["x"],
        },
    )
    assert (view["status"], view["stdout"]) == ("succeeded", expected), view
    sizes = {entry["name"]: entry["size"] for entry in view["spec"]["files"]}
    assert sizes["data/blob.bin"] == len(blob)
    gzipped = tar_of({"main.py": b"print('from gz')"}, mode="w:gz")
    view = run(api, keys.a, {"archive_base64": base64.b64encode(gzipped).decode()})
    assert (view["status"], view["stdout"]) == ("succeeded", "from gz\n"), view
    response = api.post(
        "/v1/jobs", json={"files_base64": {"a.bin": "!!not base64!!"}}, headers=auth(keys.a)
    )
    assert "base64" in assert_error(response, 400, "InvalidSpec")


def test_failed_timeout_and_killed(api: TestClient, keys: Keys) -> None:
    failed = run(
        api,
        keys.a,
        {
            "files": {
                "main.py": "import sys\nprint('partial')\nprint('bad', file=sys.stderr)\nsys.exit(3)"
            }
        },
    )
    assert (failed["status"], failed["exit_code"]) == ("failed", 3), failed
    assert (failed["stdout"], failed["stderr"]) == ("partial\n", "bad\n")

    raised = run(api, keys.a, {"files": {"main.py": "raise RuntimeError('boom')"}})
    assert (raised["status"], raised["exit_code"]) == ("failed", 1), raised
    assert "RuntimeError: boom" in raised["stderr"]

    timed_out = run(
        api, keys.a, {"files": {"main.py": "import time\ntime.sleep(60)"}, "timeout": 1}
    )
    assert (timed_out["status"], timed_out["reason"]) == ("timeout", "timeout"), timed_out
    assert timed_out["spec"]["timeout"] == 1

    created = api.post(
        "/v1/jobs", json={"files": {"main.py": "while True: pass"}}, headers=auth(keys.a)
    )
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    wait_until(
        lambda: api.get(f"/v1/jobs/{job_id}", headers=auth(keys.a)).json()["status"] == "running",
        60,
        "the busy job to run",
    )
    killed = api.post(f"/v1/jobs/{job_id}/kill", headers=auth(keys.a))
    assert killed.status_code == 200, killed.text
    assert killed.json()["status"] == "killed", killed.json()
    again = api.post(f"/v1/jobs/{job_id}/kill", headers=auth(keys.a))
    assert (again.status_code, again.json()["status"]) == (200, "killed")
    record = api.get(f"/v1/jobs/{job_id}", headers=auth(keys.a)).json()
    assert record["status"] == "killed"
    assert [c["status"] for c in record["history"]] == ["queued", "running", "killed"]
    assert_error(api.post("/v1/jobs/job_nope/kill", headers=auth(keys.a)), 404, "JobNotFound")


# -- streams and downloads --------------------------------------------------------------------


def test_events_stream_then_result_and_downloads(api: TestClient, keys: Keys) -> None:
    slow = (
        "import time\nfor i in range(3):\n    print('line', i, flush=True)\n    time.sleep(0.3)\n"
    )
    created = api.post("/v1/jobs", json={"files": {"main.py": slow}}, headers=auth(keys.a))
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    lines = ndjson(api.get(f"/v1/jobs/{job_id}/events", headers=auth(keys.a)))
    kinds = [line["type"] for line in lines]
    assert kinds[-1] == "result", lines
    assert kinds.count("result") == 1
    outputs = [i for i, line in enumerate(lines) if line["type"] == "output"]
    assert outputs, lines
    assert outputs[0] < kinds.index("result")
    first = lines[outputs[0]]["data"]
    assert first
    assert "line 0\n".startswith(first), first
    text = "".join(lines[i]["data"] for i in outputs if lines[i]["stream"] == "stdout")
    assert text == "line 0\nline 1\nline 2\n"
    result = lines[-1]["result"]
    assert (result["id"], result["status"], result["stdout"]) == (job_id, "succeeded", text)

    # A finished job streams the same from its record.
    again = ndjson(api.get(f"/v1/jobs/{job_id}/events", headers=auth(keys.a)))
    assert again[-1]["type"] == "result"
    assert again[-1]["result"]["status"] == "succeeded"
    assert "".join(line["data"] for line in again if line["type"] == "output") == text

    # Downloads are the exact bytes, not UTF-8 text.
    raw = b"\xff\xfe\x00ok\x80\xc3\n"
    writer = f"import sys\nsys.stdout.buffer.write({raw!r})\nsys.stderr.buffer.write(b'err\\xff')\n"
    view = run(api, keys.a, {"files": {"main.py": writer}})
    assert view["status"] == "succeeded", view
    stdout = api.get(f"/v1/jobs/{view['id']}/stdout", headers=auth(keys.a))
    assert stdout.status_code == 200
    assert stdout.content == raw
    assert stdout.headers["content-type"] == "application/octet-stream"
    assert stdout.headers["x-execbox-truncated"] == "false"
    stderr = api.get(f"/v1/jobs/{view['id']}/stderr", headers=auth(keys.a))
    assert (stderr.content, stderr.headers["x-execbox-truncated"]) == (b"err\xff", "false")

    # Output past limits.output is dropped, and said to be.
    flood = "import sys\nsys.stdout.write('x' * 5000)\nprint('end', file=sys.stderr)\n"
    view = run(api, keys.a, {"files": {"main.py": flood}, "limits": {"output": "1K"}})
    assert view["status"] == "succeeded", view
    assert view["spec"]["limits"]["output"] == 1024
    assert (view["stdout_truncated"], view["stderr_truncated"]) == (True, False)
    stdout = api.get(f"/v1/jobs/{view['id']}/stdout", headers=auth(keys.a))
    assert stdout.headers["x-execbox-truncated"] == "true"
    assert stdout.content == b"x" * 1024
    assert view["stdout"] == "x" * 1024
    assert api.get(f"/v1/jobs/{view['id']}/stderr", headers=auth(keys.a)).content == b"end\n"


# -- listing ----------------------------------------------------------------------------------


def three_jobs(api: TestClient, key: str) -> list[dict[str, Any]]:
    return [
        run(api, key, {"files": {"main.py": "print(1)"}}),
        run(api, key, {"files": {"main.py": "import sys; sys.exit(2)"}}),
        run(api, key, {"files": {"main.py": "print(3)"}}),
    ]


def listed(api: TestClient, key: str, **params: Any) -> list[str]:
    response = api.get("/v1/jobs", params=params, headers=auth(key))
    assert response.status_code == 200, response.text
    jobs = response.json()["jobs"]
    assert all("stdout" not in job for job in jobs)
    return [job["id"] for job in jobs]


def test_list_filters_by_status_time_and_limit(api: TestClient, keys: Keys) -> None:
    first, second, third = three_jobs(api, keys.a)
    assert [first["status"], second["status"], third["status"]] == [
        "succeeded",
        "failed",
        "succeeded",
    ]
    ids = [first["id"], second["id"], third["id"]]
    assert listed(api, keys.a) == ids[::-1]
    assert listed(api, keys.a, status="failed") == [second["id"]]
    assert listed(api, keys.a, status="succeeded") == [third["id"], first["id"]]
    assert listed(api, keys.a, status=["failed", "succeeded"]) == ids[::-1]
    assert listed(api, keys.a, status="running") == []
    assert listed(api, keys.a, limit=1) == [third["id"]]
    assert listed(api, keys.a, limit=2) == [third["id"], second["id"]]
    at = second["created_at"]
    assert listed(api, keys.a, since=at) == [third["id"], second["id"]]
    assert listed(api, keys.a, until=at) == [first["id"]]
    assert listed(api, keys.a, since=at, until=third["created_at"]) == [second["id"]]
    assert listed(api, keys.a, since=at, status="succeeded") == [third["id"]]
    assert listed(api, keys.a, since=at, limit=1) == [third["id"]]
    assert_error(api.get("/v1/jobs", params={"status": "bogus"}, headers=auth(keys.a)), 422)
    assert_error(api.get("/v1/jobs", params={"limit": 0}, headers=auth(keys.a)), 422)


def test_list_since_until_mean_the_instant_whatever_the_offset(api: TestClient, keys: Keys) -> None:
    first, second, third = three_jobs(api, keys.a)
    at = datetime.fromisoformat(second["created_at"])
    for hours in (0, 5, -7):
        same_instant = at.astimezone(timezone(timedelta(hours=hours))).isoformat()
        assert listed(api, keys.a, since=same_instant) == [third["id"], second["id"]], same_instant
        assert listed(api, keys.a, until=same_instant) == [first["id"]], same_instant


# -- limits and bad requests ------------------------------------------------------------------


def test_limits_clamped_network_refused_bad_input_answered(
    api: TestClient, keys: Keys, database_url: str
) -> None:
    asked = {"memory": "64G", "cpus": 16, "pids": 100_000, "disk": "100G", "output": "1G"}
    view = run(api, keys.a, {"files": {"main.py": "print(1)"}, "limits": asked, "timeout": 86_400})
    assert view["status"] == "succeeded", view
    clamped = {"memory": 2 * GIB, "cpus": 2.0, "pids": 512, "disk": GIB, "output": 64 << 20}
    assert view["spec"]["limits"] == clamped
    assert view["spec"]["timeout"] == 3600
    stored = job_row(database_url, view["id"])["spec"]
    assert stored["limits"] == clamped
    assert stored["timeout"] == 3600

    denied = api.post(
        "/v1/jobs", json={"files": {"main.py": "print(1)"}, "network": True}, headers=auth(keys.a)
    )
    assert "network" in assert_error(denied, 403, "PermissionDenied")

    for bad in ("-1", "lots"):
        response = api.post(
            "/v1/jobs",
            json={"files": {"main.py": "print(1)"}, "limits": {"memory": bad}},
            headers=auth(keys.a),
        )
        message = assert_error(response, 400, "InvalidLimits")
        assert "memory" in message
        assert bad in message
    response = api.post(
        "/v1/jobs",
        json={"files": {"main.py": "print(1)"}, "limits": {"cpus": -1}},
        headers=auth(keys.a),
    )
    assert "cpus" in assert_error(response, 400, "InvalidLimits")
    response = api.post(
        "/v1/jobs", json={"files": {"main.py": "print(1)"}, "timeout": -5}, headers=auth(keys.a)
    )
    assert "timeout" in assert_error(response, 400)

    json_type = {"content-type": "application/json"}
    for raw in (b"not json{", b"", b"[]", b"null", b'{"files": {"main.py": 3}}'):
        response = api.post("/v1/jobs", content=raw, headers={**auth(keys.a), **json_type})
        assert 400 <= response.status_code < 500, (raw, response.status_code, response.text)
        assert_error(response, response.status_code)
    response = api.post(
        "/v1/jobs",
        data={"spec": "not json"},
        files={"archive": ("a.tar", b"x")},
        headers=auth(keys.a),
    )
    assert_error(response, 422, "ValidationError")  # as a JSON body that is not JSON
    response = api.post(
        "/v1/jobs",
        data={"spec": "{}"},
        files={"archive": ("a.tar", b"no tar")},
        headers=auth(keys.a),
    )
    assert_error(response, 400, "InvalidFiles")
    assert_error(api.post("/v1/jobs", json={"files": {}}, headers=auth(keys.a)), 400)
    # None of the refused requests left a job behind.
    assert listed(api, keys.a) == [view["id"]]


def test_unknown_job_field_is_422_naming_the_field(api: TestClient, keys: Keys) -> None:
    """Unknown fields are refused like everywhere else in the API (sessions answer 422)."""
    response = api.post(
        "/v1/jobs", json={"files": {"main.py": "print(1)"}, "timeuot": 5}, headers=auth(keys.a)
    )
    message = assert_error(response, 422, "ValidationError")
    assert "timeuot" in message
    response = api.post(
        "/v1/jobs",
        data={"spec": json.dumps({"entrypiont": "main.py"})},
        files=[("files", ("main.py", b"print(1)", "text/x-python"))],
        headers=auth(keys.a),
    )
    assert "entrypiont" in assert_error(response, 422, "ValidationError")


# -- quotas and caps --------------------------------------------------------------------------


def test_job_quota_frees_when_a_job_ends(
    database_url: str, fresh_app: Callable[..., TestClient]
) -> None:
    keys = make_keys(database_url, max_jobs=1, max_sessions=1)
    api = fresh_app()
    busy = api.post(
        "/v1/jobs", json={"files": {"main.py": "while True: pass"}}, headers=auth(keys.a)
    )
    assert busy.status_code == 201, busy.text
    refused = api.post("/v1/jobs", json={"files": {"main.py": "print(2)"}}, headers=auth(keys.a))
    assert_error(refused, 429, "QuotaExceeded")
    # The cap is the key's: tenant b's key is not held back.
    other = api.post(
        "/v1/jobs",
        params={"wait": "true"},
        json={"files": {"main.py": "print(3)"}},
        headers=auth(keys.b),
    )
    assert (other.status_code, other.json()["status"]) == (200, "succeeded")

    killed = api.post(f"/v1/jobs/{busy.json()['id']}/kill", headers=auth(keys.a))
    assert killed.json()["status"] == "killed"
    after = api.post(
        "/v1/jobs",
        params={"wait": "true"},
        json={"files": {"main.py": "print(4)"}},
        headers=auth(keys.a),
    )
    assert after.status_code == 200, after.text
    assert (after.json()["status"], after.json()["stdout"]) == ("succeeded", "4\n")
    # A finished job gave its place back too.
    again = api.post(
        "/v1/jobs",
        params={"wait": "true"},
        json={"files": {"main.py": "print(5)"}},
        headers=auth(keys.a),
    )
    assert (again.status_code, again.json()["stdout"]) == (200, "5\n")
    assert len(listed(api, keys.a)) == 3


def test_body_cap_answers_413(database_url: str, fresh_app: Callable[..., TestClient]) -> None:
    keys = make_keys(database_url)
    api = fresh_app(max_body=1024)
    big = {"files": {"main.py": "print(1)\n# " + "x" * 2000}}
    response = api.post("/v1/jobs", json=big, headers=auth(keys.a))
    assert_error(response, 413, "PayloadTooLarge")

    def chunks() -> Iterator[bytes]:  # no Content-Length: the transfer is chunked
        yield b'{"files": {"main.py": "print(1)\\n# '
        for _ in range(10):
            yield b"y" * 300
        yield b'"}}'

    response = api.post(
        "/v1/jobs", content=chunks(), headers={**auth(keys.a), "content-type": "application/json"}
    )
    assert_error(response, 413, "PayloadTooLarge")

    boundary = "execbox-test-boundary"
    part = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="archive"; filename="a.tar"\r\n'
        "Content-Type: application/x-tar\r\n\r\n"
    ).encode()

    def multipart() -> Iterator[bytes]:
        yield part
        for _ in range(10):
            yield b"z" * 300
        yield f"\r\n--{boundary}--\r\n".encode()

    response = api.post(
        "/v1/jobs",
        content=multipart(),
        headers={**auth(keys.a), "content-type": f"multipart/form-data; boundary={boundary}"},
    )
    assert_error(response, 413, "PayloadTooLarge")

    small = api.post(
        "/v1/jobs",
        params={"wait": "true"},
        json={"files": {"main.py": "print('ok')"}},
        headers=auth(keys.a),
    )
    assert (small.status_code, small.json()["stdout"]) == (200, "ok\n")
    assert listed(api, keys.a) == [small.json()["id"]]


# -- health, metrics, CLI ---------------------------------------------------------------------


def job_counts(text: str) -> dict[str, float]:
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "execbox_jobs_total":
                counts[sample.labels["status"]] = sample.value
    return counts


def test_healthz_needs_no_key_and_metrics_count_jobs(api: TestClient, keys: Keys) -> None:
    health = api.get("/healthz")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    assert_error(api.get("/metrics"), 401, "AuthenticationError")
    assert_error(api.get("/metrics", headers=auth(keys.a)), 403, "PermissionDenied")
    assert_error(api.get("/metrics", headers=auth(keys.revoked)), 401, "AuthenticationError")
    assert_error(api.get("/v1/jobs"), 401, "AuthenticationError")

    three_jobs(api, keys.a)
    run(api, keys.b, {"files": {"main.py": "import time; time.sleep(30)"}, "timeout": 0.5})
    response = api.get("/metrics", headers=auth(keys.admin))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    assert job_counts(response.text) == {"succeeded": 2.0, "failed": 1.0, "timeout": 1.0}
    assert "execbox_http_requests_total" in response.text


def test_serve_no_auth_warns_and_needs_no_key(sqlite_url: str) -> None:
    server = ServerProcess(sqlite_url, "--no-auth", "--pool-size", "0", "--session-pool-size", "0")
    with server:
        response = httpx.post(
            f"{server.base}/v1/jobs",
            params={"wait": "true"},
            json={"files": {"main.py": "print('open door')"}},
            timeout=60,
        )
        assert response.status_code == 200, response.text
        assert (response.json()["status"], response.json()["stdout"]) == (
            "succeeded",
            "open door\n",
        )
        assert httpx.get(f"{server.base}/v1/jobs", timeout=10).status_code == 200
    log = server.log()
    warnings = [line for line in log.splitlines() if "--no-auth" in line and "WARNING" in line]
    assert warnings, log[-3000:]
    assert any("without a key" in line for line in warnings), warnings
