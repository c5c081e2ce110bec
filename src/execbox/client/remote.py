"""The SDK over HTTP: the same transport methods as the embedded engine, answered by a server.

Every call is one request to the ``/v1`` API. Waits are long polls (``?wait=``) repeated until
the caller's timeout, so no request outlives a proxy's idle limit; streams are the server's
NDJSON, read line by line as produced. Job output travels as base64, so bytes arrive exactly as
the program wrote them. Errors come back as the server's ``{"error": {"type", "message"}}`` and
are raised as the exception of the same name in ``execbox.errors``: code written against an
embedded client catches the same classes.

httpx is imported when a remote client opens, not with ``import execbox``.
"""

from __future__ import annotations

import base64
import io
import json
import math
import tarfile
import time
from collections.abc import AsyncIterator
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from .. import errors
from ..engine.files import workspace_relative
from ..errors import ExecboxError, ExecboxTimeout, InvalidSpec, ServerUnavailable
from ..models import (
    DirEntry,
    ExecutionEvent,
    ExecutionResult,
    JobEvent,
    JobResult,
    JobStatus,
    SessionInfo,
)
from ..models.wire import (
    dir_entry_from_json,
    execution_event_from_json,
    execution_result_from_json,
    job_event_from_json,
    job_result_from_json,
    session_info_from_json,
    to_json,
)
from .transports import SyncPortalTransport

if TYPE_CHECKING:
    import httpx

    from ..boxes.base import FileEntry
    from ..engine.jobs import JobSpec
    from ..engine.specs import SessionSpec

__all__ = ["AsyncRemoteTransport", "SyncRemoteTransport", "check_url"]

LONG_POLL = 60.0
"""Seconds one waiting request may last; longer waits are several of them."""
REQUEST_TIMEOUT = 60.0
"""Seconds to wait for a plain request's answer (the server answers those at once)."""

_FALLBACK_BY_STATUS: dict[int, type[ExecboxError]] = {
    400: InvalidSpec,
    401: errors.AuthenticationError,
    403: errors.PermissionDenied,
    409: errors.InvalidState,
    413: errors.PayloadTooLarge,
    422: InvalidSpec,
    429: errors.QuotaExceeded,
    504: ExecboxTimeout,
}


def check_url(url: str) -> str:
    """The server's base URL without a trailing slash; InvalidSpec for anything else."""
    if not isinstance(url, str):
        raise InvalidSpec(f"url must be a string like 'http://host:8000', not {url!r}")
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidSpec(f"url must look like 'http://host:8000' or 'https://host', not {url!r}")
    return url.strip().rstrip("/")


def error_from_response(status: int, body: bytes, what: str) -> ExecboxError:
    """The exception the server's error body names, as the embedded engine would raise it."""
    kind, message, reason = "", "", None
    try:
        detail = json.loads(body)["error"]
        kind, message, reason = str(detail["type"]), str(detail["message"]), detail.get("reason")
    except (ValueError, KeyError, TypeError):
        message = body.decode("utf-8", "replace").strip()[:300] or f"HTTP {status}"
    cls = getattr(errors, kind, None)
    if not (isinstance(cls, type) and issubclass(cls, ExecboxError)) or cls is errors.CellError:
        cls = _FALLBACK_BY_STATUS.get(status, ExecboxError)
        if status == 404:
            message = f"{what}: {message} (is this URL an execbox server of this version?)"
        elif cls is ExecboxError:
            message = f"{what}: the server answered {status}: {message}"
    if cls is errors.SessionClosed:
        return errors.SessionClosed(message, reason if isinstance(reason, str) else None)
    return cls(message)


