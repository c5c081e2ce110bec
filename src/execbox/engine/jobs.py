"""Jobs: a program run once in a fresh box, supervised until a terminal status.

``queued -> running -> succeeded | failed | timeout | memory_limit | killed | error``.

The supervisor reads output as bytes, as produced, keeping at most ``limits.output`` bytes per
stream and draining the rest; it ends collection shortly after the main process exits (a
daemon holding the pipe open does not hold the job); it decides the status from the exit, the
box's cgroup (OOM kills) and its own timers; and it destroys the box whatever happened.
"""

from __future__ import annotations

import logging
import math
import secrets
import shlex
import signal
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Literal, NamedTuple

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectSendStream

from ..boxes.base import WORKSPACE, Backend, Box, BoxSpec, BoxStats, ExitInfo, FileEntry, Process
from ..errors import ExecboxError, ExecboxTimeout, InvalidSpec, JobNotFound
from ..models import (
    JobEvent,
    JobResult,
    JobStatus,
    Limits,
    OutputEvent,
    StatusEvent,
    Usage,
    validate_timeout,
)
from .files import FilesInput, collect_files, infer_entrypoint
from .journal import Journal, NullJournal
from .pool import BoxPool
from .requirements import (
    Requirements,
    RequirementsInput,
    RequirementsResolver,
    parse_requirements,
)
from .specs import check_env, check_limits

__all__ = ["DEFAULT_TIMEOUT", "JobManager", "JobSpec", "make_job_spec", "new_job_id"]

log = logging.getLogger("execbox.jobs")

DEFAULT_TIMEOUT = 300.0
EXIT_GRACE = 0.2
"""How long output is still collected after the main process exits."""
_MAX_ARGS = 4096


@dataclass(frozen=True)
class JobSpec:
    entries: tuple[FileEntry, ...]
    entrypoint: str
    args: tuple[str, ...] = ()
    requirements: Requirements = field(default_factory=Requirements)
    pre_commands: tuple[str, ...] = ()
    stdin: bytes | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    timeout: float = DEFAULT_TIMEOUT
    limits: Limits = field(default_factory=Limits)
    network: bool = False


def new_job_id() -> str:
    return f"job_{secrets.token_hex(12)}"


def _check_strings(values: Sequence[str] | None, what: str) -> tuple[str, ...]:
    if values is None:
        return ()
    if isinstance(values, str):
        raise InvalidSpec(f"{what} must be a list of strings, not one string")
    result = tuple(values)
    if len(result) > _MAX_ARGS or not all(isinstance(v, str) and "\x00" not in v for v in result):
        raise InvalidSpec(f"{what} must be a list of at most {_MAX_ARGS} strings without NUL")
    return result


def make_job_spec(
    files: FilesInput,
    *,
    entrypoint: str | None = None,
    args: Sequence[str] | None = None,
    requirements: RequirementsInput = None,
    pre_commands: Sequence[str] | None = None,
    stdin: str | bytes | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    limits: Limits | None = None,
    network: bool = False,
) -> JobSpec:
    """Validate everything a caller can get wrong; raises InvalidSpec before any box starts."""
    entries = collect_files(files)
    if stdin is not None and not isinstance(stdin, str | bytes):
        raise InvalidSpec("stdin must be str or bytes")
    return JobSpec(
        entries=tuple(entries),
        entrypoint=infer_entrypoint(entries, entrypoint),
        args=_check_strings(args, "args"),
        requirements=parse_requirements(requirements),
        pre_commands=_check_strings(pre_commands, "pre_commands"),
        stdin=stdin.encode() if isinstance(stdin, str) else stdin,
        env=check_env(env),
        timeout=validate_timeout(timeout) or DEFAULT_TIMEOUT,
        limits=check_limits(limits),
        network=bool(network),
    )


