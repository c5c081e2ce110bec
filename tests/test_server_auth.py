"""Authentication of the server: every route but /healthz needs a valid, unrevoked key.

The routes are enumerated from the app itself, so a route added later without auth fails here.
Keys are refused in every malformed shape, when revoked (also by the CLI, while a real server
runs), and are stored only as hashes. /metrics needs an admin key. The Jupyter kernel gateway
API (/api/...) also takes a key as Jupyter clients send it (``Authorization: token``,
``?token=``); no other route does.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from fastapi.routing import APIRoute, APIWebSocketRoute, iter_route_contexts
from starlette.routing import Route
from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.websockets import WebSocketDisconnect

from server_support import VENV_BIN, Keys, ServerProcess, auth

TOKEN = re.compile(r"ebx_([0-9a-f]{16})_([0-9a-f]{64})")

# Plausible ids for path parameters: well-formed, but of no object.
FAKE = {
    "job_id": "job_0123456789abcdef01234567",
    "session_id": "ses_0123456789abcdef01234567",
    "execution_id": "exe_0123456789abcdef01234567",
    "stream": "stdout",
    "path": "dir/notes.txt",
    "kernel_id": "ses_01234567-89ab-cdef-0123-4567",
    "kernel_name": "python3",
}
PLAUSIBLE = "x_0123456789abcdef01234567"
"""For a path parameter of a route added later: the route's own check answers it."""


# -- helpers ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    kind: str  # "http" or "websocket"
    method: str  # "WS" for websockets
    template: str  # the route's path format, e.g. /v1/jobs/{job_id}
    url: str  # with its parameters filled in


def endpoints(app: Any) -> list[Endpoint]:
    """Every route of the app with each of its methods, parameters filled in.

    FastAPI keeps included routers as nested entries of ``app.routes``; ``iter_route_contexts``
    flattens them into the routes a request can reach (with their prefixes applied)."""
    found: list[Endpoint] = []
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        template = context.path_format
        assert template is not None, route
        url = template.format(
            **{name: FAKE.get(name, PLAUSIBLE) for name in context.param_convertors}
        )
        if isinstance(route, APIWebSocketRoute):
            found.append(Endpoint("websocket", "WS", template, url))
        elif isinstance(route, APIRoute | Route):
            for method in sorted(context.methods or ()):
                found.append(Endpoint("http", method, template, url))
        else:
            pytest.fail(f"a route of an unknown kind: {route!r}")
    return found


def call(client: TestClient, endpoint: Endpoint, headers: dict[str, str], query: str = "") -> Any:
    """Send one request (no body: a refusal comes before any body is read). Starting a
    Jupyter kernel needs no body, so it gets one naming no kernel: past auth, that is a 404."""
    body = {"name": "no-such-kernel"} if (endpoint.method, endpoint.template) == KERNELS else None
    return client.request(endpoint.method, endpoint.url + query, headers=headers, json=body)


KERNELS = ("POST", "/api/kernels")


def is_jupyter(endpoint: Endpoint) -> bool:
    """The Jupyter API's routes; other routes under /api (python-executor's) are not."""
    path = endpoint.template
    return path == "/api" or path.startswith(("/api/kernels", "/api/kernelspecs"))


def jupyter_bad_credentials(keys: Keys) -> dict[str, tuple[dict[str, str], str]]:
    """The Jupyter forms of not holding a valid key: (headers, query) by name."""
    return {
        "token scheme, nonsense": ({"Authorization": "token nonsense"}, ""),
        "token scheme, revoked": ({"Authorization": f"token {keys.revoked}"}, ""),
        "token scheme, upper-cased key": ({"Authorization": f"token {keys.a.upper()}"}, ""),
        "query token, nonsense": ({}, "?token=nonsense"),
        "query token, empty": ({}, "?token="),
        "query token, revoked": ({}, f"?token={keys.revoked}"),
        "query token under another name": ({}, f"?access_token={keys.a}"),
        "a bad header wins over a valid query token": (auth("nonsense"), f"?token={keys.a}"),
    }


def ws_refusal(
    client: TestClient, url: str, headers: dict[str, str]
) -> tuple[int, dict[str, Any] | None]:
    """The status with which a WebSocket upgrade is denied (and the denial's JSON body)."""
    try:
        with client.websocket_connect(url, headers=headers) as socket:
            socket.close()
    except WebSocketDenialResponse as denial:
        return denial.status_code, denial.json()
    except WebSocketDisconnect as closed:  # servers without the denial extension close instead
        return closed.code - 4000, None
    pytest.fail(f"the WebSocket {url} was accepted with headers {sorted(headers)}")


