"""Jobs: create (JSON or multipart with a tar), wait, get, list, kill, stream, download."""

from __future__ import annotations

import base64
import binascii
import codecs
import contextlib
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.responses import JSONResponse, Response

from ...engine.files import FilesInput
from ...engine.jobs import JobSpec, make_job_spec, new_job_id
from ...engine.requirements import RequirementsInput
from ...errors import ExecboxTimeout, InvalidSpec, JobNotFound
from ...models import JobStatus, OutputEvent, StatusEvent
from ...models.wire import to_json
from ...store.accounts import Principal
from ..quotas import check_network, clamp_limits, clamp_seconds
from ..responses import ndjson
from ..schemas import JobIn, LimitsIn
from ..services import principal_of, services_of
from ..views import MAX_WAIT, OutputEncoding, b64encode, job_spec_record, job_view

__all__ = ["job_after", "owned_job", "router", "start_job", "stop_job", "tenant_job_spec"]

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

MAX_UPLOAD_FILES = 10_000

_CREATE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/JobIn"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "spec": {"type": "string", "description": "JobIn as JSON, without files"},
                        "archive": {"type": "string", "format": "binary"},
                        "files": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "each part's filename is its path in the workspace",
                        },
                    },
                }
            },
        },
    }
}


async def _read_body(request: Request) -> tuple[JobIn, FilesInput]:
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        settings = services_of(request).settings
        async with request.form(
            max_files=MAX_UPLOAD_FILES, max_fields=16, max_part_size=settings.max_body
        ) as form:
            spec_text = form.get("spec") or "{}"
            if not isinstance(spec_text, str):
                raise InvalidSpec("the 'spec' part must be JSON text, not a file")
            body = JobIn.model_validate_json(spec_text)
            archive = form.get("archive")
            uploads = [part for part in form.getlist("files") if isinstance(part, UploadFile)]
            if isinstance(archive, UploadFile):
                if uploads or body.files or body.files_base64:
                    raise InvalidSpec("send either an archive or files, not both")
                return body, await archive.read()
            files: dict[str, str | bytes] = {}
            for part in uploads:
                if not part.filename:
                    raise InvalidSpec("every uploaded file needs a filename (its path)")
                files[part.filename] = await part.read()
            return body, _merged(body, files)
    body = JobIn.model_validate_json(await request.body())
    if body.archive_base64 is not None:
        if body.files or body.files_base64:
            raise InvalidSpec("send either archive_base64 or files, not both")
        return body, _decode(body.archive_base64, "archive_base64")
    return body, _merged(body, {})


def _decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidSpec(f"{what} is not valid base64") from None


def _merged(body: JobIn, files: dict[str, str | bytes]) -> dict[str, str | bytes]:
    merged: dict[str, str | bytes] = dict(files)
    merged.update(body.files)
    for name, text in body.files_base64.items():
        merged[name] = _decode(text, f"files_base64[{name!r}]")
    return merged


async def owned_job(request: Request, job_id: str) -> dict[str, Any]:
    """The caller's tenant's record of the job; JobNotFound for another tenant's."""
    row = await services_of(request).store.get_job(principal_of(request).tenant_id, job_id)
    if row is None:
        raise JobNotFound(f"no job {job_id!r}")
    return row


def tenant_job_spec(
    principal: Principal,
    files: FilesInput,
    *,
    entrypoint: str | None,
    args: Sequence[str],
    requirements: RequirementsInput,
    pre_commands: Sequence[str],
    stdin: str | bytes | None,
    env: Mapping[str, str],
    timeout: float | None,
    limits: LimitsIn | None,
    network: bool,
) -> JobSpec:
    """A validated job spec within the tenant's maxima (clamped) and rights (the network)."""
    tenant = principal.limits
    return make_job_spec(
        files,
        entrypoint=entrypoint,
        args=args,
        requirements=requirements,
        pre_commands=pre_commands,
        stdin=stdin,
        env=env,
        timeout=clamp_seconds(timeout, tenant.max_timeout, name="timeout"),
        limits=clamp_limits(limits, tenant),
        network=check_network(network, tenant),
    )


async def start_job(request: Request, spec: JobSpec) -> str:
    """Take a job of the key's quota, record the job, start it; its id."""
    services, principal = services_of(request), principal_of(request)
    job_id = new_job_id()
    services.quotas.take("job", principal, job_id)
    try:
        created = datetime.now(UTC)
        await services.store.insert_job(job_id, principal, job_spec_record(spec), created)
        services.engine.jobs.submit(spec, job_id)
    except BaseException:
        services.quotas.release(job_id)
        raise
    return job_id


async def job_after(request: Request, job_id: str, timeout: float) -> dict[str, Any]:
    """The job's record once it has ended, or as it is after ``timeout`` seconds."""
    with anyio.move_on_after(timeout):
        await services_of(request).engine.jobs.wait(job_id)
    return await owned_job(request, job_id)


async def stop_job(request: Request, job_id: str) -> dict[str, Any]:
    """Kill the caller's job if it still runs, wait (10 s at most) for its end; its record."""
    services = services_of(request)
    row = await owned_job(request, job_id)
    if not JobStatus(row["status"]).terminal:
        try:
            await services.engine.jobs.kill(job_id)
            await services.engine.jobs.wait(job_id, timeout=10)
        except JobNotFound:
            pass  # left by an earlier server process: reconciled at start
        row = await owned_job(request, job_id)
    return row


