"""Records and live objects as the API shows them. Secrets a client passed (env values) are
never stored or shown: records keep env names only."""

from __future__ import annotations

import base64
from typing import Any, Literal

from ..engine.jobs import JobSpec
from ..engine.specs import SessionSpec
from ..models import SessionInfo
from ..models.wire import to_json

__all__ = [
    "MAX_WAIT",
    "OutputEncoding",
    "b64encode",
    "execution_view",
    "job_spec_record",
    "job_view",
    "session_spec_record",
    "session_view",
]

HIDDEN = "***"
MAX_WAIT = 300.0
"""Longest long-poll a GET may ask for (``?wait=``): clients loop for longer waits."""

OutputEncoding = Literal["text", "base64"]
"""Outputs as text (decoded leniently), or their exact bytes in base64 (the SDK's choice)."""


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _usage(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "wall_seconds": row.get("wall_seconds") or 0.0,
        "cpu_seconds": row.get("cpu_seconds") or 0.0,
        "peak_memory_bytes": row.get("peak_memory_bytes") or 0,
    }


def job_spec_record(spec: JobSpec) -> dict[str, Any]:
    return {
        "entrypoint": spec.entrypoint,
        "args": list(spec.args),
        "files": [{"name": e.name, "kind": e.kind, "size": len(e.data)} for e in spec.entries],
        "requirements": list(spec.requirements.lines),
        "pre_commands": list(spec.pre_commands),
        "stdin_bytes": len(spec.stdin or b""),
        "env": dict.fromkeys(spec.env, HIDDEN),
        "timeout": spec.timeout,
        "limits": to_json(spec.limits),
        "network": spec.network,
    }


def session_spec_record(spec: SessionSpec) -> dict[str, Any]:
    return {
        "kernel": spec.kernel,
        "limits": to_json(spec.limits),
        "network": spec.network,
        "env": dict.fromkeys(spec.env, HIDDEN),
        "cwd": spec.cwd,
        "requirements": list(spec.requirements.lines),
        "idle_timeout": spec.idle_timeout,
        "ttl": spec.ttl,
    }


def job_view(
    row: dict[str, Any],
    *,
    outputs: bool = True,
    history: list[dict[str, Any]] | None = None,
    output: OutputEncoding = "text",
) -> dict[str, Any]:
    view: dict[str, Any] = {
        key: row.get(key)
        for key in (
            "id", "status", "created_at", "started_at", "finished_at", "exit_code", "reason",
            "message", "spec",
        )
    }  # fmt: skip
    view["usage"] = _usage(row)
    if outputs:
        for stream in ("stdout", "stderr"):
            data: bytes = row.get(stream) or b""
            if output == "base64":
                view[f"{stream}_base64"] = b64encode(data)
            else:
                view[stream] = data.decode("utf-8", "replace")
            view[f"{stream}_truncated"] = bool(row.get(f"{stream}_truncated"))
    if history is not None:
        view["history"] = history
    return to_json(view)  # type: ignore[no-any-return]


def session_view(row: dict[str, Any], live: SessionInfo | None = None) -> dict[str, Any]:
    view: dict[str, Any] = {
        key: row.get(key)
        for key in ("id", "status", "reason", "client_token", "created_at", "closed_at", "spec")
    }
    if live is not None:
        view.update(
            status=live.status,
            reason=live.reason,
            last_activity=live.last_activity,
            execution_count=live.execution_count,
        )
    return to_json(view)  # type: ignore[no-any-return]


def execution_view(row: dict[str, Any], *, result: bool = True) -> dict[str, Any]:
    view: dict[str, Any] = {
        key: row.get(key)
        for key in (
            "id", "session_id", "status", "reason", "code", "created_at", "started_at",
            "finished_at", "execution_count", "truncated",
        )
    }  # fmt: skip
    view["usage"] = _usage(row)
    if result:
        view["result"] = row.get("result")
    return to_json(view)  # type: ignore[no-any-return]
