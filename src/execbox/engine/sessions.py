"""Sessions: a kernel in a box of its own, running one execution at a time, supervised.

Each execution is judged from the kernel's answer and the box's counters: a timeout interrupts
the kernel and, if it is not idle within a short grace, restarts it (and says so); a kernel
killed at the memory or process limit ends its session (the box is destroyed), any other death
restarts the kernel. A warm pool keeps pre-started box+kernel pairs per shape (kernel, limits,
network); env and working directory are applied after the claim. A reaper closes sessions idle
longer than their ``idle_timeout`` (running code and an attached client such as an open socket
count as activity) or older than their ``ttl``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import secrets
import time
from collections.abc import AsyncIterator, Hashable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ..boxes.base import WORKSPACE, Backend, Box, BoxSpec, DirEntry, FileEntry
from ..errors import (
    ExecboxError,
    ExecboxTimeout,
    InvalidSpec,
    InvalidState,
    QuotaExceeded,
    SessionClosed,
    SessionNotFound,
)
from ..kernel.client import Kernel, start_kernel
from ..kernel.runtime import DEFAULT_KERNEL, KernelLaunch, KernelRuntime
from ..models import (
    ExecutionEvent,
    ExecutionResult,
    ExecutionStatus,
    SessionInfo,
    SessionStatus,
    Usage,
    validate_timeout,
)
from .executions import Execution, judge
from .files import workspace_relative
from .journal import Journal, NullJournal
from .pool import WarmPool
from .specs import SessionSpec

__all__ = ["DEFAULT_EXECUTION_TIMEOUT", "SessionManager", "new_session_id"]

log = logging.getLogger("execbox.sessions")

DEFAULT_EXECUTION_TIMEOUT = 300.0
INTERRUPT_GRACE = 2.0
"""How long an interrupted kernel has to become idle before it is restarted."""
REAP_INTERVAL = 0.5
KERNEL_QUERIES = {
    "complete_request": ("code", "cursor_pos"),
    "inspect_request": ("code", "cursor_pos", "detail_level"),
}
"""Requests a kernel answers without running a cell, and the fields passed on to it."""
MAX_QUERY_CODE = 1 << 20
QUERY_TIMEOUT = 5.0
LIMIT_POLL = 0.25
"""How often a running execution's box is checked for having hit its process limit."""
MAX_CODE = 16 << 20
MAX_PENDING = 100
"""Executions a session holds queued or running; more is refused, not buffered."""


@dataclass
class _Warm:
    """A started box with a ready kernel, waiting in the pool or serving a session."""

    box: Box
    kernel: Kernel
    launch: KernelLaunch


def new_session_id() -> str:
    return f"ses_{secrets.token_hex(12)}"


class _Session:
    def __init__(self, spec: SessionSpec, session_id: str | None = None) -> None:
        self.id = session_id or new_session_id()
        self.spec = spec
        self.status = SessionStatus.STARTING
        self.reason: str | None = None
        self.closing = False
        """Set as a close begins: work is refused at once, ``status`` says closed once recorded."""
        self.attached = 0
        """Clients holding the session, such as open sockets: it is not idle while held."""
        self.created_at = datetime.now(UTC)
        self.created = time.monotonic()
        self.last_active = time.monotonic()
        self.last_activity = self.created_at
        self.executions: dict[str, Execution] = {}
        self.current: Execution | None = None
        self.generation = 0
        self.execution_count = 0
        self.warm: _Warm | None = None
        send, receive = anyio.create_memory_object_stream[Execution](math.inf)
        self.queue: MemoryObjectSendStream[Execution] = send
        self.inbox: MemoryObjectReceiveStream[Execution] = receive
        self.worker_scope = anyio.CancelScope()
        self.worker_done = anyio.Event()
        self.closed = anyio.Event()

    def touch(self) -> None:
        self.last_active = time.monotonic()
        self.last_activity = datetime.now(UTC)

    def info(self) -> SessionInfo:
        return SessionInfo(
            id=self.id,
            status=self.status,
            kernel=self.spec.kernel,
            created_at=self.created_at,
            last_activity=self.last_activity,
            execution_count=self.execution_count,
            reason=self.reason,
        )