def _tar(entries: tuple[FileEntry, ...]) -> bytes:
    """A job's files as one tar, kinds and modes kept: the server checks it like any upload."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for entry in entries:
            info = tarfile.TarInfo(entry.name)
            info.mode = entry.mode
            if entry.kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif entry.kind in ("symlink", "hardlink"):
                info.type = tarfile.SYMTYPE if entry.kind == "symlink" else tarfile.LNKTYPE
                info.linkname = entry.link or ""
                tar.addfile(info)
            else:
                info.size = len(entry.data)
                tar.addfile(info, io.BytesIO(entry.data))
    return buffer.getvalue()


def _job_body(spec: JobSpec) -> dict[str, Any]:
    return {
        "entrypoint": spec.entrypoint,
        "args": list(spec.args),
        "requirements": list(spec.requirements.lines),
        "pre_commands": list(spec.pre_commands),
        "stdin_base64": None if spec.stdin is None else base64.b64encode(spec.stdin).decode(),
        "env": dict(spec.env),
        "timeout": spec.timeout,
        "limits": to_json(spec.limits),
        "network": spec.network,
    }


def _job_parts(spec: JobSpec) -> dict[str, Any]:
    """The multipart body of a job: its spec as JSON, its files as one tar."""
    return {
        "spec": (None, json.dumps(_job_body(spec)), "application/json"),
        "archive": ("files.tar", _tar(spec.entries), "application/x-tar"),
    }


def _session_body(spec: SessionSpec) -> dict[str, Any]:
    if spec.mounts:
        raise InvalidSpec(
            "mounts are host paths, so they work only embedded: through a server, "
            "write files with session.files.write() instead"
        )
    return {
        "kernel": spec.kernel,
        "limits": to_json(spec.limits),
        "network": spec.network,
        "env": dict(spec.env),
        "cwd": spec.cwd,
        "requirements": list(spec.requirements.lines),
        "idle_timeout": spec.idle_timeout,
        "ttl": spec.ttl,
    }


def _path(value: str) -> str:
    return quote(value, safe="")


class AsyncRemoteTransport:
    """The transport of ``AsyncClient(url, api_key=...)``: the ``/v1`` API of a server."""

    def __init__(self, url: str, api_key: str | None = None) -> None:
        self.url = check_url(url)
        if api_key is not None and not isinstance(api_key, str):
            raise InvalidSpec("api_key must be a string")
        self._headers = {"Authorization": f"Bearer {api_key.strip()}"} if api_key else {}
        self._http: httpx.AsyncClient | None = None

    def __repr__(self) -> str:
        return f"<AsyncRemoteTransport {self.url}>"

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            raise ExecboxError(
                "the client is not open: use `async with AsyncClient(url) as client`"
            )
        return self._http

    async def __aenter__(self) -> AsyncRemoteTransport:
        import httpx

        if self._http is None:
            self._http = httpx.AsyncClient(
                base_url=self.url,
                headers={**self._headers, "User-Agent": "execbox-sdk"},
                timeout=httpx.Timeout(REQUEST_TIMEOUT, connect=10.0),
            )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections; what runs on the server goes on (it has its own lifecycle)."""
        http, self._http = self._http, None
        if http is not None:
            await http.aclose()

    # -- HTTP ---------------------------------------------------------------------------------

    async def _request(
        self, method: str, path: str, *, read_timeout: float | None = REQUEST_TIMEOUT, **kw: Any
    ) -> httpx.Response:
        import httpx

        timeout = httpx.Timeout(read_timeout, connect=10.0)
        try:
            response = await self.http.request(method, path, timeout=timeout, **kw)
        except httpx.TimeoutException:
            raise ServerUnavailable(f"{method} {path}: no answer from {self.url} in time") from None
        except httpx.HTTPError as exc:
            raise ServerUnavailable(
                f"cannot reach the execbox server at {self.url}: {exc}"
            ) from None
        if response.status_code >= 400:
            raise error_from_response(response.status_code, response.content, f"{method} {path}")
        return response

    async def api(self, method: str, path: str, **kw: Any) -> Any:
        """A JSON answer of any ``/v1`` route, errors raised as for the SDK's own calls: for
        tools (the CLI) that show what the SDK does not model, such as records and history."""
        return await self._json(method, path, **kw)

    async def download(self, path: str) -> bytes:
        return (await self._request("GET", path)).content

    async def _json(self, method: str, path: str, **kw: Any) -> Any:
        response = await self._request(method, path, **kw)
        try:
            return response.json()
        except ValueError:
            raise ServerUnavailable(f"{method} {path}: the answer is not JSON") from None

    async def _lines(self, path: str, params: dict[str, str] | None = None) -> AsyncIterator[Any]:
        """An NDJSON stream, one object per line as the server flushes it."""
        import httpx

        timeout = httpx.Timeout(None, connect=10.0)
        try:
            async with self.http.stream("GET", path, params=params, timeout=timeout) as response:
                if response.status_code >= 400:
                    body = await response.aread()
                    raise error_from_response(response.status_code, body, f"GET {path}")
                async for line in response.aiter_lines():
                    if line.strip():
                        yield json.loads(line)
        except httpx.HTTPError as exc:
            raise ServerUnavailable(f"the stream {path} from {self.url} broke: {exc}") from None

    async def _poll(self, path: str, timeout: float | None, params: dict[str, str]) -> Any:
        """GET ``path`` with long polls until its status is terminal or ``timeout`` passes."""
        deadline = math.inf if timeout is None else time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            wait = max(0.001, min(LONG_POLL, left))
            data = await self._json(
                "GET", path, params={**params, "wait": str(wait)}, read_timeout=wait + 30
            )
            if data["status"] not in ("queued", "running") or time.monotonic() >= deadline:
                return data

    # -- jobs ---------------------------------------------------------------------------------

    async def submit_job(self, spec: JobSpec) -> str:
        data = await self._json("POST", "/v1/jobs", files=_job_parts(spec))
        return str(data["id"])

    async def run_job(self, spec: JobSpec) -> JobResult:
        """Submit and wait in one request; a job outlasting one long poll is then polled."""
        params = {"wait": "true", "wait_timeout": str(LONG_POLL), "output": "base64"}
        data = await self._json(
            "POST", "/v1/jobs", files=_job_parts(spec), params=params, read_timeout=LONG_POLL + 30
        )
        if data["status"] in ("queued", "running"):
            return await self.wait_job(str(data["id"]), None)
        return job_result_from_json(data)

    async def job_status(self, job_id: str) -> JobStatus:
        data = await self._json("GET", f"/v1/jobs/{_path(job_id)}")
        return JobStatus(data["status"])

    async def wait_job(self, job_id: str, timeout: float | None) -> JobResult:
        data = await self._poll(f"/v1/jobs/{_path(job_id)}", timeout, {"output": "base64"})
        result = job_result_from_json(data)
        if not result.status.terminal:
            raise ExecboxTimeout(f"job {job_id} is still {result.status} after {timeout} s")
        return result

    async def kill_job(self, job_id: str) -> None:
        await self._request("POST", f"/v1/jobs/{_path(job_id)}/kill")

    async def list_jobs(self) -> list[str]:
        data = await self._json("GET", "/v1/jobs", params={"limit": "1000"})
        return [job["id"] for job in data["jobs"]]

    async def job_events(self, job_id: str) -> AsyncIterator[JobEvent]:
        path = f"/v1/jobs/{_path(job_id)}/events"
        async for line in self._lines(path, {"output": "base64"}):
            event = job_event_from_json(line)
            if event is not None:
                yield event

    # -- sessions -----------------------------------------------------------------------------

    async def create_session(self, spec: SessionSpec, client_token: str | None) -> str:
        body = {**_session_body(spec), "client_token": client_token}
        data = await self._json("POST", "/v1/sessions", json=body)
        return str(data["id"])

    async def session_info(self, session_id: str) -> SessionInfo:
        return session_info_from_json(await self._json("GET", f"/v1/sessions/{_path(session_id)}"))

    async def list_sessions(self) -> list[str]:
        data = await self._json("GET", "/v1/sessions", params={"limit": "1000"})
        return [session["id"] for session in data["sessions"]]

    async def close_session(self, session_id: str) -> None:
        await self._request("DELETE", f"/v1/sessions/{_path(session_id)}")

    async def interrupt_session(self, session_id: str) -> None:
        await self._request("POST", f"/v1/sessions/{_path(session_id)}/interrupt")

    async def restart_session(self, session_id: str) -> None:
        await self._request("POST", f"/v1/sessions/{_path(session_id)}/restart")

    async def submit_execution(self, session_id: str, code: str, timeout: float | None) -> str:
        if not isinstance(code, str):
            raise InvalidSpec("code must be a string")
        body = {"code": code, "timeout": timeout}
        data = await self._json("POST", f"/v1/sessions/{_path(session_id)}/executions", json=body)
        return str(data["id"])

    async def execute(self, session_id: str, code: str, timeout: float | None) -> ExecutionResult:
        """Submit and wait in one request: the server answers when the result is recorded."""
        if not isinstance(code, str):
            raise InvalidSpec("code must be a string")
        body = {"code": code, "timeout": timeout, "wait": True}
        data = await self._json(
            "POST",
            f"/v1/sessions/{_path(session_id)}/executions",
            json=body,
            read_timeout=None,
        )
        return execution_result_from_json(data["result"], session_id)

    async def execution_events(
        self, session_id: str, execution_id: str
    ) -> AsyncIterator[ExecutionEvent]:
        path = f"/v1/sessions/{_path(session_id)}/executions/{_path(execution_id)}/events"
        async for line in self._lines(path):
            event = execution_event_from_json(line, session_id)
            if event is not None:
                yield event

    async def execution_result(
        self, session_id: str, execution_id: str, timeout: float | None
    ) -> ExecutionResult:
        path = f"/v1/sessions/{_path(session_id)}/executions/{_path(execution_id)}"
        data = await self._poll(path, timeout, {})
        if data["status"] in ("queued", "running"):
            raise ExecboxTimeout(
                f"execution {execution_id} is still {data['status']} after {timeout} s"
            )
        return execution_result_from_json(data["result"], session_id)

    async def send_input(self, session_id: str, execution_id: str, text: str) -> None:
        if not isinstance(text, str):
            raise InvalidSpec("input must be a string")
        path = f"/v1/sessions/{_path(session_id)}/executions/{_path(execution_id)}/input"
        await self._request("POST", path, json={"value": text})

    # -- files of a session -------------------------------------------------------------------

    def _file(self, session_id: str, path: str) -> str:
        """The URL of a workspace path, checked here too: a URL would resolve ``..`` itself."""
        relative = workspace_relative(path)
        return f"/v1/sessions/{_path(session_id)}/files/{quote(relative, safe='/')}"

    async def write_file(self, session_id: str, path: str, data: bytes) -> None:
        await self._request("PUT", self._file(session_id, path), content=data)

    async def read_file(self, session_id: str, path: str) -> bytes:
        return (await self._request("GET", self._file(session_id, path))).content

    async def list_files(self, session_id: str, path: str) -> list[DirEntry]:
        data = await self._json(
            "GET",
            f"/v1/sessions/{_path(session_id)}/files",
            params={"path": workspace_relative(path, allow_root=True)},
        )
        return [dir_entry_from_json(entry) for entry in data["entries"]]

    async def delete_file(self, session_id: str, path: str) -> None:
        await self._request("DELETE", self._file(session_id, path))


class SyncRemoteTransport(SyncPortalTransport):
    """The transport of ``Client(url, api_key=...)``: the async one, driven from a portal."""

    def __init__(self, url: str, api_key: str | None = None) -> None:
        super().__init__(AsyncRemoteTransport(url, api_key))
