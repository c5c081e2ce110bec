"""Files in a session's workspace: upload, download, list, delete. Every path is checked by
the engine (relative, no ``..``) and touched inside the box by its agent, never on the host."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.datastructures import UploadFile
from starlette.responses import Response

from ...errors import InvalidSpec
from ...models.wire import to_json
from ..services import services_of
from .sessions import open_session

__all__ = ["router"]

router = APIRouter(prefix="/v1/sessions/{session_id}/files", tags=["files"])

_RAW_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}
_MULTIPART = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "files": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "each part's filename is its path in the workspace",
                        }
                    },
                }
            }
        },
    }
}


@router.get("", summary="List a directory of the workspace")
async def list_files(
    request: Request, session_id: str, path: Annotated[str, Query()] = ""
) -> dict[str, Any]:
    await open_session(request, session_id)
    entries = await services_of(request).engine.sessions.list_files(session_id, path)
    return {"path": path, "entries": to_json(entries)}


@router.post("", openapi_extra=_MULTIPART, summary="Upload files (multipart)")
async def upload_files(request: Request, session_id: str) -> dict[str, Any]:
    await open_session(request, session_id)
    sessions = services_of(request).engine.sessions
    written = []
    max_part = services_of(request).settings.max_body
    async with request.form(max_files=1000, max_fields=0, max_part_size=max_part) as form:
        for part in form.getlist("files"):
            if not isinstance(part, UploadFile) or not part.filename:
                raise InvalidSpec("each 'files' part must be a file whose filename is its path")
            await sessions.write_file(session_id, part.filename, await part.read())
            written.append(part.filename)
    return {"written": written}


@router.put("/{path:path}", openapi_extra=_RAW_BODY, summary="Write one file (raw body)")
async def put_file(request: Request, session_id: str, path: str) -> dict[str, Any]:
    await open_session(request, session_id)
    data = await request.body()
    await services_of(request).engine.sessions.write_file(session_id, path, data)
    return {"path": path, "size": len(data)}


@router.get("/{path:path}", summary="Download one file", response_class=Response)
async def get_file(request: Request, session_id: str, path: str) -> Response:
    await open_session(request, session_id)
    data = await services_of(request).engine.sessions.read_file(session_id, path)
    name = path.rsplit("/", 1)[-1].replace('"', "")
    headers = {"Content-Disposition": f'attachment; filename="{name}"'}
    return Response(data, media_type="application/octet-stream", headers=headers)


@router.delete("/{path:path}", summary="Delete a file or an empty directory")
async def delete_file(request: Request, session_id: str, path: str) -> dict[str, Any]:
    await open_session(request, session_id)
    await services_of(request).engine.sessions.delete_file(session_id, path)
    return {"path": path, "deleted": True}