class _Capture:
    """One output stream: the first ``cap`` bytes kept, the rest counted and dropped."""

    def __init__(self, name: Literal["stdout", "stderr"], cap: int) -> None:
        self.name: Literal["stdout", "stderr"] = name
        self.cap = cap
        self.chunks: list[bytes] = []
        self.kept = 0
        self.seen = 0

    @property
    def truncated(self) -> bool:
        return self.seen > self.kept

    def add(self, data: bytes) -> bytes:
        """Record a chunk; return the part that was kept (what listeners should see)."""
        self.seen += len(data)
        room = self.cap - self.kept
        if room <= 0:
            return b""
        kept = data[:room]
        self.chunks.append(kept)
        self.kept += len(kept)
        return kept

    def value(self) -> bytes:
        return b"".join(self.chunks)


class _Outcome(NamedTuple):
    status: JobStatus
    exit_code: int | None = None
    reason: str | None = None
    message: str | None = None


_KILLED = _Outcome(JobStatus.KILLED, None, "killed", "the job was killed on request")
_SHUTDOWN = _Outcome(JobStatus.ERROR, None, "shutdown", "the engine shut down while the job ran")


class _Job:
    def __init__(self, job_id: str, spec: JobSpec) -> None:
        self.id = job_id
        self.spec = spec
        self.status = JobStatus.QUEUED
        self.created_at = datetime.now(UTC)
        self.started_at: datetime | None = None
        self.result: JobResult | None = None
        self.done = anyio.Event()
        self.scope = anyio.CancelScope()
        self.stopped: _Outcome | None = None
        """Why the job's scope was cancelled from outside: a kill, or the engine closing."""
        self.stdout = _Capture("stdout", spec.limits.output_bytes)
        self.stderr = _Capture("stderr", spec.limits.output_bytes)
        self.listeners: list[MemoryObjectSendStream[JobEvent]] = []

    def publish(self, event: JobEvent) -> None:
        for listener in list(self.listeners):
            try:
                listener.send_nowait(event)
            except (anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
                self.listeners.remove(listener)  # a listener that cannot keep up is dropped

    def set_status(self, status: JobStatus) -> None:
        self.status = status
        self.publish(StatusEvent(status, self.result if status.terminal else None))


class JobManager:
    """Runs jobs on a backend; owns their tasks through the task group it is given."""

    def __init__(
        self,
        backend: Backend,
        task_group: anyio.abc.TaskGroup,
        *,
        pool: BoxPool | None = None,
        max_concurrent: int = 16,
        python: str = "python3",
        requirements_resolver: RequirementsResolver | None = None,
        journal: Journal | None = None,
        retained_jobs: int,
    ) -> None:
        self._retained = retained_jobs
        self._backend = backend
        self._journal = journal or NullJournal()
        self._tg = task_group
        self.pool = pool
        self._slots = anyio.Semaphore(max_concurrent)
        self._python = python
        self._jobs: dict[str, _Job] = {}
        self._resolver = requirements_resolver or RequirementsResolver(python=python)

    # -- public -------------------------------------------------------------------------------

    def submit(self, spec: JobSpec, job_id: str | None = None) -> str:
        """Start a job; ``job_id`` lets a server name it after the record it already wrote."""
        job_id = job_id or new_job_id()
        if job_id in self._jobs:
            raise InvalidSpec(f"job {job_id} exists already")
        job = _Job(job_id, spec)
        self._jobs[job.id] = job
        if len(self._jobs) > self._retained:
            finished = [key for key, old in self._jobs.items() if old.status.terminal]
            for key in finished[: len(self._jobs) - self._retained]:
                del self._jobs[key]
        self._tg.start_soon(self._run, job)
        return job.id

    def get(self, job_id: str) -> _Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise JobNotFound(f"no job {job_id!r}")
        return job

    def status(self, job_id: str) -> JobStatus:
        return self.get(job_id).status

    def list(self) -> list[str]:
        return list(self._jobs)

    async def wait(self, job_id: str, timeout: float | None = None) -> JobResult:
        job = self.get(job_id)
        with anyio.move_on_after(math.inf if timeout is None else timeout):
            await job.done.wait()
        if job.result is None:
            raise ExecboxTimeout(f"job {job_id} is still {job.status} after {timeout} s")
        return job.result

    async def kill(self, job_id: str) -> None:
        job = self.get(job_id)
        if job.status.terminal:
            return
        job.stopped = job.stopped or _KILLED
        job.scope.cancel()

    async def aclose(self, grace: float = 10.0) -> None:
        """End every live job (status ``error``, reason ``shutdown``) and wait for their
        results to be recorded; queued ones end before they start."""
        live = [job for job in self._jobs.values() if not job.status.terminal]
        for job in live:
            job.stopped = _SHUTDOWN
            job.scope.cancel()
        with anyio.move_on_after(grace):
            for job in live:
                await job.done.wait()

    def events(self, job_id: str) -> AsyncIterator[JobEvent]:
        """Output chunks as produced, then the terminal status; replays what came before.

        An unknown id raises JobNotFound here, not at the first iteration."""
        return self._events(self.get(job_id))

    async def _events(self, job: _Job) -> AsyncIterator[JobEvent]:
        send, receive = anyio.create_memory_object_stream[JobEvent](
            max_buffer_size=4 * job.spec.limits.output_bytes // 65536 + 1024
        )
        for capture in (job.stdout, job.stderr):
            if capture.kept:
                send.send_nowait(OutputEvent(capture.name, capture.value()))
        if job.status.terminal:
            send.send_nowait(StatusEvent(job.status, job.result))
            send.close()
        else:
            job.listeners.append(send)
        async with receive:
            async for event in receive:
                yield event
                if isinstance(event, StatusEvent) and event.status.terminal:
                    return

    # -- the supervisor -----------------------------------------------------------------------

    async def _run(self, job: _Job) -> None:
        outcome = _Outcome(
            JobStatus.ERROR, None, "internal_error", "the job ended without a status"
        )
        usage = Usage()
        box: Box | None = None
        started = 0.0
        try:
            with job.scope:  # a kill reaches a queued job too
                async with self._slots:
                    job.started_at = started_at = datetime.now(UTC)
                    started = anyio.current_time()
                    await self._journal.job_running(job.id, started_at)
                    job.set_status(JobStatus.RUNNING)
                    with anyio.move_on_after(job.spec.timeout) as deadline:
                        env_paths = await self._resolver.prepare(job.spec.requirements)
                        box = await self._claim_box(job.spec, env_paths)
                        outcome, usage = await self._execute(job, box, env_paths)
                    if deadline.cancelled_caught:
                        message = f"the job ran past its timeout of {job.spec.timeout:g} s"
                        outcome = _Outcome(JobStatus.TIMEOUT, None, "timeout", message)
            if job.scope.cancelled_caught and job.stopped is not None:
                outcome = job.stopped
        except ExecboxError as exc:
            outcome = _Outcome(JobStatus.ERROR, None, type(exc).__name__, str(exc))
        except Exception as exc:
            outcome = _Outcome(
                JobStatus.ERROR, None, "internal_error", f"{type(exc).__name__}: {exc}"
            )
        finally:
            if box is not None:
                with anyio.CancelScope(shield=True):
                    stats = await box.stats()
                    outcome = self._judge(job, outcome, stats)
                    usage = Usage(
                        cpu_seconds=stats.usage.cpu_seconds or usage.cpu_seconds,
                        peak_memory_bytes=stats.usage.peak_memory_bytes or usage.peak_memory_bytes,
                    )
                    self._tg.start_soon(box.destroy)
            with anyio.CancelScope(shield=True):
                wall = anyio.current_time() - started if started else 0.0
                await self._finish(job, outcome, usage, wall)

    @staticmethod
    def _judge(job: _Job, outcome: _Outcome, stats: BoxStats) -> _Outcome:
        """A failed program may have failed because the box ran into one of its limits."""
        if outcome.status is not JobStatus.FAILED:
            return outcome
        # Where only RLIMIT_AS bounds memory, Python's MemoryError is the only evidence.
        out_of_memory = stats.oom_kills > 0 or (
            not stats.memory_counted and b"MemoryError" in job.stderr.value()[-4096:]
        )
        if out_of_memory:
            return _Outcome(
                JobStatus.MEMORY_LIMIT,
                outcome.exit_code,
                "memory_limit",
                "the box ran out of its memory limit",
            )
        if stats.pids_refusals > 0:
            return outcome._replace(reason="pids_limit", message="the box hit its process limit")
        return outcome

    async def _claim_box(self, spec: JobSpec, env_paths: Sequence[str]) -> Box:
        box_spec = BoxSpec(
            limits=spec.limits,
            network=spec.network,
            mounts=tuple(self._resolver.mounts(env_paths)),
            label="job",
        )
        if self.pool is not None:
            return await self.pool.claim(box_spec)
        return await self._backend.create(box_spec)

    async def _execute(
        self, job: _Job, box: Box, env_paths: Sequence[str]
    ) -> tuple[_Outcome, Usage]:
        spec = job.spec
        await box.put_files(spec.entries)
        env = {"PYTHONUNBUFFERED": "1", **self._resolver.environment(env_paths), **spec.env}
        for index, command in enumerate(spec.pre_commands, 1):
            process = await box.exec(["/bin/sh", "-c", command], env=env)
            exit_info = await self._supervise(job, process, None)
            if exit_info.returncode != 0:
                message = (
                    f"pre-command {index} ({shlex.quote(command)}) exited with "
                    f"{exit_info.returncode}"
                )
                failed = _Outcome(
                    JobStatus.FAILED, exit_info.returncode, "pre_command_failed", message
                )
                return failed, exit_info.usage
        argv = [self._python, spec.entrypoint, *spec.args]
        process = await box.exec(
            argv, env=env, cwd=WORKSPACE, stdin="pipe" if spec.stdin is not None else "null"
        )
        exit_info = await self._supervise(job, process, spec.stdin)
        status = JobStatus.SUCCEEDED if exit_info.exit_code == 0 else JobStatus.FAILED
        return _Outcome(
            status, exit_info.returncode, _signal_reason(exit_info.signal)
        ), exit_info.usage

    async def _supervise(self, job: _Job, process: Process, stdin: bytes | None) -> ExitInfo:
        """Pump stdin and both outputs until the process exits (plus a grace), then stop."""
        drained = [anyio.Event(), anyio.Event()]

        async def pump(
            stream: anyio.abc.ByteReceiveStream, capture: _Capture, done: anyio.Event
        ) -> None:
            try:
                async for chunk in stream:
                    kept = capture.add(chunk)
                    if kept:
                        job.publish(OutputEvent(capture.name, kept))
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                pass
            finally:
                done.set()

        async def feed() -> None:
            if stdin is not None:
                await process.send_stdin(stdin)
            await process.close_stdin()

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(pump, process.stdout, job.stdout, drained[0])
                tg.start_soon(pump, process.stderr, job.stderr, drained[1])
                tg.start_soon(feed)
                exit_info = await process.wait()
                # A daemon that inherited the pipes must not hold the job open.
                with anyio.move_on_after(EXIT_GRACE):
                    for event in drained:
                        await event.wait()
                tg.cancel_scope.cancel()
        finally:
            aclose = getattr(process, "aclose", None)
            if aclose is not None:
                with anyio.CancelScope(shield=True):
                    await aclose()
        return exit_info

    async def _finish(self, job: _Job, outcome: _Outcome, usage: Usage, wall: float) -> None:
        status, exit_code, reason, message = outcome
        job.result = JobResult(
            id=job.id,
            status=status,
            exit_code=exit_code,
            stdout_bytes=job.stdout.value(),
            stderr_bytes=job.stderr.value(),
            stdout_truncated=job.stdout.truncated,
            stderr_truncated=job.stderr.truncated,
            usage=replace(usage, wall_seconds=wall),
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=datetime.now(UTC),
            reason=reason,
            message=message,
        )
        try:
            await self._journal.job_finished(job.result)
        except Exception:
            log.exception("job %s: its result could not be recorded", job.id)
        job.set_status(status)
        for listener in job.listeners:
            listener.close()
        job.listeners.clear()
        job.done.set()


def _signal_reason(number: int | None) -> str | None:
    if number is None:
        return None
    try:
        return f"signal_{signal.Signals(number).name.lower()}"
    except ValueError:
        return f"signal_{number}"