def _pool_shape(spec: SessionSpec) -> Hashable:
    return (spec.kernel, spec.limits, spec.network)


class SessionManager:
    """Owns every session's box, kernel and tasks, through the task group it is given."""

    def __init__(
        self,
        backend: Backend,
        task_group: anyio.abc.TaskGroup,
        runtime: KernelRuntime,
        *,
        pool_size: int = 1,
        journal: Journal | None = None,
        retained_sessions: int,
        retained_executions: int,
    ) -> None:
        self._retained_sessions = retained_sessions
        self._retained_executions = retained_executions
        self._backend = backend
        self._journal = journal or NullJournal()
        self._tg = task_group
        self._runtime = runtime
        self._sessions: dict[str, _Session] = {}
        self.pool: WarmPool[SessionSpec, _Warm] = WarmPool(
            task_group, make=self._start_warm, discard=self._discard, shape=_pool_shape,
            size=pool_size,
        )  # fmt: skip
        self._reaper_started = False
        self._seeding = anyio.Lock()
        self._font_seed_tried = False

    # -- lifecycle ----------------------------------------------------------------------------

    async def create(self, spec: SessionSpec, session_id: str | None = None) -> str:
        """Start a session (from the warm pool when its shape allows) and return its id."""
        if session_id is not None and session_id in self._sessions:
            raise InvalidSpec(f"session {session_id} exists already")
        session = _Session(spec, session_id)
        self._remember(session)
        try:
            if spec.poolable:
                warm = await self.pool.claim(replace(spec, env={}, cwd=WORKSPACE))
                session.warm = warm
                await self._personalise(warm, spec)
            else:
                session.warm = await self._start_warm(spec)
        except BaseException as exc:
            session.status, session.reason = SessionStatus.CLOSED, "error"
            session.closing = True
            session.closed.set()
            if session.warm is not None:
                with anyio.CancelScope(shield=True):
                    await self._discard(session.warm)
            if isinstance(exc, ExecboxError | anyio.get_cancelled_exc_class()):
                raise
            raise ExecboxError(f"the session could not start: {exc}") from exc
        session.status = SessionStatus.IDLE
        session.touch()
        self._tg.start_soon(self._serve, session)
        if (spec.idle_timeout or spec.ttl) and not self._reaper_started:
            self._reaper_started = True
            self._tg.start_soon(self._reap_loop)
        return session.id

    def _remember(self, session: _Session) -> None:
        self._sessions[session.id] = session
        if len(self._sessions) > self._retained_sessions:
            closed = [k for k, s in self._sessions.items() if s.status is SessionStatus.CLOSED]
            for key in closed[: len(self._sessions) - self._retained_sessions]:
                del self._sessions[key]

    async def _start_warm(self, spec: SessionSpec) -> _Warm:
        launch = await self._runtime.prepare(spec.kernel, spec.requirements)
        if not self._font_seed_tried and spec.kernel == DEFAULT_KERNEL:
            async with self._seeding:  # once per cache directory, before the first kernel
                if not self._font_seed_tried and self._runtime.font_cache_missing:
                    await self._seed_font_cache(launch)
                self._font_seed_tried = True
        box = await self._backend.create(
            BoxSpec(
                limits=spec.limits,
                network=spec.network,
                mounts=(*launch.mounts, *spec.mounts),
                label=f"session {spec.kernel}",
            )
        )
        try:
            await self._make_cwd(box, spec.cwd)
            kernel = await start_kernel(box, launch, self._tg, cwd=spec.cwd, env=spec.env)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await box.destroy()
            raise
        return _Warm(box, kernel, launch)

    async def _seed_font_cache(self, launch: KernelLaunch) -> None:
        """Build matplotlib's font list once, in a box of its own, for every later kernel."""
        try:
            spec = BoxSpec(mounts=launch.mounts, label="font cache")
            box = await self._backend.create(spec)
            try:
                env = {**launch.env, "MPLCONFIGDIR": "/tmp/mpl"}
                argv = [launch.argv[0], "-c", "import matplotlib.font_manager"]
                process = await box.exec(argv, env=env)
                with anyio.move_on_after(120):
                    await process.wait()
                files = {
                    entry.name: await box.get_file(f"/tmp/mpl/{entry.name}", max_bytes=16 << 20)
                    for entry in await box.list_dir("/tmp/mpl")
                    if entry.kind == "file" and entry.name.startswith("fontlist")
                }
                self._runtime.store_font_cache(files)
            finally:
                await box.destroy()
        except Exception as exc:
            log.info("could not prepare matplotlib's font cache: %s", exc)

    @staticmethod
    async def _make_cwd(box: Box, cwd: str) -> None:
        for root in (WORKSPACE, "/tmp"):
            if cwd.startswith(root + "/"):
                await box.put_files([FileEntry(cwd[len(root) + 1 :], kind="dir")], root)

    async def _personalise(self, warm: _Warm, spec: SessionSpec) -> None:
        """Env and working directory of a pooled kernel, set by a silent execution."""
        if not spec.env and spec.cwd == WORKSPACE:
            return
        await self._make_cwd(warm.box, spec.cwd)
        code = (
            f"__import__('os').environ.update({dict(spec.env)!r}); "
            f"__import__('os').chdir({spec.cwd!r})"
        )
        await warm.kernel.run_silent(code, timeout=10.0)

    @staticmethod
    async def _discard(warm: _Warm) -> None:
        with anyio.CancelScope(shield=True):
            await warm.kernel.close()
            await warm.box.destroy()

    async def close(self, session_id: str, reason: str = "closed") -> None:
        await self._close(self._get(session_id), reason)

    async def _close(self, session: _Session, reason: str, *, from_worker: bool = False) -> None:
        if session.closing:
            await session.closed.wait()
            return
        session.closing, session.reason = True, reason
        with anyio.CancelScope(shield=True):
            session.queue.close()
            try:  # recorded before anyone is told: a closed session is closed in every listing
                await self._journal.session_closed(session.id, reason)
            except Exception:
                log.exception("session %s: its closing could not be recorded", session.id)
            session.status = SessionStatus.CLOSED
            message = f"the session closed ({reason}) before this execution ran"
            for execution in list(session.executions.values()):
                if execution.status is ExecutionStatus.QUEUED:
                    await self._finish(execution, execution.cancelled(message))
            if not from_worker:
                session.worker_scope.cancel()
                if session.warm is not None:
                    await session.worker_done.wait()
            if session.warm is not None:
                await self._discard(session.warm)
                session.warm = None  # a closed session keeps its results, not its box
            session.closed.set()

    async def aclose(self) -> None:
        for session in list(self._sessions.values()):
            await self._close(session, "shutdown")
        await self.pool.aclose()

    # -- lookups ------------------------------------------------------------------------------

    def _get(self, session_id: str) -> _Session:
        session = self._sessions.get(session_id)
        if session is None:
            raise SessionNotFound(f"no session {session_id!r}")
        return session

    def _open(self, session_id: str) -> _Session:
        session = self._get(session_id)
        if session.closing:
            message = f"session {session_id} is closed ({session.reason})"
            raise SessionClosed(message, session.reason)
        return session

    def _execution(self, session_id: str, execution_id: str) -> Execution:
        execution = self._get(session_id).executions.get(execution_id)
        if execution is None:
            raise SessionNotFound(f"no execution {execution_id!r} in session {session_id}")
        return execution

    def info(self, session_id: str) -> SessionInfo:
        return self._get(session_id).info()

    @contextlib.contextmanager
    def attached(self, session_id: str) -> Iterator[None]:
        """A client holds the session (a socket, say): no idle timeout while it does, and the
        idle time counts from when the last one let go. ``ttl`` still applies."""
        session = self._sessions.get(session_id)
        if session is None:  # forgotten once closed: nothing to hold
            yield
            return
        session.attached += 1
        try:
            yield
        finally:
            session.attached -= 1
            session.touch()

    def ids(self) -> list[str]:
        return list(self._sessions)

    # -- executions ---------------------------------------------------------------------------

    def submit(
        self,
        session_id: str,
        code: str,
        timeout: float | None = None,
        execution_id: str | None = None,
    ) -> str:
        """Queue code; ``execution_id`` lets a server name it after the record it wrote."""
        session = self._open(session_id)
        if not isinstance(code, str):
            raise InvalidSpec(f"code must be a string, not {type(code).__name__}")
        if len(code) > MAX_CODE:
            raise InvalidSpec(f"code is longer than {MAX_CODE} characters")
        seconds = validate_timeout(timeout) or DEFAULT_EXECUTION_TIMEOUT
        pending = sum(1 for e in session.executions.values() if not e.status.terminal)
        if pending >= MAX_PENDING:
            raise QuotaExceeded(
                f"session {session_id} already has {pending} executions waiting; "
                "wait for some to finish"
            )
        if execution_id is not None and execution_id in session.executions:
            raise InvalidSpec(f"execution {execution_id} exists already")
        output_limit = session.spec.limits.output_bytes
        execution = Execution(session.id, code, seconds, output_limit, execution_id)
        session.executions[execution.id] = execution
        if len(session.executions) > self._retained_executions:
            finished = [k for k, e in session.executions.items() if e.status.terminal]
            for key in finished[: len(session.executions) - self._retained_executions]:
                del session.executions[key]
        session.queue.send_nowait(execution)
        session.touch()
        return execution.id

    def events(self, session_id: str, execution_id: str) -> AsyncIterator[ExecutionEvent]:
        return self._execution(session_id, execution_id).stream()

    async def result(
        self, session_id: str, execution_id: str, timeout: float | None = None
    ) -> ExecutionResult:
        execution = self._execution(session_id, execution_id)
        with anyio.move_on_after(math.inf if timeout is None else timeout):
            await execution.done.wait()
        if execution.result is None:
            raise ExecboxTimeout(
                f"execution {execution_id} is still {execution.status} after {timeout} s"
            )
        return execution.result

    async def query(
        self, session_id: str, msg_type: str, content: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """The kernel's answer to a request that runs no cell: ``complete_request`` or
        ``inspect_request``. These are not executions (no count, no record); the kernel
        answers them between cells, so None if no answer came within ``QUERY_TIMEOUT``."""
        fields = KERNEL_QUERIES.get(msg_type)
        if fields is None:
            raise InvalidSpec(f"{msg_type!r} is not a query: {', '.join(KERNEL_QUERIES)}")
        code, cursor = content.get("code"), content.get("cursor_pos")
        if not isinstance(code, str) or len(code) > MAX_QUERY_CODE:
            raise InvalidSpec(f"code must be a string of at most {MAX_QUERY_CODE} characters")
        if isinstance(cursor, bool) or not isinstance(cursor, int) or not 0 <= cursor <= len(code):
            raise InvalidSpec("cursor_pos must be a position in the code")
        detail = content.get("detail_level", 0)
        if detail not in (0, 1) or isinstance(detail, bool):
            raise InvalidSpec("detail_level must be 0 or 1")
        request = {"code": code, "cursor_pos": cursor, "detail_level": detail}
        session = self._open(session_id)
        if session.warm is None:
            return None
        session.touch()
        return await session.warm.kernel.ask(
            msg_type, {key: request[key] for key in fields}, timeout=QUERY_TIMEOUT
        )

    def send_input(self, session_id: str, execution_id: str, text: str) -> None:
        session = self._open(session_id)
        execution = self._execution(session_id, execution_id)
        if not isinstance(text, str):
            raise InvalidSpec("input must be a string")
        if not execution.waiting_input or session.warm is None:
            raise InvalidState(f"execution {execution_id} is not waiting for input")
        execution.waiting_input = False
        session.warm.kernel.reply_input(text)

    async def interrupt(self, session_id: str) -> None:
        """Interrupt the running execution; a kernel that ignores it is restarted."""
        session = self._open(session_id)
        execution = session.current
        if execution is None or session.warm is None:
            return
        execution.interrupted = True
        await execution.wait_begun(INTERRUPT_GRACE)  # a signal before the cell began is lost
        if execution.settled.is_set() or session.warm is None:
            return
        kernel = session.warm.kernel
        await kernel.interrupt()
        self._tg.start_soon(self._escalate, execution, kernel)

    @staticmethod
    async def _escalate(execution: Execution, kernel: Kernel) -> None:
        if not await execution.heeds_interrupt(kernel.interrupt, INTERRUPT_GRACE):
            execution.unresponsive = True
            execution.settled.set()

    async def restart(self, session_id: str) -> None:
        """A fresh kernel in the same box: state is lost, files stay."""
        session = self._open(session_id)
        execution = session.current
        if execution is not None:
            execution.restart_requested = execution.unresponsive = True
            execution.settled.set()
            while session.current is execution and session.status is not SessionStatus.CLOSED:
                await execution.done.wait()
                await anyio.lowlevel.checkpoint()
            return  # the worker restarts the kernel for an unresponsive execution
        await self._restart_kernel(session)

    async def _restart_kernel(self, session: _Session) -> None:
        warm = session.warm
        assert warm is not None
        await warm.kernel.stop()
        session.generation += 1
        warm.kernel = await start_kernel(
            warm.box,
            warm.launch,
            self._tg,
            generation=session.generation,
            cwd=session.spec.cwd,
            env=session.spec.env,
        )

    # -- the worker ---------------------------------------------------------------------------

    async def _serve(self, session: _Session) -> None:
        execution: Execution | None = None
        try:
            with session.worker_scope:
                async with session.inbox:
                    async for execution in session.inbox:
                        if execution.status.terminal or session.closing:
                            continue
                        session.current = execution
                        session.status = SessionStatus.BUSY
                        try:
                            await self._run(session, execution)
                        finally:
                            session.current = None
                        if session.closing:
                            break
                        session.status = SessionStatus.IDLE
                        session.touch()
        finally:
            if execution is not None and execution.result is None:
                message = f"the session closed ({session.reason}) during this execution"
                await self._finish(execution, execution.cancelled(message))
            session.worker_done.set()

    async def _finish(self, execution: Execution, result: ExecutionResult) -> None:
        """Record the result, then hand it to whoever waits: nothing is seen unrecorded."""
        if execution.result is not None:
            return
        with anyio.CancelScope(shield=True):
            try:
                await self._journal.execution_finished(result)
            except Exception:
                log.exception("execution %s: its result could not be recorded", execution.id)
        execution.finish(result)

    async def _run(self, session: _Session, execution: Execution) -> None:
        warm = session.warm
        assert warm is not None
        kernel, box = warm.kernel, warm.box
        before = await box.stats(reset_peak=True)
        started = time.monotonic()
        execution.started_at = started_at = datetime.now(UTC)
        try:
            await self._journal.execution_running(execution.id, started_at)
        except Exception as exc:
            log.exception("execution %s: could not be recorded as running", execution.id)
            message = f"the execution could not be recorded, so it did not run: {exc}"
            await self._finish(
                execution, execution.make_result(ExecutionStatus.ERROR, Usage(), message=message)
            )
            return
        execution.status = ExecutionStatus.RUNNING
        msg_id = kernel.send(
            "shell",
            "execute_request",
            {
                "code": execution.code,
                "silent": False,
                "store_history": True,
                "user_expressions": {},
                "allow_stdin": True,
                "stop_on_error": True,
            },
            execution.on_message,
        )
        try:
            deadline = anyio.current_time() + execution.timeout
            fork_bomb = False
            while not execution.settled.is_set() and not fork_bomb:
                remaining = deadline - anyio.current_time()
                if remaining <= 0:
                    break
                with anyio.move_on_after(min(remaining, LIMIT_POLL)):
                    await execution.settled.wait()
                if not execution.settled.is_set():  # a fork bomb is judged now, not at timeout
                    fork_bomb = (await box.stats()).pids_refusals > before.pids_refusals
            if not execution.settled.is_set() and not fork_bomb:
                execution.timed_out = True
                await kernel.interrupt()
                if not await execution.heeds_interrupt(kernel.interrupt, INTERRUPT_GRACE):
                    execution.unresponsive = True
            after = await box.stats()
        finally:
            kernel.forget(msg_id)
        alive = not kernel.exited.is_set()
        verdict = judge(execution, alive, before, after)
        usage = Usage(
            wall_seconds=time.monotonic() - started,
            cpu_seconds=max(0.0, after.usage.cpu_seconds - before.usage.cpu_seconds),
            peak_memory_bytes=after.usage.peak_memory_bytes,
        )
        restarted = False
        if verdict.restart:
            try:
                await self._restart_kernel(session)
                restarted = True
            except ExecboxError as exc:
                log.warning("session %s: kernel restart failed: %s", session.id, exc)
                verdict.end_session = "kernel_died"
        if execution.recorder.execution_count is not None:
            session.execution_count = execution.recorder.execution_count
        result = execution.make_result(
            verdict.status, usage, restarted=restarted, message=verdict.message
        )
        await self._finish(execution, result)
        if verdict.end_session:
            await self._close(session, verdict.end_session, from_worker=True)

    # -- files --------------------------------------------------------------------------------

    def _box(self, session_id: str) -> Box:
        session = self._open(session_id)
        assert session.warm is not None
        return session.warm.box

    async def write_file(self, session_id: str, path: str, data: bytes) -> None:
        box = self._box(session_id)
        relative = workspace_relative(path)
        if not isinstance(data, bytes | bytearray):
            raise InvalidSpec("file data must be bytes or str")
        await box.put_files([FileEntry(relative, data=bytes(data))], WORKSPACE, replace=True)

    async def read_file(self, session_id: str, path: str, max_bytes: int = 64 << 20) -> bytes:
        box = self._box(session_id)
        return await box.get_file(f"{WORKSPACE}/{workspace_relative(path)}", max_bytes=max_bytes)

    async def list_files(self, session_id: str, path: str = "") -> list[DirEntry]:
        box = self._box(session_id)
        relative = workspace_relative(path, allow_root=True)
        return await box.list_dir(f"{WORKSPACE}/{relative}".rstrip("/"))

    async def delete_file(self, session_id: str, path: str) -> None:
        box = self._box(session_id)
        await box.remove(f"{WORKSPACE}/{workspace_relative(path)}")

    # -- the reaper ---------------------------------------------------------------------------

    async def _reap_loop(self) -> None:
        while True:
            await anyio.sleep(REAP_INTERVAL)
            now = time.monotonic()
            for session in list(self._sessions.values()):
                spec = session.spec
                if session.closing:
                    continue
                if spec.ttl is not None and now - session.created > spec.ttl:
                    self._tg.start_soon(self._close, session, "ttl")
                elif (
                    spec.idle_timeout is not None
                    and session.status is SessionStatus.IDLE
                    and session.current is None
                    and not session.attached
                    and now - session.last_active > spec.idle_timeout
                ):
                    self._tg.start_soon(self._close, session, "idle_timeout")