def assert_unauthenticated(response: Any, method: str, what: str) -> None:
    assert response.status_code == 401, (what, response.status_code, response.text[:300])
    assert response.headers.get("www-authenticate") == "Bearer", what
    if method != "HEAD":
        body = response.json()
        assert body["error"]["type"] == "AuthenticationError", (what, body)
        assert isinstance(body["error"]["message"], str), what
        assert body["error"]["message"], what


def bad_credentials(keys: Keys) -> dict[str, dict[str, str]]:
    """Every way of not holding a valid key, by name."""
    key_id, secret = TOKEN.fullmatch(keys.a).groups()  # type: ignore[union-attr]
    return {
        "no key": {},
        "nonsense": auth("nonsense"),
        "empty bearer": {"Authorization": "Bearer "},
        "bare scheme": {"Authorization": "Bearer"},
        "valid key under another scheme": {"Authorization": f"Basic {keys.a}"},
        "valid key without a scheme": {"Authorization": keys.a},
        "right shape, wrong secret": auth(f"ebx_{key_id}_{'0' * 64}"),
        "right shape, unknown id": auth(f"ebx_{'f' * 16}_{secret}"),
        "truncated key": auth(keys.a[:-1]),
        "key in upper case": auth(keys.a.upper()),
        "key with a suffix": auth(keys.a + "0"),
        "X-API-Key nonsense": {"X-API-Key": "nonsense"},
        "X-API-Key empty": {"X-API-Key": ""},
        "X-API-Key wrong secret": {"X-API-Key": f"ebx_{key_id}_{'1' * 64}"},
        "revoked key": auth(keys.revoked),
        "revoked key as X-API-Key": {"X-API-Key": keys.revoked},
    }


# -- every route needs a key ------------------------------------------------------------------


def test_route_enumeration_is_complete(api: TestClient, keys: Keys) -> None:
    """The enumeration sees every router: many routes, both sockets, every OpenAPI path."""
    found = endpoints(api.app)
    http = {(e.method, e.template) for e in found if e.kind == "http"}
    sockets = {e.template for e in found if e.kind == "websocket"}
    assert len(http) >= 25, sorted(http)
    assert sockets >= {
        "/v1/sessions/{session_id}/stream",
        "/v1/sessions/{session_id}/executions/{execution_id}/stream",
        "/api/kernels/{kernel_id}/channels",
    }
    for needed in ("/api", "/api/kernelspecs", "/api/kernels", "/api/kernels/{kernel_id}"):
        assert ("GET", needed) in http, needed
    assert {("POST", "/api/kernels"), ("DELETE", "/api/kernels/{kernel_id}")} <= http
    assert ("POST", "/api/kernels/{kernel_id}/interrupt") in http
    assert ("POST", "/api/kernels/{kernel_id}/restart") in http
    schema = api.get("/openapi.json", headers=auth(keys.a))
    assert schema.status_code == 200
    assert schema.json()["security"] == [{"apiKey": []}]  # documented: a key everywhere…
    assert schema.json()["paths"]["/healthz"]["get"]["security"] == []  # …but /healthz
    for path, operations in schema.json()["paths"].items():
        for method in operations:
            assert (method.upper(), path) in http, (method, path)
    for needed in ("/openapi.json", "/docs", "/redoc", "/metrics", "/healthz"):
        assert ("GET", needed) in http, needed


def test_every_http_route_refuses_bad_credentials(api: TestClient, keys: Keys) -> None:
    """No key, malformed keys, wrong secrets and the revoked key: 401 with the JSON error."""
    found = [e for e in endpoints(api.app) if e.kind == "http"]
    checked = 0
    for endpoint in found:
        if endpoint.template == "/healthz":
            continue
        for name, headers in bad_credentials(keys).items():
            response = call(api, endpoint, headers)
            assert_unauthenticated(response, endpoint.method, f"{endpoint} with {name}")
            checked += 1
    assert checked >= 25 * len(bad_credentials(keys))


