"""What one Backend.AI client session owns: an execbox client, the tasks relaying runs, and
its compute sessions by client token (get-or-create).

The execbox client is made without arguments, so it is embedded, or remote when
``EXECBOX_URL`` is set. Embedded, compute sessions live as long as the client session that made
them (there is no daemon to keep them); the same token gives the same compute session for as
long as it is alive, and a new one once it has ended (destroyed, or killed at a limit).
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any

import anyio
import anyio.abc

from ... import AsyncClient, Limits
from ...errors import InvalidSpec
from ._boxside import setup_cell
from ._compute import Compute
from ._images import language_of
from .exceptions import BackendAPIError, BackendClientError

__all__ = ["Runtime", "limits_of"]

NO_RESOURCE = ("cuda", "rocm", "tpu", "ipu", "atom", "warboy", "hyperaccel")
"""Accelerator slots: there are none in a box; asking for zero of them is fine."""


def limits_of(resources: Mapping[str, Any] | None) -> Limits | None:
    """Backend.AI's resource slots (``cpu`` cores, ``mem`` like ``"1g"``) as execbox limits."""
    if not resources:
        return None
    if not isinstance(resources, Mapping):
        raise BackendClientError(f"resources must be a mapping of slots, not {resources!r}")
    options: dict[str, Any] = {}
    for slot, value in resources.items():
        if slot == "cpu":
            options["cpus"] = float(value)
        elif slot == "mem":
            options["memory"] = value
        elif str(slot).split(".")[0] in NO_RESOURCE:
            if value not in (0, "0", None):
                raise BackendClientError(f"resources: execbox has no {slot!r} (no accelerators)")
        else:
            raise BackendClientError(
                f"resources: unknown slot {slot!r} (execbox knows 'cpu' and 'mem')"
            )
    try:
        return Limits(**options)
    except (InvalidSpec, ValueError, TypeError) as exc:
        raise BackendClientError(f"resources: {exc}") from exc


def _seconds(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BackendClientError(f"{name} must be a number of seconds, not {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise BackendClientError(f"{name} must be a positive number of seconds")
    return float(value)


class Runtime:
    """The async core of one client session; ``Session`` drives it from a portal thread."""

    def __init__(self, *, flush_timeout: float, exec_timeout: float | None) -> None:
        self.flush_timeout = _seconds("flush_timeout", flush_timeout)
        self.exec_timeout = None if exec_timeout is None else _seconds("exec_timeout", exec_timeout)
        self._stack: AsyncExitStack | None = None
        self._client: AsyncClient | None = None
        self._tasks: anyio.abc.TaskGroup | None = None
        self._by_token: dict[str, Compute] = {}
        self._locks: dict[str, anyio.Lock] = {}
        """One per token: a token is created once, different tokens in parallel."""

    async def __aenter__(self) -> Runtime:
        async with AsyncExitStack() as stack:
            self._client = await stack.enter_async_context(AsyncClient())
            self._tasks = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(self._tasks.cancel_scope.cancel)  # relays end before the client
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        self._by_token.clear()
        if stack is not None:
            await stack.aclose()

    def _running(self) -> tuple[AsyncClient, anyio.abc.TaskGroup]:
        if self._client is None or self._tasks is None or self._stack is None:
            raise BackendClientError(
                "the session is not open: use `with Session() as session` "
                "(or `async with AsyncSession() as session`)"
            )
        return self._client, self._tasks

    async def get_or_create(
        self,
        image: str,
        token: str | None,
        *,
        no_reuse: bool = False,
        env: Mapping[str, str] | None = None,
        limits: Limits | None = None,
        network: bool = False,
        requirements: Sequence[str] | None = None,
    ) -> tuple[Compute, bool]:
        """The live compute session of ``token`` (False: reused), else a new one (True)."""
        client, tasks = self._running()
        language = language_of(image)
        name = token or f"pysdk-{secrets.token_hex(5)}"
        async with self._locks.setdefault(name, anyio.Lock()):
            known = self._by_token.get(name)
            if known is not None and await known.alive():
                if no_reuse:
                    raise BackendAPIError.problem(
                        409, "Conflict", "session-already-exists", f"session {name!r} exists"
                    )
                if known.language is not language:
                    raise BackendAPIError.problem(
                        400,
                        "Bad Request",
                        "invalid-api-params",
                        f"session {name!r} exists with image {known.image!r}, not {image!r}",
                    )
                return known, False
            try:
                box = client.session(
                    limits=limits,
                    env=env,
                    network=network,
                    requirements=[*language.requirements, *(requirements or ())] or None,
                    client_token=token,  # on a server, other processes' sessions of the token too
                )
            except InvalidSpec as exc:
                raise BackendClientError(str(exc)) from exc
            await box.start()
            compute = Compute(
                box,
                name=name,
                image=image,
                language=language,
                tasks=tasks,
                flush_timeout=self.flush_timeout,
                exec_timeout=self.exec_timeout,
            )
            try:
                (await box.execute(setup_cell())).raise_for_error()
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await box.close()
                raise
            self._by_token[name] = compute
            return compute, True

    async def destroy(self, compute: Compute) -> None:
        async with self._locks.setdefault(compute.name, anyio.Lock()):
            if self._by_token.get(compute.name) is compute:
                del self._by_token[compute.name]
            await compute.destroy()
