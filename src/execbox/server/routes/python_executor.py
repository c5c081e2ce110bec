"""python-executor's own HTTP API, served by execbox: its client works against us unchanged.

``POST /api/v1/exec/sync`` and ``/exec/async`` take multipart form data (a ``tar`` file part and
a ``metadata`` JSON part), ``GET``/``DELETE /api/v1/executions/{id}`` read and kill, ``POST
/api/v1/eval`` takes JSON; paths, status codes (200, 202, 400, 404), result fields and the
``{"error": "..."}`` error shape are python-executor's. Each execution is an execbox job of the
caller's tenant, made through the same helpers as ``/v1/jobs``: recorded, counted against the
key's job quota, its limits clamped to the tenant's, visible under ``/v1/jobs/{id}`` too.
Metadata maps to the job as ``execbox.compat.python_executor.mapping`` describes; what cannot
be honoured is a 400. The key is the usual one (``Authorization: Bearer`` or ``X-API-Key``).
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec

from fastapi import APIRouter, Request
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response

from ...compat.python_executor.evaluation import error_details, eval_program, split_result
from ...compat.python_executor.mapping import (
    check_python_version,
    config_from,
    execution_result,
    job_options,
    live_result,
    metadata_from,
    status_of,
    to_wire,
)
from ...compat.python_executor.types import ExecutionResult, Metadata
from ...engine.files import FilesInput
from ...engine.jobs import JobSpec
from ...errors import ExecboxError, InvalidSpec, JobNotFound
from ...models import JobStatus
from ...models.wire import job_result_from_json
from ..responses import STATUS_OF
from ..schemas import LimitsIn
from ..services import principal_of, services_of
from ..views import job_view
from .jobs import job_after, owned_job, start_job, stop_job, tenant_job_spec

__all__ = ["router"]

router = APIRouter(tags=["python-executor"])
log = logging.getLogger("execbox.server")

P = ParamSpec("P")
WAIT_GRACE = 30.0
"""How long past its timeout a synchronous run is waited for before its state is answered."""
_EVAL_FIELDS = frozenset(
    {"code", "files", "entrypoint", "stdin", "config", "python_version", "eval_last_expr"}
    | {"requirements_txt"}
)

_EXEC_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["tar", "metadata"],
                    "properties": {
                        "tar": {"type": "string", "format": "binary", "description": "a tar"},
                        "metadata": {
                            "type": "string",
                            "description": 'JSON, e.g. {"entrypoint": "main.py", "config": '
                            '{"timeout_seconds": 60, "memory_mb": 256}}',
                        },
                    },
                }
            }
        },
    }
}
_EVAL_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {name: {} for name in sorted(_EVAL_FIELDS)},
                }
            }
        },
    }
}


def _refusal(status: int, message: str, kind: str) -> JSONResponse:
    return JSONResponse({"error": message, "type": kind}, status)


def _flat_errors(
    handler: Callable[P, Awaitable[Response]],
) -> Callable[P, Awaitable[Response]]:
    """Errors in python-executor's shape, ``{"error": "message"}`` (and our ``type``)."""

    @functools.wraps(handler)
    async def answer(*args: P.args, **kwargs: P.kwargs) -> Response:
        try:
            return await handler(*args, **kwargs)
        except ExecboxError as exc:
            status = next((code for kind, code in STATUS_OF if isinstance(exc, kind)), 500)
            if status == 500:
                log.error("unexpected %s: %s", type(exc).__name__, exc)
            return _refusal(status, str(exc), type(exc).__name__)
        except HTTPException as exc:  # an unreadable multipart body
            return _refusal(exc.status_code, str(exc.detail), "BadRequest")

    return answer