@router.post("", status_code=201, openapi_extra=_CREATE_BODY, summary="Create a job")
async def create_job(
    request: Request,
    wait: Annotated[bool, Query(description="answer when the job has ended")] = False,
    wait_timeout: Annotated[float | None, Query(gt=0, description="seconds to wait")] = None,
    output: Annotated[
        OutputEncoding, Query(description="with wait: stdout/stderr as text, or base64")
    ] = "text",
) -> Response:
    principal = principal_of(request)
    try:
        body, files = await _read_body(request)
    except ValidationError as exc:  # the same answer as a body FastAPI validates itself
        errors = [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
        raise RequestValidationError(errors) from None
    spec = tenant_job_spec(
        principal,
        files,
        entrypoint=body.entrypoint,
        args=body.args,
        requirements=body.requirements,
        pre_commands=body.pre_commands,
        stdin=body.stdin
        if body.stdin_base64 is None
        else _decode(body.stdin_base64, "stdin_base64"),
        env=body.env,
        timeout=body.timeout,
        limits=body.limits,
        network=body.network,
    )
    job_id = await start_job(request, spec)
    if wait:
        row = await job_after(request, job_id, wait_timeout or spec.timeout + 30)
        done = JobStatus(row["status"]).terminal
        return JSONResponse(job_view(row, output=output), 200 if done else 202)
    return JSONResponse(job_view(await owned_job(request, job_id), outputs=False), 201)


@router.get("", summary="List jobs, newest first")
async def list_jobs(
    request: Request,
    status: Annotated[list[JobStatus] | None, Query()] = None,
    since: Annotated[datetime | None, Query(description="created at or after")] = None,
    until: Annotated[datetime | None, Query(description="created before")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    rows = await services_of(request).store.list_jobs(
        principal_of(request).tenant_id,
        status=[s.value for s in status or ()],
        since=since,
        until=until,
        limit=limit,
    )
    return {"jobs": [job_view(row, outputs=False) for row in rows]}


@router.get("/{job_id}", summary="A job's record, with its outputs and status history")
async def get_job(
    request: Request,
    job_id: str,
    wait: Annotated[
        float | None, Query(gt=0, le=MAX_WAIT, description="seconds to wait for the end")
    ] = None,
    output: Annotated[
        OutputEncoding, Query(description="stdout/stderr as text, or exact bytes in base64")
    ] = "text",
) -> dict[str, Any]:
    services = services_of(request)
    row = await owned_job(request, job_id)
    if wait is not None and not JobStatus(row["status"]).terminal:
        with contextlib.suppress(ExecboxTimeout, JobNotFound):
            await services.engine.jobs.wait(job_id, wait)
        row = await owned_job(request, job_id)
    history = await services.store.status_history(job_id)
    return job_view(row, history=to_json(history), output=output)


@router.post("/{job_id}/kill", summary="Kill a job; a finished job is left as it is")
async def kill_job(request: Request, job_id: str) -> dict[str, Any]:
    return job_view(await stop_job(request, job_id), outputs=False)


@router.get(
    "/{job_id}/events",
    summary="Stream a job's output as it comes, then its result (NDJSON)",
    response_class=Response,
)
async def job_events(
    request: Request,
    job_id: str,
    output: Annotated[
        OutputEncoding, Query(description="output chunks as text, or exact bytes in base64")
    ] = "text",
) -> Response:
    services = services_of(request)
    row = await owned_job(request, job_id)
    try:
        events = services.engine.jobs.events(job_id)
    except JobNotFound:  # left by an earlier server process: the record has it all
        events = None

    decoders = {s: codecs.getincrementaldecoder("utf-8")("replace") for s in ("stdout", "stderr")}

    def chunk(stream: str, data: bytes) -> dict[str, Any]:
        if output == "base64":
            return {"type": "output", "stream": stream, "data_base64": b64encode(data)}
        return {"type": "output", "stream": stream, "data": decoders[stream].decode(data)}

    async def lines() -> AsyncIterator[dict[str, Any]]:
        if events is None:  # from the record alone
            for stream in ("stdout", "stderr"):
                if row.get(stream):
                    yield chunk(stream, row[stream])
            yield {"type": "result", "result": job_view(row, output=output)}
            return
        async for event in events:
            if isinstance(event, OutputEvent):
                line = chunk(event.stream, event.data)
                if line["data" if output == "text" else "data_base64"]:
                    yield line
            elif isinstance(event, StatusEvent):
                if event.status.terminal:
                    final = await owned_job(request, job_id)
                    yield {"type": "result", "result": job_view(final, output=output)}
                else:
                    yield {"type": "status", "status": event.status.value}

    return ndjson(lines())


@router.get(
    "/{job_id}/{stream}",
    summary="Download a job's stdout or stderr as bytes",
    response_class=Response,
)
async def job_output(
    request: Request, job_id: str, stream: Literal["stdout", "stderr"]
) -> Response:
    services = services_of(request)
    row = await owned_job(request, job_id)
    data, truncated = row.get(stream) or b"", bool(row.get(f"{stream}_truncated"))
    if not JobStatus(row["status"]).terminal:
        try:  # still running: what it has produced so far
            live = services.engine.jobs.get(job_id)
            capture = live.stdout if stream == "stdout" else live.stderr
            data, truncated = capture.value(), capture.truncated
        except JobNotFound:
            pass
    headers = {
        "X-Execbox-Truncated": json.dumps(truncated),
        "Content-Disposition": f'attachment; filename="{job_id}.{stream}"',
    }
    return Response(data, media_type="application/octet-stream", headers=headers)
