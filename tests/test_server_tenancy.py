"""Tenancy: one tenant's objects do not exist for another.

Tenant A makes one object of every kind (a job, a session, an execution, a file); tenant B
then tries every route that takes their ids, HTTP and WebSocket, and gets the same 404 it
gets for an id that was never made: no data, no existence oracle, no effect. A's objects are
intact afterwards. Runs on SQLite and on PostgreSQL (the ``api`` fixture).
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from fastapi.routing import APIWebSocketRoute, iter_route_contexts
from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.websockets import WebSocketDisconnect

from server_support import Keys, auth

ID_FORMAT = {
    "job": re.compile(r"job_[0-9a-f]{24}"),  # 96 random bits
    "session": re.compile(r"ses_[0-9a-f]{24}"),
    "execution": re.compile(r"exe_[0-9a-f]{24}"),
}


# -- helpers ----------------------------------------------------------------------------------


def fake_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


@dataclass
class Attempt:
    """One request of B's: a route of the app, with the ids to put in its path."""

    method: str  # "WS" for a WebSocket upgrade
    template: str
    params: dict[str, str]
    kwargs: dict[str, Any] = field(default_factory=dict)

    def url(self, params: dict[str, str] | None = None) -> str:
        return self.template.format(**(params or self.params))


def answer(client: TestClient, attempt: Attempt, headers: dict[str, str], url: str) -> tuple:
    """(status, body text) of one attempt; a WebSocket's is that of its denied handshake."""
    if attempt.method != "WS":
        response = client.request(attempt.method, url, headers=headers, **attempt.kwargs)
        return response.status_code, response.text
    try:
        with client.websocket_connect(url, headers=headers) as socket:
            socket.close()
    except WebSocketDenialResponse as denial:
        return denial.status_code, denial.text
    except WebSocketDisconnect as closed:  # a server without the denial extension closes
        return closed.code - 4000, closed.reason
    raise AssertionError(f"B's WebSocket upgrade to {url} was accepted")


def parametrised_routes(app: Any) -> set[tuple[str, str]]:
    """(method, path format) of every route of the app that takes an id in its path."""
    found = set()
    for context in iter_route_contexts(app.routes):
        template = context.path_format
        if template is None or "{" not in template:
            continue
        if isinstance(context.original_route, APIWebSocketRoute):
            found.add(("WS", template))
        else:
            found.update((method, template) for method in context.methods or ())
    return found


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, (response.status_code, response.text[:500])
    return response.json()


# -- the matrix -------------------------------------------------------------------------------


