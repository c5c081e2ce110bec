"""One compute session: an execbox session (a kernel in a box) and the runs in it.

A query is one execution in the kernel (for Lua, a ``lua`` process on the saved query); a
batch is its clean, build and exec commands, submitted together so that runs keep the order
they were asked in, the exec skipped in the box when the build failed. A relay task per run
turns events into records; ``execute`` hands them out a time slice at a time.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import anyio
import anyio.abc

from ...client import AsyncExecution, AsyncSession
from ...errors import SessionClosed, SessionNotFound
from ...models import SessionStatus
from ._boxside import command_cell, setup_cell
from ._images import Language
from ._relay import relay_batch, relay_query
from ._runs import Run
from .exceptions import BackendAPIError

__all__ = ["Compute"]

WORKSPACE = "/workspace"
BACKENDAI_HOME = "/home/work"


class Compute:
    def __init__(
        self,
        box: AsyncSession,
        *,
        name: str,
        image: str,
        language: Language,
        tasks: anyio.abc.TaskGroup,
        flush_timeout: float,
        exec_timeout: float | None,
    ) -> None:
        self.box = box
        self.name = name
        self.image = image
        self.language = language
        self.destroyed = False
        self._tasks = tasks
        self._flush_timeout = flush_timeout
        self._exec_timeout = exec_timeout
        self._runs: dict[str, Run] = {}

    @property
    def id(self) -> str:
        return self.box.id

    async def alive(self) -> bool:
        if self.destroyed:
            return False
        try:
            return (await self.box.info()).status is not SessionStatus.CLOSED
        except SessionNotFound:
            return False

    @contextmanager
    def _open(self) -> Iterator[None]:
        """execbox's 'this session has ended' as Backend.AI's 404 for a gone session."""
        if self.destroyed:
            raise self._gone("it was destroyed")
        try:
            yield
        except SessionClosed as exc:
            raise self._gone(f"it ended ({exc.reason})") from exc
        except SessionNotFound as exc:
            raise self._gone("it is not known to this client") from exc

    def _gone(self, why: str) -> BackendAPIError:
        return BackendAPIError.problem(
            404, "Not Found", "session-not-found", f"compute session {self.name!r}: {why}"
        )

    # -- runs -------------------------------------------------------------------------------

    async def start(self, run_id: str | None, mode: str, code: str, opts: Mapping[str, Any]) -> Run:
        """Start a query or batch run and its relay; the caller takes its results."""
        run_id = run_id or secrets.token_hex(16)
        known = self._runs.get(run_id)
        if known is not None and not known.finished:
            raise BackendAPIError.problem(
                400,
                "Bad Request",
                "invalid-api-params",
                f"run {run_id} is still going: continue it, or start a run with another id",
            )
        run = Run(run_id)
        with self._open():
            if mode == "query":
                execution = await self._submit_query(run_id, code)
                self._tasks.start_soon(
                    relay_query, run, execution, self.language.query_command is not None
                )
            else:
                steps = await self._submit_batch(run_id, opts)
                self._tasks.start_soon(relay_batch, run, steps)
        self._runs[run_id] = run
        return run

    def run(self, run_id: str | None) -> Run:
        """A run that has not finished, for ``continue`` and ``input``."""
        run = self._runs.get(run_id or "")
        if run is None or run.finished:
            raise BackendAPIError.problem(
                404,
                "Not Found",
                "run-not-found",
                f"no run {run_id!r} is going on in compute session {self.name!r} "
                "(continue and input need the runId of an unfinished run)",
            )
        return run

    def forget(self, run: Run) -> None:
        if self._runs.get(run.id) is run:
            del self._runs[run.id]

    async def next_result(self, run: Run, flush_timeout: float | None = None) -> dict[str, Any]:
        result = await run.next_result(flush_timeout or self._flush_timeout)
        if run.finished:
            self._runs.pop(run.id, None)
        return result

    async def _submit_query(self, run_id: str, code: str) -> AsyncExecution:
        command = self.language.query_command
        if command is None:
            return await self.box.submit(code, timeout=self._exec_timeout)
        name = f".query-{run_id}{self.language.query_suffix}"
        cell = command_cell(command.format(file=name), script=(name, code))
        return await self.box.submit(cell, timeout=self._exec_timeout)

    async def _submit_batch(
        self, run_id: str, opts: Mapping[str, Any]
    ) -> list[tuple[str, AsyncExecution | None]]:
        steps: list[tuple[str, AsyncExecution | None]] = []
        clean = opts.get("clean")
        if clean:
            steps.append(("clean", await self._command(clean, "true")))
        build = opts.get("build")
        steps.append(
            ("build", await self._command(build, self.language.default_build, build_of=run_id))
        )
        steps.append(
            (
                "exec",
                await self._command(opts.get("exec"), self.language.default_exec, needs=run_id),
            )
        )
        return steps

    async def _command(
        self,
        command: str | None,
        default: str,
        *,
        build_of: str | None = None,
        needs: str | None = None,
    ) -> AsyncExecution | None:
        if not command:
            return None
        cell = command_cell(default if command == "*" else command, build_of=build_of, needs=needs)
        return await self.box.submit(cell, timeout=self._exec_timeout)

    # -- the rest of the API ----------------------------------------------------------------

    async def upload(self, files: Mapping[str, bytes]) -> None:
        with self._open():
            for name, data in files.items():
                await self.box.files.write(name, data)

    async def read(self, path: str) -> bytes:
        with self._open():
            return await self.box.files.read(in_workspace(path))

    async def list_files(self, path: str) -> list[dict[str, Any]]:
        with self._open():
            entries = await self.box.files.list(in_workspace(path))
        return [
            {"filename": e.name, "kind": e.kind, "size": e.size, "mtime": e.modified}
            for e in entries
        ]

    async def info(self) -> dict[str, Any]:
        with self._open():
            info = await self.box.info()
        return {
            "sessionId": info.id,
            "name": self.name,
            "image": self.image,
            "language": self.language.name,
            "status": "TERMINATED" if info.status is SessionStatus.CLOSED else "RUNNING",
            "statusInfo": info.reason,
            "created_at": info.created_at.isoformat(),
            "last_activity": info.last_activity.isoformat(),
            "executionCount": info.execution_count,
        }

    async def interrupt(self) -> None:
        with self._open():
            await self.box.interrupt()

    async def restart(self) -> None:
        """A fresh kernel (files stay); the setup cell runs again for ``python`` on its PATH."""
        with self._open():
            await self.box.restart()
            (await self.box.execute(setup_cell())).raise_for_error()

    async def destroy(self) -> None:
        """End the box and everything running in it; idempotent."""
        self.destroyed = True
        await self.box.close()


def in_workspace(path: str) -> str:
    """Backend.AI's paths are under ``/home/work``; execbox's workspace is ``/workspace``."""
    text = str(path)
    if text == BACKENDAI_HOME or text.startswith(BACKENDAI_HOME + "/"):
        text = WORKSPACE + text[len(BACKENDAI_HOME) :]
    return "" if text in (".", "./") else text
