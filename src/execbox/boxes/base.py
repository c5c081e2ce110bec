"""The Box protocol: what every backend (local, docker, ray) offers the engine.

A box is one isolated environment with its own filesystem view, process tree, network and
limits. It knows nothing of jobs or kernels: the engine runs processes in it, moves files in and
out, and destroys it. A handful of async methods, kept small so that backends stay comparable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from anyio.abc import ByteReceiveStream

from ..models import DirEntry, Limits, Usage

__all__ = [
    "WORKSPACE",
    "Backend",
    "Box",
    "BoxSpec",
    "BoxStats",
    "DirEntry",
    "ExitInfo",
    "FileEntry",
    "Mount",
    "Process",
    "Protection",
]

WORKSPACE = "/workspace"
"""Where a box's own files live; the only writable place besides ``/tmp``."""


@dataclass(frozen=True, slots=True)
class Mount:
    """A host path made visible inside the box; read-only unless asked."""

    source: str
    target: str
    writable: bool = False


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One file, directory or link to create inside a box, relative to the target directory."""

    name: str
    kind: Literal["file", "dir", "symlink", "hardlink"] = "file"
    data: bytes = b""
    mode: int = 0o644
    link: str = ""
    """Target of a symlink, or the earlier entry a hardlink repeats."""

    def as_tuple(self) -> tuple[str, str, int, str, bytes]:
        return (self.name, self.kind, self.mode, self.link, self.data)


@dataclass(frozen=True, slots=True)
class BoxSpec:
    limits: Limits = field(default_factory=Limits)
    network: bool = False
    mounts: Sequence[Mount] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    """Base environment of every process in the box (on top of a minimal one)."""
    label: str = ""
    """Who owns the box (a job or session id), for leftovers and logs."""


@dataclass(frozen=True, slots=True)
class ExitInfo:
    """How a process in a box ended."""

    exit_code: int | None
    """The exit status, or None when a signal ended it."""
    signal: int | None
    usage: Usage

    @property
    def returncode(self) -> int:
        """Shell convention: the exit status, or 128 + the signal number."""
        if self.exit_code is not None:
            return self.exit_code
        return 128 + (self.signal or 0)


@dataclass(frozen=True, slots=True)
class BoxStats:
    """What the box as a whole used and ran into, read from its cgroup where it has one."""

    usage: Usage
    oom_kills: int = 0
    """Processes the kernel killed at the memory limit, over the box's life: compare two
    readings to know whether a step of work ran into it."""
    pids_refusals: int = 0
    """Forks refused at the process limit, over the box's life."""
    memory_counted: bool = False
    """Whether ``oom_kills`` can be trusted: False where only rlimits bound memory."""


@dataclass(frozen=True, slots=True)
class Protection:
    """One isolation mechanism and whether this host gives it to the backend."""

    name: str
    active: bool
    detail: str
    """What it does when active, or what its absence means."""


class Process(Protocol):
    """A process started in a box; its output arrives as raw bytes, as produced."""

    @property
    def stdout(self) -> ByteReceiveStream: ...

    @property
    def stderr(self) -> ByteReceiveStream: ...

    async def send_stdin(self, data: bytes) -> None: ...

    async def close_stdin(self) -> None: ...

    async def wait(self) -> ExitInfo: ...

    async def kill(self) -> None:
        """Kill the process and everything it started (its session)."""

    async def signal(self, signum: int) -> None:
        """Send a signal to the process and its process group (SIGINT interrupts a kernel)."""


@runtime_checkable
class Box(Protocol):
    @property
    def id(self) -> str: ...

    async def exec(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str = WORKSPACE,
        stdin: Literal["pipe", "null"] = "null",
    ) -> Process: ...

    async def put_files(
        self, entries: Sequence[FileEntry], path: str = WORKSPACE, *, replace: bool = False
    ) -> None:
        """Create the entries inside the box, as the box's user, never following a link.

        An existing file is an error unless ``replace``; then the name is replaced, never the
        file a planted link points at.
        """

    async def get_file(self, path: str, *, max_bytes: int = 64 << 20) -> bytes:
        """Read a file from inside the box without following links planted there."""

    async def list_dir(self, path: str = WORKSPACE) -> list[DirEntry]: ...

    async def remove(self, path: str) -> None:
        """Delete a file, a link (not its target) or a whole directory inside the box."""

    async def open_unix_socket(self, path: str) -> int:
        """An ``O_PATH`` descriptor of the unix socket at ``path`` inside the box.

        Connect through ``/proc/self/fd/N``: the descriptor pins that very socket, so a link
        or a replacement planted by the box's code is never followed. The caller closes it.
        FileNotFoundError while nothing is there yet; BoxError for anything but a socket.
        """

    async def stats(self, *, reset_peak: bool = False) -> BoxStats:
        """Usage so far; ``reset_peak`` starts the peak-memory count afresh after reading."""

    async def destroy(self) -> None:
        """Kill everything in the box at once and remove every trace of it. Idempotent."""


class Backend(Protocol):
    name: str

    async def create(self, spec: BoxSpec) -> Box: ...

    async def reap(self) -> int:
        """Destroy boxes left behind by processes that are gone; return how many."""

    def protections(self) -> list[Protection]: ...

    def live_boxes(self) -> int:
        """Boxes this backend has started and not yet destroyed (pools included)."""
        ...

    async def aclose(self) -> None: ...
