"""The Jupyter messaging protocol (v5.3) as JSON over a kernel's WebSocket. Sans-I/O.

A client frame is one message: ``header`` (``msg_id``, ``msg_type``, ``session``,
``username``, ``date``, ``version``), ``parent_header``, ``metadata``, ``content``,
``buffers`` and the ``channel`` it travels on (``shell``, ``control``, ``stdin``; a frame
without one is a shell message, as Jupyter Server assumes). Every frame the server sends has
the same fields plus top-level ``msg_id`` and ``msg_type``, as Jupyter Server's own JSON
frames do, and its ``parent_header`` is the request's header verbatim so clients can route
the answer. Frames are untrusted: a malformed one raises ``BadMessage``, never anything else.
Engine events and results become iopub messages and ``execute_reply`` contents here too.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ...errors import ExecboxError, InvalidSpec
from ...models import (
    ClearOutputEvent,
    DisplayEvent,
    ErrorEvent,
    ExecutionEvent,
    ExecutionResult,
    ExecutionStatus,
    ResultEvent,
    StreamEvent,
)

__all__ = [
    "CLIENT_CHANNELS",
    "NOTED",
    "PROTOCOL_VERSION",
    "BadMessage",
    "Request",
    "error_content",
    "execute_reply_content",
    "iopub_of_event",
    "make_message",
    "parse_request",
    "utc_stamp",
    "without_status",
]

PROTOCOL_VERSION = "5.3"
CLIENT_CHANNELS = frozenset({"shell", "control", "stdin"})
MAX_ID = 200
"""Longest msg_id, msg_type or channel accepted: they are echoed back in every answer."""
ENAMES = {
    ExecutionStatus.INTERRUPTED: "KeyboardInterrupt",
    ExecutionStatus.TIMEOUT: "ExecutionTimeout",
    ExecutionStatus.MEMORY_LIMIT: "MemoryLimitExceeded",
    ExecutionStatus.PIDS_LIMIT: "ProcessLimitExceeded",
    ExecutionStatus.KERNEL_DIED: "KernelDied",
    ExecutionStatus.CANCELLED: "ExecutionCancelled",
}
"""What a client is told an execution ended with when the kernel itself raised nothing."""
NOTED = frozenset(ENAMES) - {ExecutionStatus.INTERRUPTED}
"""Endings whose explanation is worth a line on stderr even after the kernel's own error."""


