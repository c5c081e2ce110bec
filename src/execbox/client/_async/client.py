"""The SDK for jobs. Written async here; ``scripts/unasync`` derives ``_sync/client.py``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from types import TracebackType
from typing import Any

from ...engine.files import FilesInput
from ...engine.jobs import make_job_spec
from ...engine.requirements import RequirementsInput
from ...models import JobEvent, JobResult, JobStatus, Limits
from ..transports import AsyncEmbeddedTransport, AsyncTransport

__all__ = ["AsyncClient", "AsyncJob"]


class AsyncJob:
    """A submitted job. ``status`` is the latest known; ``wait()`` gives the result."""

    def __init__(self, transport: AsyncTransport, job_id: str, status: JobStatus) -> None:
        self._transport = transport
        self.id = job_id
        self._status = status

    def __repr__(self) -> str:
        return f"<Job {self.id} {self._status}>"

    @property
    def status(self) -> JobStatus:
        return self._status

    async def refresh(self) -> JobStatus:
        self._status = await self._transport.job_status(self.id)
        return self._status

    async def wait(self, timeout: float | None = None) -> JobResult:
        """The result, once the job has ended; ExecboxTimeout if not within ``timeout`` s."""
        result = await self._transport.wait_job(self.id, timeout)
        self._status = result.status
        return result

    async def kill(self) -> None:
        """Stop the whole process tree of the job at once; its status becomes ``killed``."""
        await self._transport.kill_job(self.id)

    async def events(self) -> AsyncIterator[JobEvent]:
        """Output chunks as they are produced, then the terminal status with the result."""
        async for event in self._transport.job_events(self.id):
            yield event


class AsyncClient:
    """Runs jobs in isolated boxes on this machine (embedded: no server needed).

    Use it as a context manager so that boxes and the engine are released when you are done.
    """

    def __init__(self, *, transport: AsyncTransport | None = None, **engine_options: Any) -> None:
        self._transport: AsyncTransport = transport or AsyncEmbeddedTransport(**engine_options)

    async def __aenter__(self) -> AsyncClient:
        await self._transport.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Kill what still runs, destroy every box, release the engine."""
        await self._transport.aclose()

    async def submit(
        self,
        files: FilesInput = None,
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
    ) -> AsyncJob:
        """Start a job and return at once; bad input raises InvalidSpec before anything runs."""
        spec = make_job_spec(
            files,
            entrypoint=entrypoint,
            args=args,
            requirements=requirements,
            pre_commands=pre_commands,
            stdin=stdin,
            env=env,
            timeout=timeout,
            limits=limits,
            network=network,
        )
        job_id = await self._transport.submit_job(spec)
        return AsyncJob(self._transport, job_id, JobStatus.QUEUED)

    async def run(
        self,
        files: FilesInput = None,
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
    ) -> JobResult:
        """Run a job to its end; a failing program is a result with a status, not an error."""
        job = await self.submit(
            files,
            entrypoint=entrypoint,
            args=args,
            requirements=requirements,
            pre_commands=pre_commands,
            stdin=stdin,
            env=env,
            timeout=timeout,
            limits=limits,
            network=network,
        )
        return await job.wait()

    async def job(self, job_id: str) -> AsyncJob:
        """Find a job again by id; JobNotFound if this client never ran it."""
        status = await self._transport.job_status(job_id)
        return AsyncJob(self._transport, job_id, status)

    async def jobs(self) -> list[AsyncJob]:
        return [await self.job(job_id) for job_id in await self._transport.list_jobs()]
