"""The SDK for jobs. Written async here; ``scripts/unasync`` derives ``_sync/client.py``."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping, Sequence
from types import TracebackType
from typing import Any

from ...boxes.base import WORKSPACE
from ...engine.files import FilesInput
from ...engine.jobs import make_job_spec
from ...engine.requirements import RequirementsInput
from ...engine.specs import MountsInput, make_session_spec
from ...errors import InvalidSpec
from ...models import JobEvent, JobResult, JobStatus, Limits
from ..remote import AsyncRemoteTransport
from ..targets import API_KEY_VARIABLE, target_url
from ..transports import AsyncEmbeddedTransport, AsyncTransport
from .sessions import AsyncSession

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
    """Runs jobs and sessions in isolated boxes: on this machine, or through a server.

    ``AsyncClient()`` is embedded (no server needed) unless ``EXECBOX_URL`` is set;
    ``AsyncClient(url, api_key=...)`` (or ``EXECBOX_URL`` and ``EXECBOX_API_KEY``) talks to
    ``execbox serve``. Both have exactly this API and raise the same exceptions. Engine options
    (``pool_size=...``) ask for an embedded engine. Use it as a context manager so that boxes,
    the engine or the connections are released when you are done.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        api_key: str | None = None,
        transport: AsyncTransport | None = None,
        **engine_options: Any,
    ) -> None:
        if transport is None:
            url = target_url(url, engine_options)
            if url:
                key = api_key if api_key is not None else os.environ.get(API_KEY_VARIABLE)
                transport = AsyncRemoteTransport(url, key or None)
            elif api_key is not None:
                raise InvalidSpec("api_key is for a server: pass its url too")
            else:
                transport = AsyncEmbeddedTransport(**engine_options)
        self._transport: AsyncTransport = transport

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._transport!r}>"

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
        return await self._transport.run_job(spec)

    async def job(self, job_id: str) -> AsyncJob:
        """Find a job again by id; JobNotFound if this client never ran it."""
        status = await self._transport.job_status(job_id)
        return AsyncJob(self._transport, job_id, status)

    async def jobs(self) -> list[AsyncJob]:
        return [await self.job(job_id) for job_id in await self._transport.list_jobs()]

    def session(
        self,
        *,
        kernel: str = "python3",
        limits: Limits | None = None,
        network: bool = False,
        env: Mapping[str, str] | None = None,
        mounts: MountsInput = None,
        cwd: str = WORKSPACE,
        requirements: RequirementsInput = None,
        idle_timeout: float | None = None,
        ttl: float | None = None,
        client_token: str | None = None,
    ) -> AsyncSession:
        """A stateful kernel session, started when entered as a context manager.

        ``mounts`` maps host paths to box paths (read-only), or lists ``Mount`` objects
        (``writable=True`` for read-write). ``requirements`` are installed host-side from
        wheels, so they work with the network off; with ``network=True``, ``%pip install``
        works in cells too. With ``client_token``, starting gives the open session made with
        the same token, if there is one (on a server: by any client of the tenant), else a new
        one. Bad input raises InvalidSpec here, before anything starts.
        """
        spec = make_session_spec(
            kernel=kernel,
            limits=limits,
            network=network,
            env=env,
            mounts=mounts,
            cwd=cwd,
            requirements=requirements,
            idle_timeout=idle_timeout,
            ttl=ttl,
        )
        if client_token is not None and not (
            isinstance(client_token, str) and 0 < len(client_token) <= 200
        ):
            raise InvalidSpec("client_token must be a string of 1 to 200 characters")
        return AsyncSession(self._transport, spec, client_token=client_token)

    async def attach(self, session_id: str) -> AsyncSession:
        """A session started earlier, by id; SessionNotFound if this client has none such."""
        await self._transport.session_info(session_id)
        return AsyncSession(self._transport, None, session_id)

    async def sessions(self) -> list[AsyncSession]:
        return [
            AsyncSession(self._transport, None, sid)
            for sid in await self._transport.list_sessions()
        ]
