"""Jupyter messages of one execution, folded into typed events and a final result. Sans-I/O.

An execution is over only when both its ``execute_reply`` (shell) and its ``status: idle``
(iopub) have arrived: output published after the reply is still this execution's. Messages
come from inside the box and are untrusted: anything malformed is dropped, never raised.
"""

from __future__ import annotations

from typing import Any, Literal

from ..models import (
    ClearOutputEvent,
    DisplayEvent,
    ErrorEvent,
    ExecutionError,
    ExecutionEvent,
    InputRequestEvent,
    Output,
    ResultEvent,
    StreamEvent,
)

__all__ = ["ExecutionRecorder"]


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # nbformat allows multi-line strings as lists
        return "".join(item for item in value if isinstance(item, str))
    return ""


def _bytes(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "replace"))


def _size(data: dict[str, Any]) -> int:
    return sum(_bytes(value) if isinstance(value, str) else 64 for value in data.values())


class ExecutionRecorder:
    """Turns the messages of one ``execute_request`` into events, and keeps the result."""

    def __init__(self, *, output_limit: int) -> None:
        self.output_limit = output_limit
        self.replied = False
        self.idle = False
        self.begun = False
        self.reply_status: str | None = None
        self.execution_count: int | None = None
        self.error: ExecutionError | None = None
        self.truncated = False
        self._size = 0
        self._text: list[str] = []
        self._stdout: list[str] = []
        self._stderr: list[str] = []
        self._outputs: list[Output] = []
        self._displays: dict[str, list[int]] = {}
        self._clear_pending = False

    @property
    def done(self) -> bool:
        return self.replied and self.idle

    @property
    def text(self) -> str:
        return "".join(self._text)

    @property
    def stdout(self) -> str:
        return "".join(self._stdout)

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

    @property
    def outputs(self) -> tuple[Output, ...]:
        return tuple(self._outputs)

    def feed(self, channel: str, message: dict[str, Any]) -> ExecutionEvent | None:
        """The event this message means for the caller, if any."""
        kind = message.get("msg_type") or _mapping(message.get("header")).get("msg_type")
        content = _mapping(message.get("content"))
        if channel == "shell":
            if kind == "execute_reply":
                self.replied = True
                self.reply_status = str(content.get("status") or "")
                count = content.get("execution_count")
                self.execution_count = count if isinstance(count, int) else self.execution_count
                if self.reply_status == "error" and self.error is None:
                    self.error = self._error_of(content)
            return None
        if channel == "stdin":
            if kind == "input_request":
                prompt, password = _text(content.get("prompt")), bool(content.get("password"))
                return InputRequestEvent(prompt, password)
            return None
        if kind == "execute_input":
            self.begun = True
            return None
        if kind == "status":
            if content.get("execution_state") == "idle":
                self.idle = True
            return None
        handler = _IOPUB.get(str(kind))
        return handler(self, content) if handler else None

    def _admit(self, size: int) -> bool:
        if self._clear_pending:
            self._clear()
        if self._size + size > self.output_limit:
            self.truncated = True
            return False
        self._size += size
        return True

    def _fit(self, text: str) -> str:
        """As much of ``text`` as the output limit still allows, counted in UTF-8 bytes."""
        if self._clear_pending:
            self._clear()
        room = self.output_limit - self._size
        size = _bytes(text)
        if size > room:
            self.truncated = True
            text = text.encode("utf-8", "replace")[: max(room, 0)].decode("utf-8", "ignore")
            size = _bytes(text)
        self._size += size
        return text

    def _clear(self) -> None:
        self._clear_pending = False
        self._text.clear()
        self._stdout.clear()
        self._stderr.clear()
        self._outputs.clear()
        self._displays.clear()

    def _stream(self, content: dict[str, Any]) -> ExecutionEvent | None:
        name: Literal["stdout", "stderr"] = (
            "stderr" if content.get("name") == "stderr" else "stdout"
        )
        text = self._fit(_text(content.get("text")))
        if not text:
            return None
        self._text.append(text)
        (self._stderr if name == "stderr" else self._stdout).append(text)
        return StreamEvent(name, text)

    def _display(self, content: dict[str, Any], *, update: bool = False) -> ExecutionEvent | None:
        data, metadata = _mapping(content.get("data")), _mapping(content.get("metadata"))
        transient = _mapping(content.get("transient"))
        display_id = transient.get("display_id")
        display_id = display_id if isinstance(display_id, str) else None
        if not self._admit(_size(data)):
            return None
        output = Output("display", data, metadata)
        if update and display_id is not None:
            for index in self._displays.get(display_id, []):
                self._outputs[index] = output
        else:
            if display_id is not None:
                self._displays.setdefault(display_id, []).append(len(self._outputs))
            self._outputs.append(output)
        return DisplayEvent(data, metadata, display_id, update)

    def _update(self, content: dict[str, Any]) -> ExecutionEvent | None:
        return self._display(content, update=True)

    def _result(self, content: dict[str, Any]) -> ExecutionEvent | None:
        data, metadata = _mapping(content.get("data")), _mapping(content.get("metadata"))
        if not self._admit(_size(data)):
            return None
        count = content.get("execution_count")
        count = count if isinstance(count, int) else None
        self._outputs.append(Output("result", data, metadata))
        plain = _text(data.get("text/plain"))
        if plain:
            self._text.append(plain if plain.endswith("\n") else plain + "\n")
        return ResultEvent(data, metadata, count)

    def _error_event(self, content: dict[str, Any]) -> ExecutionEvent | None:
        self.error = self._error_of(content)
        return ErrorEvent(self.error.ename, self.error.evalue, self.error.traceback)

    def _clear_output(self, content: dict[str, Any]) -> ExecutionEvent | None:
        wait = bool(content.get("wait"))
        if wait:
            self._clear_pending = True
        else:
            self._clear()
        return ClearOutputEvent(wait)

    @staticmethod
    def _error_of(content: dict[str, Any]) -> ExecutionError:
        traceback = content.get("traceback")
        lines = (
            tuple(line for line in traceback if isinstance(line, str))
            if isinstance(traceback, list)
            else ()
        )
        return ExecutionError(
            _text(content.get("ename")) or "Error", _text(content.get("evalue")), lines[:500]
        )


_IOPUB = {
    "stream": ExecutionRecorder._stream,
    "display_data": ExecutionRecorder._display,
    "update_display_data": ExecutionRecorder._update,
    "execute_result": ExecutionRecorder._result,
    "error": ExecutionRecorder._error_event,
    "clear_output": ExecutionRecorder._clear_output,
}
