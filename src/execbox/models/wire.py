"""Models to and from JSON: one encoding for the server, its records and the remote SDK."""

from __future__ import annotations

import base64
import enum
from dataclasses import fields, is_dataclass
from datetime import UTC, datetime
from typing import Any

from .files import DirEntry
from .jobs import JobEvent, JobResult, JobStatus, OutputEvent, StatusEvent
from .limits import Usage
from .sessions import (
    ClearOutputEvent,
    DisplayEvent,
    EndEvent,
    ErrorEvent,
    ExecutionError,
    ExecutionEvent,
    ExecutionResult,
    ExecutionStatus,
    InputRequestEvent,
    Output,
    ResultEvent,
    SessionInfo,
    SessionStatus,
    StreamEvent,
)

__all__ = [
    "dir_entry_from_json",
    "execution_event_from_json",
    "execution_result_from_json",
    "job_event_from_json",
    "job_result_from_json",
    "session_info_from_json",
    "to_json",
]


def to_json(value: Any) -> Any:
    """JSON-safe data: dataclasses by their ``to_dict`` (if any) or fields; times in ISO 8601."""
    if is_dataclass(value) and not isinstance(value, type):
        to_dict = getattr(value, "to_dict", None)
        data = (
            to_dict()
            if to_dict is not None
            else {f.name: getattr(value, f.name) for f in fields(value)}
        )
        return {key: to_json(item) for key, item in data.items()}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, list | tuple):
        return [to_json(item) for item in value]
    if isinstance(value, dict):
        return {str(key): to_json(item) for key, item in value.items()}
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


# -- from JSON: what the server sends, back into the SDK's models --------------------------------


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def _usage(data: Any) -> Usage:
    data = data if isinstance(data, dict) else {}
    return Usage(
        wall_seconds=float(data.get("wall_seconds") or 0.0),
        cpu_seconds=float(data.get("cpu_seconds") or 0.0),
        peak_memory_bytes=int(data.get("peak_memory_bytes") or 0),
    )


def _output_bytes(data: dict[str, Any], stream: str) -> bytes:
    encoded = data.get(f"{stream}_base64")
    if isinstance(encoded, str):
        return base64.b64decode(encoded)
    return str(data.get(stream) or "").encode()


def job_result_from_json(data: dict[str, Any]) -> JobResult:
    return JobResult(
        id=data["id"],
        status=JobStatus(data["status"]),
        exit_code=data.get("exit_code"),
        stdout_bytes=_output_bytes(data, "stdout"),
        stderr_bytes=_output_bytes(data, "stderr"),
        stdout_truncated=bool(data.get("stdout_truncated")),
        stderr_truncated=bool(data.get("stderr_truncated")),
        usage=_usage(data.get("usage")),
        created_at=_time(data.get("created_at")),
        started_at=_time(data.get("started_at")),
        finished_at=_time(data.get("finished_at")),
        reason=data.get("reason"),
        message=data.get("message"),
    )


def job_event_from_json(data: dict[str, Any]) -> JobEvent | None:
    """An event of a job's stream; None for a kind this SDK does not know (a newer server)."""
    kind = data.get("type")
    if kind == "output":
        return OutputEvent(data["stream"], _output_bytes(data, "data"))
    if kind == "status":
        return StatusEvent(JobStatus(data["status"]))
    if kind == "result":
        result = job_result_from_json(data["result"])
        return StatusEvent(result.status, result)
    return None


def execution_result_from_json(data: dict[str, Any], session_id: str = "") -> ExecutionResult:
    error = data.get("error")
    return ExecutionResult(
        id=data["id"],
        session_id=data.get("session_id") or session_id,
        status=ExecutionStatus(data["status"]),
        execution_count=data.get("execution_count"),
        text=data.get("text") or "",
        stdout=data.get("stdout") or "",
        stderr=data.get("stderr") or "",
        outputs=tuple(
            Output(item["kind"], item.get("data") or {}, item.get("metadata") or {})
            for item in data.get("outputs") or ()
        ),
        error=None
        if not isinstance(error, dict)
        else ExecutionError(
            error.get("ename", ""), error.get("evalue", ""), tuple(error.get("traceback") or ())
        ),
        usage=_usage(data.get("usage")),
        restarted=bool(data.get("restarted")),
        truncated=bool(data.get("truncated")),
        message=data.get("message"),
        started_at=_time(data.get("started_at")),
        finished_at=_time(data.get("finished_at")),
    )


def execution_event_from_json(data: dict[str, Any], session_id: str = "") -> ExecutionEvent | None:
    """An event of an execution's stream; None for a kind this SDK does not know."""
    kind = data.get("type")
    if kind == "stream":
        return StreamEvent(data["name"], data.get("text") or "")
    if kind == "display":
        return DisplayEvent(
            data.get("data") or {},
            data.get("metadata") or {},
            data.get("display_id"),
            bool(data.get("update")),
        )
    if kind == "result":
        return ResultEvent(
            data.get("data") or {}, data.get("metadata") or {}, data.get("execution_count")
        )
    if kind == "error":
        return ErrorEvent(
            data.get("ename", ""), data.get("evalue", ""), tuple(data.get("traceback") or ())
        )
    if kind == "input_request":
        return InputRequestEvent(data.get("prompt") or "", bool(data.get("password")))
    if kind == "clear_output":
        return ClearOutputEvent(bool(data.get("wait")))
    if kind == "end":
        return EndEvent(execution_result_from_json(data["result"], session_id))
    return None


_SESSION_STATUSES = frozenset(status.value for status in SessionStatus)


def session_info_from_json(data: dict[str, Any]) -> SessionInfo:
    """A session as the server shows it; a record the server no longer holds open is closed."""
    status = data.get("status")
    created = _time(data.get("created_at")) or datetime.now(UTC)
    spec = data.get("spec") or {}
    return SessionInfo(
        id=data["id"],
        status=SessionStatus(status) if status in _SESSION_STATUSES else SessionStatus.CLOSED,
        kernel=spec.get("kernel", "python3"),
        created_at=created,
        last_activity=_time(data.get("last_activity")) or _time(data.get("closed_at")) or created,
        execution_count=int(data.get("execution_count") or 0),
        reason=data.get("reason"),
    )


def dir_entry_from_json(data: dict[str, Any]) -> DirEntry:
    return DirEntry(data["name"], data["kind"], int(data["size"]), float(data["modified"]))