def test_every_websocket_route_refuses_bad_credentials(api: TestClient, keys: Keys) -> None:
    found = [e for e in endpoints(api.app) if e.kind == "websocket"]
    assert len(found) >= 3
    for endpoint in found:
        for name, headers in bad_credentials(keys).items():
            status, body = ws_refusal(api, endpoint.url, headers)
            assert status == 401, (endpoint, name, status, body)
            if body is not None:
                assert body["error"]["type"] == "AuthenticationError", (endpoint, name, body)


def test_jupyter_routes_refuse_bad_tokens(api: TestClient, keys: Keys) -> None:
    """The Jupyter forms of a key are checked as strictly as the others, sockets included,
    and a refusal there carries Jupyter's ``message`` and ``reason`` too."""
    found = [e for e in endpoints(api.app) if is_jupyter(e)]
    assert len(found) == 10, found  # /api, 2 kernelspecs, 6 kernels, the socket
    for endpoint in found:
        for name, (headers, query) in jupyter_bad_credentials(keys).items():
            what = f"{endpoint} with {name}"
            if endpoint.kind == "websocket":
                status, body = ws_refusal(api, endpoint.url + query, headers)
                assert status == 401, (what, status, body)
            else:
                response = call(api, endpoint, headers, query)
                assert_unauthenticated(response, endpoint.method, what)
                body = response.json()
            if body is not None:
                assert body["reason"] == "Unauthorized", (what, body)
                assert body["message"] == body["error"]["message"], (what, body)


def test_only_jupyter_routes_take_the_jupyter_forms(api: TestClient, keys: Keys) -> None:
    """``Authorization: token <key>`` and ``?token=<key>`` get past auth on every /api route
    (the route answers: 404 for made-up kernels), and on no other route."""
    forms = {
        "token scheme": ({"Authorization": f"token {keys.a}"}, ""),
        "query": ({}, f"?token={keys.a}"),
    }
    for endpoint in endpoints(api.app):
        if endpoint.template == "/healthz":
            continue
        for name, (headers, query) in forms.items():
            what = f"{endpoint} with the {name}"
            if endpoint.kind == "websocket":
                status, _ = ws_refusal(api, endpoint.url + query, headers)
            else:
                response = call(api, endpoint, headers, query)
                status = response.status_code
                assert status < 500, (what, response.text[:300])
            if is_jupyter(endpoint):
                assert status != 401, what
            else:
                assert status == 401, what


def test_only_healthz_is_public(api: TestClient) -> None:
    """The set of routes answering without a key is exactly {GET /healthz}."""
    public = set()
    for endpoint in endpoints(api.app):
        try:
            if endpoint.kind == "websocket":
                status, _ = ws_refusal(api, endpoint.url, {})
            else:
                status = call(api, endpoint, {}).status_code
        except Exception:  # the route ran (and failed without a caller): it is not guarded
            status = 500
        if status != 401:
            public.add((endpoint.method, endpoint.template))
    assert public == {("GET", "/healthz")}
    health = api.get("/healthz")
    assert health.status_code == 200
    assert health.json() == {"status": "ok"}


@pytest.mark.parametrize("path", ["/openapi.json", "/docs", "/redoc", "/docs/oauth2-redirect"])
def test_openapi_and_docs_need_a_key(api: TestClient, keys: Keys, path: str) -> None:
    assert_unauthenticated(api.get(path), "GET", path)
    assert_unauthenticated(api.get(path, headers=auth(keys.revoked)), "GET", path)
    assert api.get(path, headers=auth(keys.a)).status_code == 200


def test_unknown_paths_need_a_key_too(api: TestClient, keys: Keys) -> None:
    """Without a key nothing can be learnt about the routes: unknown paths are 401, not 404."""
    for path in ("/", "/v1", "/v1/nope", "/v1/jobs/x/y/z", "/healthz/x", "/admin"):
        assert_unauthenticated(api.get(path), "GET", path)
        assert_unauthenticated(api.post(path), "POST", path)
        assert api.get(path, headers=auth(keys.a)).status_code == 404, path


def test_keys_in_the_url_are_ignored(api: TestClient, keys: Keys) -> None:
    """Keys never travel in URLs (they end up in logs): a query-string key is no key. The one
    exception is ``?token=`` on the Jupyter routes, tested above."""
    names = ("api_key", "key", "token", "access_token")
    for endpoint in endpoints(api.app):
        if endpoint.template == "/healthz":
            continue
        for name in names:
            if name == "token" and is_jupyter(endpoint):
                continue
            query = f"?{name}={keys.a}"
            if endpoint.kind == "websocket":
                status, _ = ws_refusal(api, endpoint.url + query, {})
                assert status == 401, (endpoint, query)
            else:
                response = call(api, endpoint, {}, query)
                assert_unauthenticated(response, endpoint.method, f"{endpoint}{query}")


