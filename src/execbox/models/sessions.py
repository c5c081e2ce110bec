"""Sessions: a stateful kernel in a box; executions, their events and their results."""

from __future__ import annotations

import base64
import enum
import io
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from ..errors import CellError, ExecboxError
from .limits import Usage

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = [
    "ClearOutputEvent",
    "DisplayEvent",
    "EndEvent",
    "ErrorEvent",
    "ExecutionError",
    "ExecutionEvent",
    "ExecutionResult",
    "ExecutionStatus",
    "InputRequestEvent",
    "Output",
    "ResultEvent",
    "SessionInfo",
    "SessionStatus",
    "StreamEvent",
]

IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")


class SessionStatus(enum.StrEnum):
    STARTING = "starting"
    IDLE = "idle"
    BUSY = "busy"
    CLOSED = "closed"


class ExecutionStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    OK = "ok"
    ERROR = "error"
    """The code raised; ``error`` says what."""
    INTERRUPTED = "interrupted"
    TIMEOUT = "timeout"
    MEMORY_LIMIT = "memory_limit"
    PIDS_LIMIT = "pids_limit"
    KERNEL_DIED = "kernel_died"
    CANCELLED = "cancelled"
    """The session closed before the code ran to its end."""

    @property
    def terminal(self) -> bool:
        return self not in (ExecutionStatus.QUEUED, ExecutionStatus.RUNNING)


@dataclass(frozen=True, slots=True)
class StreamEvent:
    name: Literal["stdout", "stderr"]
    text: str
    type: Literal["stream"] = "stream"


@dataclass(frozen=True, slots=True)
class DisplayEvent:
    """A rich output: a mime bundle (``text/plain``, ``image/png`` as base64, ``text/html``…)."""

    data: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)
    display_id: str | None = None
    update: bool = False
    """True when it replaces the earlier output with the same ``display_id``."""
    type: Literal["display"] = "display"


@dataclass(frozen=True, slots=True)
class ResultEvent:
    """The value of the cell's last expression."""

    data: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)
    execution_count: int | None = None
    type: Literal["result"] = "result"


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    ename: str
    evalue: str
    traceback: tuple[str, ...] = ()
    type: Literal["error"] = "error"


@dataclass(frozen=True, slots=True)
class InputRequestEvent:
    """The code waits in ``input()`` or ``getpass()``: answer with ``send_input``."""

    prompt: str
    password: bool = False
    type: Literal["input_request"] = "input_request"


@dataclass(frozen=True, slots=True)
class ClearOutputEvent:
    wait: bool = False
    """Clear only when the next output arrives (no flicker)."""
    type: Literal["clear_output"] = "clear_output"


@dataclass(frozen=True, slots=True)
class ExecutionError:
    ename: str
    evalue: str
    traceback: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"{self.ename}: {self.evalue}" if self.evalue else self.ename


@dataclass(frozen=True, slots=True)
class Output:
    """One rich output of an execution, as a mime bundle."""

    kind: Literal["display", "result"]
    data: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ExecutionResult:
    """Everything an execution produced, once both the kernel's reply and its idle arrived."""

    id: str
    session_id: str
    status: ExecutionStatus
    execution_count: int | None = None
    text: str = ""
    """Text as a reader would see it, in order: stdout, stderr and the result's text."""
    stdout: str = ""
    stderr: str = ""
    outputs: tuple[Output, ...] = ()
    error: ExecutionError | None = None
    usage: Usage = field(default_factory=Usage)
    restarted: bool = False
    """The kernel was restarted (a timeout it would not interrupt, or its death): state is lost."""
    truncated: bool = False
    """Output beyond the session's output limit was dropped."""
    message: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    def __repr__(self) -> str:
        detail = f" {self.error}" if self.error else ""
        return f"<ExecutionResult {self.status}{detail} text={self.text[:60]!r}>"

    @property
    def ok(self) -> bool:
        return self.status is ExecutionStatus.OK

    @property
    def images(self) -> list[Image]:
        """Images among the outputs (matplotlib figures included), as PIL images."""
        try:
            from PIL import Image as PILImage
        except ImportError:
            raise ExecboxError("images need Pillow: pip install 'execbox[sessions]'") from None
        images: list[Image] = []
        for output in self.outputs:
            for mime in IMAGE_TYPES:
                payload = output.data.get(mime)
                if isinstance(payload, str):
                    images.append(PILImage.open(io.BytesIO(base64.b64decode(payload))))
                    break
        return images

    def raise_for_error(self) -> ExecutionResult:
        """Raise ``CellError`` unless the execution ended ``ok``; returns self for chaining."""
        if self.ok:
            return self
        error = self.error
        if error is not None:
            raise CellError(str(error), error.ename, error.evalue, error.traceback)
        raise CellError(self.message or f"execution ended {self.status}", self.status, "", ())

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("started_at", "finished_at"):
            value = data[key]
            data[key] = value.isoformat() if value else None
        return data


@dataclass(frozen=True, slots=True)
class EndEvent:
    """The last event of every execution."""

    result: ExecutionResult
    type: Literal["end"] = "end"


ExecutionEvent = (
    StreamEvent
    | DisplayEvent
    | ResultEvent
    | ErrorEvent
    | InputRequestEvent
    | ClearOutputEvent
    | EndEvent
)


@dataclass(frozen=True, slots=True)
class SessionInfo:
    id: str
    status: SessionStatus
    kernel: str
    created_at: datetime
    last_activity: datetime
    execution_count: int = 0
    reason: str | None = None
    """Why a closed session closed: ``closed``, ``idle_timeout``, ``ttl``, ``memory_limit``…"""