def test_tenant_b_cannot_reach_tenant_a_objects(api: TestClient, keys: Keys) -> None:
    a, b = auth(keys.a), auth(keys.b)
    marks = {name: f"{name}-{secrets.token_hex(8)}" for name in ("job", "exe", "file")}

    # Tenant A: one object of each kind.
    job = ok(
        api.post(
            "/v1/jobs?wait=true",
            json={"files": {"main.py": f"print({marks['job']!r})"}},
            headers=a,
        )
    )
    assert job["status"] == "succeeded", job
    assert marks["job"] in job["stdout"]
    token = f"token-{secrets.token_hex(4)}"  # get-or-create tokens are per tenant
    session = ok(api.post("/v1/sessions", json={"client_token": token}, headers=a), 201)
    code = f"x = 1\nprint({marks['exe']!r})"
    execution = ok(
        api.post(
            f"/v1/sessions/{session['id']}/executions",
            json={"code": code, "wait": True},
            headers=a,
        )
    )
    assert execution["status"] == "ok", execution
    assert marks["exe"] in json.dumps(execution["result"])
    secret = marks["file"].encode()
    ok(api.put(f"/v1/sessions/{session['id']}/files/secret.txt", content=secret, headers=a))
    ids = {"job_id": job["id"], "session_id": session["id"], "execution_id": execution["id"]}

    # Ids are unguessable: a prefix and 96 random bits.
    assert ID_FORMAT["job"].fullmatch(ids["job_id"]), ids
    assert ID_FORMAT["session"].fullmatch(ids["session_id"]), ids
    assert ID_FORMAT["execution"].fullmatch(ids["execution_id"]), ids
    assert execution["session_id"] == ids["session_id"]

    # Tenant B has a session and an execution of its own, to mix with A's ids.
    # The same client token gets B a session of its own, not A's.
    own = ok(api.post("/v1/sessions", json={"client_token": token}, headers=b), 201)
    assert ID_FORMAT["session"].fullmatch(own["id"])
    assert own["id"] != ids["session_id"]
    same = ok(api.post("/v1/sessions", json={"client_token": token}, headers=a), 200)
    assert same["id"] == ids["session_id"]
    own_run = ok(
        api.post(
            f"/v1/sessions/{own['id']}/executions",
            json={"code": "print(x)", "wait": True},  # A's variable is not in B's kernel
            headers=b,
        )
    )
    assert own_run["status"] == "error", own_run
    assert "NameError" in json.dumps(own_run["result"])
    assert ID_FORMAT["execution"].fullmatch(own_run["id"])

    job_only = {"job_id": ids["job_id"]}
    sess_only = {"session_id": ids["session_id"]}
    a_exe = {"session_id": ids["session_id"], "execution_id": ids["execution_id"]}
    b_sess_a_exe = {"session_id": own["id"], "execution_id": ids["execution_id"]}
    a_sess_b_exe = {"session_id": ids["session_id"], "execution_id": own_run["id"]}
    a_file = {"session_id": ids["session_id"], "path": "secret.txt"}
    jobs, sessions = "/v1/jobs/{job_id}", "/v1/sessions/{session_id}"
    executions = sessions + "/executions/{execution_id}"
    files = sessions + "/files"
    kernels = "/api/kernels/{kernel_id}"
    kernel_only = {"kernel_id": ids["session_id"]}
    tail = ids["session_id"].removeprefix("ses_")
    dashed = {"kernel_id": f"ses_{tail[:8]}-{tail[8:12]}-{tail[12:16]}-{tail[16:20]}-{tail[20:]}"}
    attempts = [
        Attempt("GET", jobs, job_only),
        Attempt("POST", jobs + "/kill", job_only),
        Attempt("GET", jobs + "/events", job_only),
        Attempt("GET", jobs + "/{stream}", {**job_only, "stream": "stdout"}),
        Attempt("GET", jobs + "/{stream}", {**job_only, "stream": "stderr"}),
        Attempt("GET", sessions, sess_only),
        Attempt("POST", sessions + "/interrupt", sess_only),
        Attempt("POST", sessions + "/restart", sess_only),
        Attempt("GET", sessions + "/executions", sess_only),
        Attempt(
            "POST", sessions + "/executions", sess_only, {"json": {"code": "x = 2", "wait": True}}
        ),
        Attempt("POST", sessions + "/executions", sess_only, {"json": {"code": "x = 2"}}),
        Attempt("GET", files, sess_only),
        Attempt("GET", files, sess_only, {"params": {"path": "."}}),
        Attempt("POST", files, sess_only, {"files": {"files": ("pwned.txt", b"pwned")}}),
        Attempt("PUT", files + "/{path}", a_file, {"content": b"pwned"}),
        Attempt("PUT", files + "/{path}", {**sess_only, "path": "new.txt"}, {"content": b"x"}),
        Attempt("GET", files + "/{path}", a_file),
        Attempt("DELETE", files + "/{path}", a_file),
        Attempt("WS", sessions + "/stream", sess_only),
        # The Jupyter API: a kernel is a session, named by its id (dashed or not).
        Attempt("GET", kernels, kernel_only),
        Attempt("GET", kernels, dashed),
        Attempt("POST", kernels + "/interrupt", kernel_only),
        Attempt("POST", kernels + "/restart", kernel_only),
        Attempt("WS", kernels + "/channels", kernel_only),
        Attempt("WS", kernels + "/channels", dashed),
        Attempt("DELETE", kernels, kernel_only),
        # python-executor's API: its executions are jobs.
        Attempt("GET", "/api/v1/executions/{execution_id}", {"execution_id": ids["job_id"]}),
        Attempt("DELETE", "/api/v1/executions/{execution_id}", {"execution_id": ids["job_id"]}),
        Attempt("DELETE", sessions, sess_only),  # after the others: it would end A's session
    ]
    for pair in (a_exe, b_sess_a_exe, a_sess_b_exe):
        attempts += [
            Attempt("GET", executions, pair),
            Attempt("GET", executions + "/events", pair),
            Attempt("POST", executions + "/input", pair, {"json": {"value": "pwned"}}),
            Attempt("WS", executions + "/stream", pair),
        ]
    # Every route that takes an id is in the matrix.
    tried = {(attempt.method, attempt.template) for attempt in attempts}
    untenanted = {("GET", "/api/kernelspecs/{kernel_name}")}  # kernelspecs are everyone's
    missing = parametrised_routes(api.app) - untenanted - tried
    assert not missing, missing

    secrets_of_a = [marks["job"], marks["exe"], marks["file"], code]
    for attempt in attempts:
        # B's execution in A's session is neither's: A is refused it too.
        callers = [b, a] if attempt.params is a_sess_b_exe else [b]
        for who in callers:
            url = attempt.url()
            what = (attempt.method, url, "as A" if who is a else "as B")
            status, text = answer(api, attempt, who, url)
            assert status == 404, (*what, status, text[:300])
            if attempt.method != "WS" or text.startswith("{"):
                body = json.loads(text)
                error = body["error"]  # python-executor's shape: {"error": message, "type"}
                kind = error["type"] if isinstance(error, dict) else body["type"]
                assert kind in ("JobNotFound", "SessionNotFound"), (*what, text)
            for leaked in secrets_of_a:
                assert leaked not in text, (*what, leaked)
            # The same answer as for ids that were never made: no existence oracle.
            fakes = {
                name: fake_id(value[:3]) if name.endswith("_id") else value
                for name, value in attempt.params.items()
            }
            fake_status, fake_text = answer(api, attempt, who, attempt.url(fakes))
            for name, value in attempt.params.items():
                text = text.replace(value, fakes[name])
            assert (status, text) == (fake_status, fake_text), (*what, text, fake_text)

    # B's lists hold nothing of A's.
    for url in (
        "/v1/jobs",
        "/v1/jobs?status=succeeded",
        "/v1/sessions",
        "/v1/sessions?status=open",
        f"/v1/sessions/{own['id']}/executions",
        f"/v1/sessions/{own['id']}/files",
    ):
        text = api.get(url, headers=b).text
        for leaked in (*ids.values(), *secrets_of_a):
            assert leaked not in text, (url, leaked, text[:500])
    assert ok(api.get("/v1/jobs", headers=b)) == {"jobs": []}
    listed = ok(api.get("/v1/sessions", headers=b))["sessions"]
    assert [s["id"] for s in listed] == [own["id"]]
    b_runs = ok(api.get(f"/v1/sessions/{own['id']}/executions", headers=b))["executions"]
    assert [e["id"] for e in b_runs] == [own_run["id"]]
    # A's lists hold nothing of B's either.
    a_sessions = ok(api.get("/v1/sessions", headers=a))["sessions"]
    assert [s["id"] for s in a_sessions] == [ids["session_id"]]

    # A's objects are intact: the session answers, its state and file are as A left them.
    kept = ok(api.get(f"/v1/sessions/{ids['session_id']}", headers=a))
    assert kept["status"] in ("idle", "busy"), kept
    data = api.get(f"/v1/sessions/{ids['session_id']}/files/secret.txt", headers=a)
    assert data.status_code == 200
    assert data.content == secret
    names = [e["name"] for e in ok(api.get(files.format(**sess_only), headers=a))["entries"]]
    assert "secret.txt" in names
    assert "pwned.txt" not in names
    assert "new.txt" not in names
    check = ok(
        api.post(
            f"/v1/sessions/{ids['session_id']}/executions",
            json={"code": "print(x)", "wait": True},  # not restarted, B's `x = 2` never ran
            headers=a,
        )
    )
    assert check["status"] == "ok", check
    assert check["result"]["stdout"] == "1\n", check["result"]
    a_runs = ok(api.get(f"/v1/sessions/{ids['session_id']}/executions", headers=a))["executions"]
    assert [e["id"] for e in a_runs] == [check["id"], ids["execution_id"]]
    again = ok(api.get(f"/v1/jobs/{ids['job_id']}", headers=a))
    assert again["status"] == "succeeded"
    assert marks["job"] in again["stdout"]
    assert marks["job"].encode() in api.get(f"/v1/jobs/{ids['job_id']}/stdout", headers=a).content
    assert [j["id"] for j in ok(api.get("/v1/jobs", headers=a))["jobs"]] == [ids["job_id"]]