def test_a_valid_key_gets_through(api: TestClient, keys: Keys) -> None:
    """With a valid key (Bearer or X-API-Key) no route answers 401: it is the route that
    answers (404 for the made-up ids and kernel, 403 for /metrics, 4xx for missing bodies)."""
    found = endpoints(api.app)
    for endpoint in found:
        for headers in (auth(keys.a), {"X-API-Key": keys.b}, auth(keys.admin)):
            if endpoint.kind == "websocket":
                status, body = ws_refusal(api, endpoint.url, headers)
                assert status == 404, (endpoint, status, body)
            else:
                response = call(api, endpoint, headers)
                assert response.status_code != 401, (endpoint, response.text[:300])
                assert response.status_code < 500, (endpoint, response.text[:300])
    listed = api.get("/v1/jobs", headers={"X-API-Key": keys.a})
    assert listed.status_code == 200
    assert listed.json() == {"jobs": []}
    assert api.get("/v1/sessions", headers={"x-api-key": keys.b}).status_code == 200
    assert api.get(f"/v1/jobs/{FAKE['job_id']}", headers=auth(keys.a)).status_code == 404


# -- /metrics ---------------------------------------------------------------------------------


def test_metrics_need_an_admin_key(api: TestClient, keys: Keys) -> None:
    job = api.post(
        "/v1/jobs?wait=true", json={"files": {"main.py": "print(1)"}}, headers=auth(keys.a)
    )
    assert job.status_code == 200, job.text
    assert job.json()["status"] == "succeeded", job.json()
    for key in (keys.a, keys.b):
        refused = api.get("/metrics", headers=auth(key))
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["type"] == "PermissionDenied"
        assert "execbox_" not in refused.text
    assert_unauthenticated(api.get("/metrics"), "GET", "/metrics")
    assert_unauthenticated(api.get("/metrics", headers=auth(keys.revoked)), "GET", "/metrics")
    response = api.get("/metrics", headers=auth(keys.admin))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert "# TYPE execbox_jobs_total counter" in text
    assert re.search(r'^execbox_jobs_total\{status="succeeded"\} 1\.0$', text, re.M), text
    assert "execbox_http_requests_total" in text
    assert api.get("/metrics", headers={"X-API-Key": keys.admin}).status_code == 200


# -- keys at rest -----------------------------------------------------------------------------


def _dump_database(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, as stored."""
    from sqlalchemy import MetaData, select
    from sqlalchemy.ext.asyncio import create_async_engine

    async_url = url.replace("sqlite:///", "sqlite+aiosqlite:///", 1)

    async def dump() -> dict[str, list[tuple[Any, ...]]]:
        engine = create_async_engine(async_url)
        try:
            async with engine.connect() as connection:
                metadata = MetaData()
                await connection.run_sync(metadata.reflect)
                return {
                    name: [tuple(row) for row in (await connection.execute(select(table))).all()]
                    for name, table in metadata.tables.items()
                }
        finally:
            await engine.dispose()

    return anyio.run(dump)


def test_keys_are_stored_hashed(database_url: str, keys: Keys, api: TestClient) -> None:
    """No table holds a key's secret (nor the whole token); api_keys holds its SHA-256."""
    tokens = [keys.a, keys.b, keys.admin, keys.revoked]
    assert api.get("/v1/jobs", headers=auth(keys.a)).status_code == 200  # a key in use
    parsed = [TOKEN.fullmatch(token) for token in tokens]
    assert all(parsed)
    secrets = {m[2]: m[1] for m in parsed if m}  # secret -> key id
    tables = _dump_database(database_url)
    assert tables["api_keys"], tables
    everything = repr(tables)
    for secret in secrets:
        assert secret not in everything
        assert secret.upper() not in everything.upper()
    stored = {row[0]: row for row in tables["api_keys"]}
    for secret, key_id in secrets.items():
        assert key_id in stored
        assert hashlib.sha256(secret.encode()).hexdigest() in stored[key_id]
    if database_url.startswith("sqlite"):
        path = Path(database_url.partition(":///")[2])
        with sqlite3.connect(path) as connection:
            rows = connection.execute("SELECT id, secret_sha256 FROM api_keys").fetchall()
        for secret, key_id in secrets.items():
            assert (key_id, hashlib.sha256(secret.encode()).hexdigest()) in rows
        raw = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
        assert raw
        for secret in secrets:
            assert secret.encode() not in raw


# -- the CLI against a real server ------------------------------------------------------------


def execbox(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VENV_BIN / "execbox"), *args], capture_output=True, text=True, timeout=60
    )


