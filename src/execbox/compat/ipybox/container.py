"""``ExecutionContainer``: what an ipybox container holds, without Docker.

A container here is an execbox client (embedded, or a server's when ``EXECBOX_URL`` is set)
plus the settings every kernel started "in" it gets: binds, env, network, limits. Each
``ExecutionClient`` that connects to it opens an execbox session of its own, so clients are as
isolated from each other as ipybox's kernels, and more (a box each). The ports exist only to
find the container again: ``ExecutionClient(port=container.executor_port)`` looks it up in this
process; nothing listens on them.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import weakref
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING

import execbox

from ...client.transports import AsyncEmbeddedTransport
from ...engine.specs import check_env, check_limits
from .binds import Bind, resolve_binds

if TYPE_CHECKING:
    from .client import ExecutionClient

__all__ = ["DEFAULT_TAG", "ExecutionContainer"]

DEFAULT_TAG = "ghcr.io/gradion-ai/ipybox"
PORT_BASE = 48_888

_containers: weakref.WeakValueDictionary[int, ExecutionContainer] = weakref.WeakValueDictionary()
"""Live containers of this process by executor port: how a client finds its container."""
_ports = itertools.count(PORT_BASE)


def _check_tag(tag: str) -> str:
    """Any ipybox image name is accepted (and not pulled); another image is refused."""
    if not isinstance(tag, str) or not tag:
        raise ValueError("tag must be an image name such as 'ghcr.io/gradion-ai/ipybox:0.6.7'")
    name = tag.split("@", 1)[0].rsplit("/", 1)[-1].split(":", 1)[0]
    if "ipybox" not in name.lower():
        raise ValueError(
            f"tag {tag!r}: execbox runs its own Python kernel in a box, not a Docker image, so "
            "only ipybox images are accepted (their tag is not pulled). For what a custom image "
            "would add, pass requirements=[...] to ExecutionContainer, or `!pip install` in a cell"
        )
    return tag


def _free_port() -> int:
    while (port := next(_ports)) in _containers:
        pass
    return port


class ExecutionContainer:
    """An ipybox container's counterpart: start with ``async with`` (or ``run()``/``kill()``).

    ``binds`` map host paths to paths below ``/app`` (here the kernel's workspace), read-write;
    ``env`` is set in every kernel. Beyond ipybox: ``requirements`` (installed host-side from
    wheels, network not needed), ``limits`` (``execbox.Limits``; execbox's defaults otherwise)
    and ``network`` (on by default, as ipybox containers have it: ``!pip install`` needs it).
    """

    def __init__(
        self,
        tag: str = DEFAULT_TAG,
        binds: dict[str, str] | None = None,
        env: dict[str, str] | None = None,
        executor_port: int | None = None,
        resource_port: int | None = None,
        port_allocation_timeout: float = 10,
        show_pull_progress: bool = True,
        *,
        requirements: Sequence[str] | None = None,
        limits: execbox.Limits | None = None,
        network: bool = True,
    ) -> None:
        self.tag = _check_tag(tag)
        self.binds = dict(binds or {})
        self.env = check_env(env)  # InvalidSpec (a ValueError) now, not at the first client
        self.show_pull_progress = show_pull_progress
        self.requirements = list(requirements or [])
        self.limits = check_limits(limits)
        self.network = network
        self._executor_port = executor_port
        self._resource_port = resource_port
        self._port_allocation_timeout = port_allocation_timeout
        self._client: execbox.AsyncClient | None = None
        self._resolved: tuple[Bind, ...] = ()
        self._ready = asyncio.Event()
        self._clients: set[ExecutionClient] = set()

    def __repr__(self) -> str:
        state = f"port {self._executor_port}" if self._client else "not running"
        return f"<ExecutionContainer {self.tag} {state}>"

    async def __aenter__(self) -> ExecutionContainer:
        try:
            await self.run()
        except BaseException:
            await self.kill()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.kill()

    @property
    def executor_port(self) -> int:
        """The number ``ExecutionClient(port=...)`` finds this container by."""
        if self._executor_port is None:
            raise RuntimeError("Container not running")
        return self._executor_port

    @property
    def resource_port(self) -> int:
        """Reserved for ipybox's resource server, which execbox does not offer."""
        if self._resource_port is None:
            raise RuntimeError("Container not running")
        return self._resource_port

    async def run(self) -> None:
        """Open the execbox client and register the ports; ValueError for bad binds."""
        if self._client is not None:
            raise RuntimeError("the container is already running")
        port = self._executor_port
        if port is not None and _containers.get(port) not in (None, self):
            raise RuntimeError(f"executor port {port} is already allocated to another container")
        self._executor_port = port if port is not None else _free_port()
        _containers[self._executor_port] = self
        if self._resource_port is None:
            self._resource_port = _free_port()
        try:
            client = execbox.AsyncClient()
            await client.__aenter__()
            self._client = client
            if self.binds:
                if not self.embedded:
                    raise ValueError(
                        "binds are host paths, so they need an embedded execbox: unset "
                        "EXECBOX_URL, or copy the files into the workspace instead"
                    )
                check = os.geteuid() == 0
                self._resolved = await asyncio.to_thread(
                    resolve_binds, self.binds, check_reach=check
                )
        except BaseException:
            await self.kill()
            raise
        self._ready.set()

    async def kill(self) -> None:
        """Disconnect every client (their kernels end), then release the execbox client."""
        for client in list(self._clients):
            await client.disconnect()
        if self._executor_port is not None and _containers.get(self._executor_port) is self:
            del _containers[self._executor_port]
        self._ready.clear()
        engine, self._client = self._client, None
        if engine is not None:
            await engine.aclose()

    async def init_firewall(self, allowed_domains: list[str] | None = None) -> None:
        """Not offered: a box's network is all or nothing (``network=False`` for none)."""
        raise NotImplementedError(
            "execbox boxes have the network or not; per-domain firewalls are not offered: "
            "create the container with network=False for none"
        )

    # -- for ExecutionClient ------------------------------------------------------------------

    @property
    def embedded(self) -> bool:
        """Whether kernels run in this process's engine (binds need host paths: they do)."""
        transport = getattr(self._client, "_transport", None)
        return isinstance(transport, AsyncEmbeddedTransport)

    @property
    def resolved_binds(self) -> tuple[Bind, ...]:
        return self._resolved

    def execbox_client(self) -> execbox.AsyncClient:
        if self._client is None:
            raise RuntimeError("Container not running")
        return self._client

    def attach(self, client: ExecutionClient) -> None:
        self._clients.add(client)

    def detach(self, client: ExecutionClient) -> None:
        self._clients.discard(client)


async def find_container(port: int, wait: float) -> ExecutionContainer:
    """The live container of ``port`` in this process, waiting ``wait`` s for one starting."""
    container = _containers.get(port)
    if container is None:
        raise LookupError(
            f"no ExecutionContainer with executor port {port} runs in this process: "
            "execbox.compat.ipybox finds containers in the process that started them"
        )
    if container._ready.is_set():
        return container
    try:
        await asyncio.wait_for(container._ready.wait(), wait)
    except TimeoutError:
        raise LookupError(f"the container of port {port} did not start within {wait:g} s") from None
    return container