async def _exec_request(request: Request) -> tuple[bytes, Metadata]:
    """The ``tar`` and ``metadata`` parts, as python-executor's clients send them."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise InvalidSpec("send multipart/form-data with a 'tar' file and a 'metadata' JSON part")
    settings = services_of(request).settings
    async with request.form(max_files=4, max_fields=8, max_part_size=settings.max_body) as form:
        tar, text = form.get("tar"), form.get("metadata")
        if not isinstance(tar, UploadFile):
            raise InvalidSpec("missing tar file: send the code as a 'tar' file part")
        archive = await tar.read()
        if isinstance(text, UploadFile):
            text = (await text.read()).decode("utf-8", "replace")
    if not text:
        raise InvalidSpec("missing metadata: send a 'metadata' part with JSON")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InvalidSpec(f"metadata is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidSpec("metadata must be a JSON object")
    return archive, metadata_from(data)


def _job_spec(request: Request, files: FilesInput, metadata: Metadata) -> JobSpec:
    options = job_options(metadata)
    return tenant_job_spec(
        principal_of(request),
        files,
        entrypoint=options.entrypoint,
        args=options.args,
        requirements=options.requirements,
        pre_commands=options.pre_commands,
        stdin=options.stdin,
        env=options.env,
        timeout=options.timeout,
        limits=LimitsIn(**options.limit_values()),
        network=options.network,
    )


async def _execution(request: Request, execution_id: str) -> dict[str, Any]:
    try:
        return await owned_job(request, execution_id)
    except JobNotFound:
        raise JobNotFound(f"execution not found: {execution_id!r}") from None


def _result(request: Request, row: dict[str, Any]) -> ExecutionResult:
    """A record as python-executor's result; a live run shows its output so far."""
    status = JobStatus(row["status"])
    if status.terminal:
        return execution_result(job_result_from_json(job_view(row)))
    result = live_result(row["id"], status, row.get("started_at"))
    try:
        live = services_of(request).engine.jobs.get(row["id"])
    except JobNotFound:
        return result
    result.stdout = live.stdout.value().decode("utf-8", "replace")
    result.stderr = live.stderr.value().decode("utf-8", "replace")
    return result


@router.post("/api/v1/exec/sync", summary="python-executor: run and wait", openapi_extra=_EXEC_BODY)
@_flat_errors
async def exec_sync(request: Request) -> Response:
    archive, metadata = await _exec_request(request)
    spec = _job_spec(request, archive, metadata)
    job_id = await start_job(request, spec)
    row = await job_after(request, job_id, spec.timeout + WAIT_GRACE)
    return JSONResponse(to_wire(_result(request, row)))


@router.post("/api/v1/exec/async", summary="python-executor: start a run", openapi_extra=_EXEC_BODY)
@_flat_errors
async def exec_async(request: Request) -> Response:
    archive, metadata = await _exec_request(request)
    job_id = await start_job(request, _job_spec(request, archive, metadata))
    return JSONResponse({"execution_id": job_id}, 202)


@router.get("/api/v1/executions/{execution_id}", summary="python-executor: a run's state")
@_flat_errors
async def get_execution(request: Request, execution_id: str) -> Response:
    row = await _execution(request, execution_id)
    return JSONResponse(to_wire(_result(request, row)))


@router.delete("/api/v1/executions/{execution_id}", summary="python-executor: kill a run")
@_flat_errors
async def kill_execution(request: Request, execution_id: str) -> Response:
    await _execution(request, execution_id)
    row = await stop_job(request, execution_id)
    return JSONResponse({"status": status_of(JobStatus(row["status"])).value})


@router.post(
    "/api/v1/eval", summary="python-executor: run code from JSON", openapi_extra=_EVAL_BODY
)
@_flat_errors
async def evaluate(request: Request) -> Response:
    try:
        body = json.loads(await request.body())
    except ValueError as exc:
        raise InvalidSpec(f"invalid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidSpec("the body must be a JSON object")
    unknown = sorted(set(body) - _EVAL_FIELDS)
    if unknown:
        raise InvalidSpec(f"unknown field {unknown[0]!r}; known: {', '.join(sorted(_EVAL_FIELDS))}")
    last_expr = body.get("eval_last_expr", False)
    if not isinstance(last_expr, bool):
        raise InvalidSpec("eval_last_expr must be true or false")
    version = body.get("python_version") or None
    if version is not None and not isinstance(version, str):
        raise InvalidSpec("python_version must be a string such as '3.11'")
    check_python_version(version)
    program = eval_program(body.get("code"), body.get("files"), body.get("entrypoint"), last_expr)
    requirements = body.get("requirements_txt")
    config = body.get("config")
    metadata = Metadata(
        entrypoint=program.entrypoint,
        stdin=body.get("stdin"),
        script_args=list(program.args),
        requirements_txt=None if requirements == "-" else requirements,
        config=None if config is None else config_from(config),
    )
    spec = _job_spec(request, program.files, metadata)
    job_id = await start_job(request, spec)
    result = _result(request, await job_after(request, job_id, spec.timeout + WAIT_GRACE))
    extra: dict[str, Any] = {}
    if result.exit_code == 0 and last_expr and result.stdout is not None:
        result.stdout, result.result = split_result(result.stdout)
    elif result.exit_code and result.stderr:
        extra["error_type"], extra["error_line"] = error_details(result.stderr, program.source)
    return JSONResponse(to_wire(result, **extra))


@router.get("/health", summary="python-executor: health (with a key, unlike /healthz)")
async def health() -> dict[str, str]:
    return {"status": "ok"}