def upgrade(http: httpx.Client, key: str | None, path: str | None = None) -> httpx.Response:
    """A WebSocket handshake to uvicorn as it runs for real; a refusal is a plain response."""
    headers = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        **(auth(key) if key else {}),
    }
    return http.get(path or f"/v1/sessions/{FAKE['session_id']}/stream", headers=headers)


def test_cli_keys_and_revocation_while_serving(sqlite_url: str) -> None:
    """`keys create` prints the token once (stdout), `keys list` never a secret, and a key
    revoked by `keys revoke` is refused on the next request to a running server."""
    created = execbox(
        "keys", "create", "--tenant", "cli-tenant", "--name", "laptop", "--db", sqlite_url
    )
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    match = TOKEN.fullmatch(token)
    assert match, created.stdout
    assert created.stdout == token + "\n"  # the token and nothing else, on stdout
    key_id, secret = match.groups()
    assert secret not in created.stderr
    assert key_id in created.stderr  # says which key it made
    other = execbox("keys", "create", "--tenant", "cli-tenant", "--db", sqlite_url)
    assert other.returncode == 0, other.stderr
    other_token = other.stdout.strip()
    other_match = TOKEN.fullmatch(other_token)
    assert other_match
    assert other_token != token

    listed = execbox("keys", "list", "--db", sqlite_url)
    assert listed.returncode == 0, listed.stderr
    assert key_id in listed.stdout
    assert other_match[1] in listed.stdout
    for shown in (listed.stdout, listed.stderr):
        assert secret not in shown
        assert other_match[2] not in shown
        assert not re.search(r"[0-9a-f]{64}", shown), shown

    with ServerProcess(sqlite_url, "--pool-size", "0", "--session-pool-size", "0") as server:
        base = server.base
        with httpx.Client(base_url=base, timeout=30) as http:
            assert http.get("/v1/jobs", headers=auth(token)).status_code == 200
            assert http.get("/v1/jobs", headers={"X-API-Key": token}).status_code == 200
            assert http.get("/v1/sessions", headers=auth(other_token)).status_code == 200
            assert http.get("/v1/jobs").status_code == 401
            assert upgrade(http, token).status_code == 404  # past auth: no such session
            assert upgrade(http, None).status_code == 401
            # Keys in WebSocket URLs, which uvicorn logs with their query: none may be logged.
            native = f"/v1/sessions/{FAKE['session_id']}/stream?token={token}"
            assert upgrade(http, None, native).status_code == 401
            kernel = f"/api/kernels/{FAKE['kernel_id']}/channels?token={token}&session_id=s1"
            assert upgrade(http, None, kernel).status_code == 404  # past auth: no such kernel

            revoked = execbox("keys", "revoke", key_id, "--db", sqlite_url)
            assert revoked.returncode == 0, revoked.stderr

            for headers in (auth(token), {"X-API-Key": token}):
                response = http.get("/v1/jobs", headers=headers)
                assert response.status_code == 401, response.text
                assert response.json()["error"]["type"] == "AuthenticationError"
            assert http.get("/v1/jobs", headers=auth(other_token)).status_code == 200
            denied = upgrade(http, token)
            assert denied.status_code == 401, denied.text
            assert denied.json()["error"]["type"] == "AuthenticationError"
        log = server.log()
    assert secret not in log  # the server never logs a secret
    assert other_match[2] not in log

    again = execbox("keys", "revoke", key_id, "--db", sqlite_url)
    assert again.returncode != 0
    assert key_id in again.stderr
    after = execbox("keys", "list", "--db", sqlite_url)
    assert after.returncode == 0, after.stderr
    line = next(line for line in after.stdout.splitlines() if line.startswith(key_id))
    assert "revoked" in line
    other_line = next(line for line in after.stdout.splitlines() if line.startswith(other_match[1]))
    assert "active" in other_line
    assert secret not in after.stdout
