"""``ComputeSession``: Backend.AI's compute session API, on an execbox session.

Every method is written once, async. Reached through a ``Session`` it runs on that session's
event loop thread and returns the result; through an ``AsyncSession`` it returns the coroutine,
as Backend.AI's ``api_function`` does. ``session.ComputeSession`` (and the older
``session.Kernel``) is this class bound to one client session.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import anyio

from .._compute import Compute
from .._runtime import limits_of
from .._stream import ExecutionStream, StreamContext
from ..exceptions import BackendClientError

if TYPE_CHECKING:
    from ..session import BaseSession

__all__ = ["ComputeSession", "api_function"]

MODES = {
    "query": "query",
    "batch": "batch",
    "continue": "continue",
    "continued": "continue",  # the spelling of Backend.AI's older docs
    "input": "input",
}
IGNORED_OPTIONS = frozenset(
    {
        "type_",
        "enqueue_only",
        "max_wait",
        "tag",
        "domain_name",
        "group_name",
        "scaling_group",
        "owner_access_key",
        "resource_opts",
        "cluster_mode",
        "callback_url",
        "preopen_ports",
        "assign_agent",
    }
)
"""Scheduling and bookkeeping options: execbox starts the session at once, wherever it runs."""


def api_function(impl: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
    """Run ``impl`` through the bound client session: blocking for ``Session``, a coroutine
    for ``AsyncSession``."""

    @functools.wraps(impl)
    def dispatch(owner: Any, *args: Any, **kwargs: Any) -> Any:
        session: BaseSession | None = owner._session
        if session is None:
            raise BackendClientError(
                "reach ComputeSession through a client session: session.ComputeSession"
            )
        return session._call(impl, owner, *args, **kwargs)

    return dispatch


def _token(name: str | None, client_token: str | None) -> str | None:
    if name is not None and client_token is not None and name != client_token:
        raise BackendClientError("name and client_token are the same thing: give one")
    token = name if name is not None else client_token
    if token is not None and not (isinstance(token, str) and 4 <= len(token) <= 64):
        raise BackendClientError("Client session token should be 4 to 64 characters long.")
    return token


class ComputeSession:
    """A compute session: a kernel in an isolated box, with its own workspace."""

    _session: ClassVar[BaseSession | None] = None

    def __init__(self, compute: Compute, *, created: bool, domain: str, group: str) -> None:
        self._compute = compute
        self.name = compute.name
        self.image = compute.image
        self.created = created
        """False when get_or_create returned a session its token already had."""
        self.status = "RUNNING"
        self.service_ports: list[str] = []
        self.domain = domain
        self.group = group
        self.owner_access_key: str | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} {self.image!r} ({self.id})>"

    @property
    def id(self) -> str:
        """The execbox session id."""
        return self._compute.id

    @property
    def kernel_id(self) -> str:
        return self._compute.id

    # -- lifecycle --------------------------------------------------------------------------

    @classmethod
    @api_function
    async def get_or_create(
        cls,
        image: str | None = None,
        *,
        lang: str | None = None,
        name: str | None = None,
        client_token: str | None = None,
        no_reuse: bool = False,
        mounts: Sequence[str] | None = None,
        mount_map: Mapping[str, str] | None = None,
        envs: Mapping[str, str] | None = None,
        resources: Mapping[str, Any] | None = None,
        cluster_size: int = 1,
        startup_command: str | None = None,
        bootstrap_script: str | None = None,
        network: bool = False,
        requirements: Sequence[str] | None = None,
        **options: Any,
    ) -> ComputeSession:
        """The live compute session of this token (``name``, or ``client_token`` as older
        clients call it), else a new one. ``image`` names a Python (or Lua) image;
        ``resources`` maps ``cpu`` and ``mem`` to the box's limits; ``envs`` become its
        environment. execbox's own: ``network`` (off by default) and ``requirements``
        (installed host-side from wheels)."""
        session = cls._session
        assert session is not None
        if (image is None) == (lang is None):
            raise BackendClientError("give the image (or, as older clients call it, lang) once")
        unknown = sorted(set(options) - IGNORED_OPTIONS)
        if unknown:
            raise BackendClientError(f"get_or_create() has no option {unknown[0]!r} in execbox")
        refused = {
            "mounts (vfolders)": mounts or mount_map or session.config.vfolder_mounts,
            "cluster_size > 1": cluster_size != 1,
            "startup_command": startup_command,
            "bootstrap_script": bootstrap_script,
        }
        for what, asked in refused.items():
            if asked:
                raise BackendClientError(f"execbox compute sessions have no {what}")
        compute, created = await session._runtime.get_or_create(
            image or lang or "",
            _token(name, client_token),
            no_reuse=no_reuse,
            env=envs,
            limits=limits_of(resources),
            network=network,
            requirements=requirements,
        )
        config = session.config
        return cls(compute, created=created, domain=config.domain, group=config.group)

    @api_function
    async def destroy(self, *, forced: bool = False) -> None:
        """End the compute session: its box, everything running in it, its files."""
        session = type(self)._session
        assert session is not None
        await session._runtime.destroy(self._compute)
        self.status = "TERMINATED"

    @api_function
    async def restart(self) -> None:
        """A fresh kernel in the same box: variables are lost, files stay."""
        await self._compute.restart()

    @api_function
    async def interrupt(self) -> None:
        await self._compute.interrupt()

    @api_function
    async def get_info(self) -> dict[str, Any]:
        return await self._compute.info()

    # -- running code -----------------------------------------------------------------------

    @api_function
    async def execute(
        self,
        run_id: str | None = None,
        code: str | None = None,
        mode: str = "query",
        opts: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """One step of a run loop: ``query`` starts code in the kernel, ``batch`` starts the
        ``clean``/``build``/``exec`` commands of ``opts`` (``"*"``: the default for the
        language), ``continue`` (or ``continued``) takes the next slice, ``input`` answers a
        ``waiting-input`` with ``code``. The result has ``runId``, ``status`` (``continued``,
        ``waiting-input``, ``build-finished``, ``finished``...), ``console``, ``exitCode``
        and ``options``."""
        kind = _mode(mode)
        text = _code(code, kind)
        compute = self._compute
        if kind in ("query", "batch"):
            run = await compute.start(run_id, kind, text, _opts(opts, kind))
        else:
            run = compute.run(run_id)
            if kind == "input":
                await run.answer(text)
        return await compute.next_result(run)

    def stream_execute(
        self, code: str = "", *, mode: str = "query", opts: Mapping[str, Any] | None = None
    ) -> StreamContext:
        """A query or batch run streamed as WebSocket-like messages (``AsyncSession`` only)::

        async with kern.stream_execute(code) as stream:
            async for message in stream: ...  # message.data is a result's JSON
        """
        session = type(self)._session
        if session is None or not session._streams:
            raise BackendClientError("stream_execute() needs an AsyncSession")
        if mode not in ("query", "batch"):
            raise BackendClientError(f"Invalid stream-execution mode: {mode}")
        text = _code(code, mode)
        options = _opts(opts, mode)

        async def start() -> ExecutionStream:
            run = await self._compute.start(None, mode, text, options)
            return ExecutionStream(self._compute, run)

        return StreamContext(start)

    # -- files ------------------------------------------------------------------------------

    @api_function
    async def upload(
        self,
        files: Sequence[str | Path],
        basedir: str | Path | None = None,
        show_progress: bool = False,
    ) -> None:
        """Copy local files into the workspace, at their path relative to ``basedir`` (the
        current directory by default), as Backend.AI puts them under ``/home/work``."""
        base = await (anyio.Path.cwd() if basedir is None else anyio.Path(basedir).resolve())
        contents: dict[str, bytes] = {}
        for file in files:
            path = await anyio.Path(file).resolve()
            try:
                relative = path.relative_to(base)
            except ValueError:
                message = f'File "{path}" is outside of the base directory "{base}".'
                raise ValueError(message) from None
            contents[relative.as_posix()] = await path.read_bytes()
        await self._compute.upload(contents)

    @api_function
    async def download(
        self,
        files: Sequence[str | Path],
        dest: str | Path = ".",
        show_progress: bool = False,
    ) -> dict[str, list[str]]:
        """Copy workspace files to ``dest``, at their path relative to the workspace."""
        names: list[str] = []
        for file in files:
            data = await self._compute.read(str(file))
            relative = str(file).removeprefix("/home/work/").removeprefix("/workspace/")
            target = anyio.Path(dest) / relative.lstrip("/")
            await target.parent.mkdir(parents=True, exist_ok=True)
            await target.write_bytes(data)
            names.append(relative)
        return {"file_names": names}

    @api_function
    async def list_files(self, path: str | Path = ".") -> dict[str, Any]:
        """The entries of a workspace directory; ``files`` is JSON text, as Backend.AI's."""
        entries = await self._compute.list_files(str(path))
        return {"files": json.dumps(entries), "errors": "", "abspath": str(path)}


def _mode(mode: str) -> str:
    kind = MODES.get(mode) if isinstance(mode, str) else None
    if kind is None:
        raise BackendClientError(
            f"Invalid execution mode: {mode!r} (query, batch, continue or input)"
        )
    return kind


def _code(code: str | None, kind: str) -> str:
    if code is None and kind == "batch":
        return ""
    if not isinstance(code, str):
        raise BackendClientError("The code argument must be a valid string even when empty.")
    return code


def _opts(opts: Mapping[str, Any] | None, kind: str) -> dict[str, Any]:
    """A copy (callers clear theirs after the call); batch commands are text or None."""
    if kind != "batch" or opts is None:
        return {}
    if not isinstance(opts, Mapping):
        raise BackendClientError(f"opts must be a mapping, not {type(opts).__name__}")
    chosen = {key: opts.get(key) for key in ("clean", "build", "exec")}
    for key, value in chosen.items():
        if value is not None and not isinstance(value, str):
            raise BackendClientError(f"opts[{key!r}] must be a command string, or '*'")
    return chosen
