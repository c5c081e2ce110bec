"""``execbox repl``: a kernel session in the terminal, embedded or on a server.

Cells are read like Python's own prompt (a block goes on until it is complete); output is
printed as the kernel produces it; ``input()`` and ``getpass()`` in a cell are answered here;
Ctrl-C interrupts the running cell (the session and its state stay); images are saved as files
and their paths printed. Ctrl-D ends the session (``--keep`` leaves it open on a server).
"""

from __future__ import annotations

import argparse
import base64
import codeop
import getpass
import re
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

from .. import errors
from ..models import (
    DisplayEvent,
    EndEvent,
    ErrorEvent,
    ExecutionEvent,
    ExecutionStatus,
    InputRequestEvent,
    Limits,
    ResultEvent,
    StreamEvent,
)
from .remote import add_connection_options, server_target

if TYPE_CHECKING:
    from argparse import _SubParsersAction

    from ..client import Execution, Session

__all__ = ["add_repl_command", "repl"]

_IMAGE_SUFFIXES = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/gif": ".gif",
    "image/webp": ".webp",
    "image/svg+xml": ".svg",
}
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def add_repl_command(commands: _SubParsersAction[Any]) -> None:
    parser = commands.add_parser(
        "repl", help="an interactive kernel session in the terminal (embedded or --url)"
    )
    add_connection_options(parser)
    parser.add_argument("--attach", metavar="SESSION_ID", help="continue a server's session")
    parser.add_argument(
        "--keep", action="store_true", help="leave the session open on exit (for --attach later)"
    )
    parser.add_argument("--network", action="store_true", help="give the kernel network")
    parser.add_argument("--memory", metavar="SIZE", help="memory limit, e.g. 1G")
    parser.add_argument("--cpus", type=float, metavar="N", help="cpu quota in cores")
    parser.add_argument("--timeout", type=float, metavar="S", help="time limit of each cell")
    parser.add_argument(
        "--images",
        default="execbox-images",
        metavar="DIR",
        help="where images are saved (default: ./execbox-images, made when one arrives)",
    )


def _complete(source: str) -> bool:
    """Whether the lines so far make a cell; a syntax error is for the kernel to report."""
    try:
        return codeop.compile_command(source, "<cell>", "single") is not None
    except (SyntaxError, ValueError, OverflowError):
        return True


class Repl:
    def __init__(
        self,
        session: Session,
        *,
        images: Path,
        timeout: float | None,
        out: TextIO = sys.stdout,
        err: TextIO = sys.stderr,
    ) -> None:
        self.session = session
        self.images = images
        self.timeout = timeout
        self.out, self.err = out, err
        self.count = 1
        self._color = err.isatty()

    def loop(self) -> None:
        while True:
            try:
                code = self.read_cell()
            except EOFError:
                self.out.write("\n")
                return
            except KeyboardInterrupt:
                self.out.write("\nKeyboardInterrupt\n")
                continue
            if code.strip():
                self.run(code)

    def read_cell(self) -> str:
        lines = [input(f"In [{self.count}]: ")]
        while not _complete("\n".join(lines)):
            lines.append(input("   ...: "))
        return "\n".join(lines)

    def run(self, code: str) -> None:
        execution = self.session.submit(code, timeout=self.timeout)
        previous = signal.signal(signal.SIGINT, self._interrupt)
        try:
            for event in execution.stream():
                self.show(event, execution)
        finally:
            signal.signal(signal.SIGINT, previous)

    def _interrupt(self, _signum: int, _frame: FrameType | None) -> None:
        """Ctrl-C during a cell: interrupt the kernel (from a thread: this is a signal handler)
        and keep streaming, so the cell's last output and its KeyboardInterrupt still show."""
        self.err.write("^C\n")
        threading.Thread(target=self._interrupt_quietly, daemon=True).start()

    def _interrupt_quietly(self) -> None:
        try:
            self.session.interrupt()
        except errors.ExecboxError as exc:
            self.err.write(f"execbox: could not interrupt: {exc}\n")

    def show(self, event: ExecutionEvent, execution: Execution) -> None:
        if isinstance(event, StreamEvent):
            sink = self.out if event.name == "stdout" else self.err
            sink.write(event.text)
            sink.flush()
        elif isinstance(event, ResultEvent):
            if not self._save_images(event.data):
                text = str(event.data.get("text/plain", ""))
                self.out.write(f"Out[{event.execution_count or self.count}]: {text}\n")
        elif isinstance(event, DisplayEvent):
            if not self._save_images(event.data) and "text/plain" in event.data:
                self.out.write(f"{event.data['text/plain']}\n")
        elif isinstance(event, ErrorEvent):
            trace = "\n".join(event.traceback) or f"{event.ename}: {event.evalue}"
            self.err.write((trace if self._color else _ANSI.sub("", trace)) + "\n")
        elif isinstance(event, InputRequestEvent):
            execution.send_input(self._answer(event))
        elif isinstance(event, EndEvent):
            self._end(event)
        self.out.flush()

    def _answer(self, request: InputRequestEvent) -> str:
        """The terminal's answer; Ctrl-C or Ctrl-D here interrupt the cell instead."""
        self.out.flush()
        try:
            if request.password:
                return getpass.getpass(request.prompt)
            return input(request.prompt)
        except (KeyboardInterrupt, EOFError):
            self.err.write("\n")
            self._interrupt_quietly()
            return ""

    def _end(self, event: EndEvent) -> None:
        result = event.result
        if result.execution_count is not None:
            self.count = result.execution_count + 1
        if result.status not in (ExecutionStatus.OK, ExecutionStatus.ERROR):
            detail = f": {result.message}" if result.message else ""
            self.err.write(f"execbox: the cell ended {result.status.value}{detail}\n")
        if result.restarted:
            self.err.write("execbox: the kernel was restarted; variables are lost, files kept\n")

    def _save_images(self, data: dict[str, object]) -> bool:
        saved = False
        for mime, suffix in _IMAGE_SUFFIXES.items():
            payload = data.get(mime)
            if not isinstance(payload, str):
                continue
            self.images.mkdir(parents=True, exist_ok=True)
            number = sum(1 for _ in self.images.glob(f"out-{self.count}-*")) + 1
            path = self.images / f"out-{self.count}-{number}{suffix}"
            content = payload.encode() if mime == "image/svg+xml" else base64.b64decode(payload)
            path.write_bytes(content)
            self.out.write(f"[image saved: {path}]\n")
            saved = True
        return saved


def repl(options: argparse.Namespace) -> int:
    from ..client import Client

    url, key = server_target(options)
    client = Client(url, api_key=key) if url else Client()
    changes = {"memory": options.memory, "cpus": options.cpus}
    with client:
        if options.attach:
            session = client.attach(options.attach)
        else:
            session = client.session(
                limits=Limits().merged(**changes), network=options.network
            ).start()
        where = url or "this machine"
        print(f"execbox {session.id} on {where}. Ctrl-C interrupts a cell, Ctrl-D ends.")
        try:
            Repl(session, images=Path(options.images), timeout=options.timeout).loop()
        finally:
            if not (options.keep or options.attach):
                session.close()
    return 0