class BadMessage(InvalidSpec):
    """A frame that is not a Jupyter message; ``header`` is whatever of its header was readable."""

    def __init__(self, message: str, header: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.header = header or {}


@dataclass(frozen=True, slots=True)
class Request:
    """A client's message, checked: the fields the gateway acts on, and its header to echo."""

    channel: str
    msg_type: str
    msg_id: str
    header: dict[str, Any]
    content: dict[str, Any]
    metadata: dict[str, Any]


def utc_stamp(moment: datetime | None = None) -> str:
    """ISO 8601 in UTC with microseconds and ``Z``: the form Jupyter's clients parse."""
    moment = (moment or datetime.now(UTC)).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _short_string(value: Any, name: str, header: dict[str, Any]) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_ID:
        raise BadMessage(
            f"{name} must be a non-empty string of at most {MAX_ID} characters", header
        )
    return value


def parse_request(text: str) -> Request:
    """One client frame as a ``Request``; ``BadMessage`` says what is wrong with it."""
    try:
        data = json.loads(text)
    except ValueError:
        raise BadMessage("the frame is not JSON: send one Jupyter message per text frame") from None
    if not isinstance(data, dict):
        raise BadMessage("a message must be a JSON object")
    header = data.get("header")
    if not isinstance(header, dict):
        raise BadMessage("the message has no header object")
    msg_type = _short_string(header.get("msg_type", data.get("msg_type")), "msg_type", header)
    msg_id = _short_string(header.get("msg_id", data.get("msg_id")), "msg_id", header)
    channel = data.get("channel") or "shell"
    if channel not in CLIENT_CHANNELS:
        shown = channel if isinstance(channel, str) else type(channel).__name__
        raise BadMessage(
            f"channel {shown[:MAX_ID]!r} is not one a client sends on: use shell, control or stdin",
            header,
        )
    content = data.get("content", {})
    metadata = data.get("metadata") or {}
    if not isinstance(content, dict) or not isinstance(metadata, dict):
        raise BadMessage("content and metadata must be JSON objects", header)
    return Request(channel, msg_type, msg_id, header, content, metadata)


def make_message(
    channel: str,
    msg_type: str,
    content: dict[str, Any],
    parent: dict[str, Any] | None,
    *,
    session: str,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A server frame: a fresh header of our kernel session, the parent echoed."""
    msg_id = uuid.uuid4().hex
    header = {
        "msg_id": msg_id,
        "msg_type": msg_type,
        "username": "execbox",
        "session": session,
        "date": utc_stamp(),
        "version": PROTOCOL_VERSION,
    }
    return {
        "header": header,
        "msg_id": msg_id,
        "msg_type": msg_type,
        "parent_header": parent or {},
        "metadata": metadata or {},
        "content": content,
        "buffers": [],
        "channel": channel,
    }


def iopub_of_event(event: ExecutionEvent, *, silent: bool) -> tuple[str, dict[str, Any]] | None:
    """The iopub message (type, content) an engine event stands for; None for events that are
    not iopub output (input requests, the end) and for a silent request's result."""
    if isinstance(event, StreamEvent):
        return "stream", {"name": event.name, "text": event.text}
    if isinstance(event, DisplayEvent):
        content: dict[str, Any] = {"data": event.data, "metadata": event.metadata, "transient": {}}
        if event.display_id is not None:
            content["transient"] = {"display_id": event.display_id}
        return ("update_display_data" if event.update else "display_data"), content
    if isinstance(event, ResultEvent):
        if silent:
            return None
        return "execute_result", {
            "execution_count": event.execution_count,
            "data": event.data,
            "metadata": event.metadata,
        }
    if isinstance(event, ErrorEvent):
        return "error", {
            "ename": event.ename,
            "evalue": event.evalue,
            "traceback": list(event.traceback),
        }
    if isinstance(event, ClearOutputEvent):
        return "clear_output", {"wait": event.wait}
    return None


def error_content(exc: ExecboxError) -> dict[str, Any]:
    """A reply's content for a request the gateway could not carry out."""
    return {"status": "error", "ename": type(exc).__name__, "evalue": str(exc), "traceback": []}


def without_status(reply: dict[str, Any]) -> dict[str, Any]:
    """An error reply's content as the iopub ``error`` that goes with it."""
    return {key: reply[key] for key in ("ename", "evalue", "traceback")}


def execute_reply_content(
    result: ExecutionResult, content: dict[str, Any], predicted: int
) -> dict[str, Any]:
    """The ``execute_reply`` of an engine result: ok, or error with the kernel's own error or,
    when the kernel raised nothing (a limit, a timeout, a death), one naming the ending."""
    count = result.execution_count or predicted
    if result.status is ExecutionStatus.OK:
        expressions = content.get("user_expressions")
        unsupported = {
            "status": "error",
            "ename": "NotImplementedError",
            "evalue": "user_expressions are not evaluated by the execbox gateway",
            "traceback": [],
        }
        return {
            "status": "ok",
            "execution_count": count,
            "user_expressions": dict.fromkeys(expressions, unsupported)
            if isinstance(expressions, dict)
            else {},
            "payload": [],
        }
    error = result.error
    if error is not None:
        ename, evalue, traceback = error.ename, error.evalue, list(error.traceback)
    else:
        ename = ENAMES.get(result.status, "ExecutionError")
        evalue, traceback = result.message or f"the execution ended {result.status}", []
    return {
        "status": "error",
        "execution_count": count,
        "ename": ename,
        "evalue": evalue,
        "traceback": traceback,
    }
