"""From execbox's events to Backend.AI's console records, and the tasks that relay runs.

Streams become ``["stdout", text]`` / ``["stderr", text]``; a rich output becomes one record
of its richest form, as the documented ``handle_media`` reads it: images as data URIs
(``["image/png", "data:image/png;base64,..."]``), SVG as XML text, HTML as text, anything else
as its plain text on stdout. A raised exception is its traceback on stderr (colours removed).
An ``input()`` is its prompt on stdout, then ``waiting-input`` with ``is_password``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from ...client import AsyncExecution
from ...models import (
    DisplayEvent,
    EndEvent,
    ErrorEvent,
    ExecutionResult,
    ExecutionStatus,
    InputRequestEvent,
    ResultEvent,
    StreamEvent,
)
from ._boxside import EXIT_MIME
from ._runs import Control, Record, Run

__all__ = ["exit_code", "media_record", "relay_batch", "relay_query"]

IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")
EXIT_CODES = {
    ExecutionStatus.OK: 0,
    ExecutionStatus.ERROR: 1,
    ExecutionStatus.INTERRUPTED: 130,
    ExecutionStatus.CANCELLED: 130,
    ExecutionStatus.TIMEOUT: 124,
    ExecutionStatus.MEMORY_LIMIT: 137,
    ExecutionStatus.PIDS_LIMIT: 137,
    ExecutionStatus.KERNEL_DIED: 137,
}
"""Shell conventions: 124 timeout (as ``timeout(1)``), 130 interrupt, 137 killed."""
ENDS_RUN = (
    ExecutionStatus.MEMORY_LIMIT,
    ExecutionStatus.PIDS_LIMIT,
    ExecutionStatus.CANCELLED,
)
"""Statuses after which the session is gone, so later steps of a batch will not run."""
SKIPPED_AFTER_FAILED_BUILD = 127
"""Backend.AI's runner skips the exec of a failed build as "command not found"."""


def exit_code(status: ExecutionStatus) -> int:
    return EXIT_CODES.get(status, 1)


def media_record(data: Mapping[str, Any]) -> Record | None:
    for mime in IMAGE_TYPES:
        payload = data.get(mime)
        if isinstance(payload, str):
            return [mime, f"data:{mime};base64,{''.join(payload.split())}"]
    for mime in ("image/svg+xml", "text/html"):
        payload = data.get(mime)
        if isinstance(payload, str):
            return [mime, payload]
    text = data.get("text/plain")
    if isinstance(text, str):
        return ["stdout", text if text.endswith("\n") else text + "\n"]
    return None


def _traceback(event: ErrorEvent) -> str:
    lines = event.traceback or (f"{event.ename}: {event.evalue}",)
    return ANSI.sub("", "\n".join(lines)) + "\n"


async def _relay(run: Run, execution: AsyncExecution, *, command: bool) -> tuple[int, bool]:
    """Push one execution's output into ``run``; its exit code, and whether the session ended.
    A command's own exit status replaces the cell's when the cell ran to its end."""
    status_of_command: int | None = None
    async for event in execution.stream():
        if isinstance(event, StreamEvent):
            run.push([event.name, event.text])
        elif isinstance(event, DisplayEvent | ResultEvent):
            if command and EXIT_MIME in event.data:
                status_of_command = int(event.data[EXIT_MIME]["exitCode"])
            elif (record := media_record(event.data)) is not None:
                run.push(record)
        elif isinstance(event, ErrorEvent):
            run.push(["stderr", _traceback(event)])
        elif isinstance(event, InputRequestEvent):
            prompt = event.prompt or ("Password: " if event.password else "")
            if prompt:
                run.push(["stdout", prompt])
            run.ask(execution, event.password)
        elif isinstance(event, EndEvent):
            run.stop_asking()
            return _ending(run, event.result, status_of_command)
    return 1, True  # the stream always ends with an EndEvent; this is defensive


def _ending(run: Run, result: ExecutionResult, command_status: int | None) -> tuple[int, bool]:
    if result.message:
        run.push(["stderr", f"execbox: {result.message}\n"])
    if result.status is ExecutionStatus.OK and command_status is not None:
        return command_status, False
    return exit_code(result.status), result.status in ENDS_RUN


async def relay_query(run: Run, execution: AsyncExecution, command: bool) -> None:
    try:
        code, _ = await _relay(run, execution, command=command)
    except Exception as exc:  # a relay must not take the client session down: report it
        run.push(["stderr", f"execbox: {exc}\n"])
        code = 1
    run.push(Control("finished", code))


async def relay_batch(run: Run, steps: Sequence[tuple[str, AsyncExecution | None]]) -> None:
    """Steps are ``clean``, ``build`` and ``exec`` (None: skipped, exit 0). Each but the last
    ends with its ``*-finished`` mark; ``finished`` ends the run, early if the session ended."""
    build_code = 0
    for step, execution in steps:
        try:
            code, ended = (
                (0, False) if execution is None else await _relay(run, execution, command=True)
            )
        except Exception as exc:  # a relay must not take the client session down: report it
            run.push(["stderr", f"execbox: {exc}\n"])
            code, ended = 1, True
        if step == "exec":
            if execution is None and build_code != 0:
                code = SKIPPED_AFTER_FAILED_BUILD
            run.push(Control("finished", code))
            return
        run.push(Control(f"{step}-finished", code))
        if step == "build":
            build_code = code
        if ended:
            run.push(Control("finished", code))
            return
