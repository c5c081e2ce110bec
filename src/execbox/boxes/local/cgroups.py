"""Per-box cgroups on v1 and v2 hierarchies: limits, usage, and freeze-then-kill.

A box's cgroup is the one reliable handle on everything it started, daemons included: killing a
box means freezing the group (no new forks), SIGKILL to every member, thawing, removing it.
Box cgroups live under ``<our own cgroup>/execbox`` so that any limit placed on the service also
bounds its boxes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ...models import Limits, Usage

__all__ = ["BoxCgroup", "CgroupDriver", "detect_cgroups"]

_CPU_PERIOD_US = 100_000
_CONTROLLERS_V1 = ("memory", "pids", "cpu", "cpuacct", "freezer")


def _write(path: Path, value: str) -> None:
    with open(path, "w") as handle:
        handle.write(value)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _read_int(path: Path) -> int:
    text = _read(path).strip()
    return int(text) if text.isdigit() else 0


def _keyed(path: Path) -> dict[str, int]:
    """Parse ``key value`` lines (memory.events, cpu.stat, oom_control)."""
    result: dict[str, int] = {}
    for line in _read(path).splitlines():
        key, _, value = line.partition(" ")
        with contextlib.suppress(ValueError):
            result[key] = int(value)
    return result


def _wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)


class BoxCgroup(Protocol):
    name: str

    def attach(self, pid: int) -> None: ...

    def pids(self) -> list[int]: ...

    def kill_all(self) -> None: ...

    def usage(self) -> Usage: ...

    def reset_peak(self) -> None:
        """Start the peak-memory count afresh (one session cell at a time), where supported."""

    def oom_kills(self) -> int: ...

    def pids_refusals(self) -> int: ...

    def remove(self) -> None: ...


class CgroupDriver(Protocol):
    @property
    def version(self) -> int: ...

    @property
    def controllers(self) -> frozenset[str]:
        """Which of memory, pids, cpu, cpuacct, freezer are usable."""

    @property
    def swap_accounted(self) -> bool: ...

    def create(self, name: str, limits: Limits) -> BoxCgroup: ...

    def leftovers(self) -> list[str]:
        """Names of box cgroups that exist now."""

    def open(self, name: str) -> BoxCgroup: ...


# --- cgroup v1 -------------------------------------------------------------------------------


@dataclass
class _BoxCgroupV1:
    name: str
    dirs: dict[str, Path]

    def attach(self, pid: int) -> None:
        for directory in self.dirs.values():
            _write(directory / "cgroup.procs", str(pid))

    def pids(self) -> list[int]:
        any_dir = (
            self.dirs.get("freezer") or self.dirs.get("pids") or next(iter(self.dirs.values()))
        )
        return [int(p) for p in _read(any_dir / "cgroup.procs").split()]

    def kill_all(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._kill_all()

    def _kill_all(self) -> None:
        freezer = self.dirs.get("freezer")
        if freezer is not None:
            _write(freezer / "freezer.state", "FROZEN")
            _wait_until(lambda: _read(freezer / "freezer.state").strip() == "FROZEN", 1.0)
        for _ in range(100):
            members = self.pids()
            if not members:
                break
            for pid in members:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if freezer is not None:
                _write(freezer / "freezer.state", "THAWED")
            _wait_until(lambda: not self.pids(), 0.2)

    def usage(self) -> Usage:
        memory, cpuacct = self.dirs.get("memory"), self.dirs.get("cpuacct")
        peak = _read_int(memory / "memory.max_usage_in_bytes") if memory else 0
        cpu_ns = _read_int(cpuacct / "cpuacct.usage") if cpuacct else 0
        return Usage(cpu_seconds=cpu_ns / 1e9, peak_memory_bytes=peak)

    def reset_peak(self) -> None:
        memory = self.dirs.get("memory")
        if memory is not None:
            with contextlib.suppress(OSError):
                _write(memory / "memory.max_usage_in_bytes", "0")

    def oom_kills(self) -> int:
        memory = self.dirs.get("memory")
        return _keyed(memory / "memory.oom_control").get("oom_kill", 0) if memory else 0

    def pids_refusals(self) -> int:
        pids = self.dirs.get("pids")
        return _keyed(pids / "pids.events").get("max", 0) if pids else 0

    def remove(self) -> None:
        for directory in self.dirs.values():
            for _ in range(50):
                try:
                    directory.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.002)


@dataclass
class CgroupV1:
    parents: dict[str, Path]
    swap_accounted: bool
    version: int = 1

    @property
    def controllers(self) -> frozenset[str]:
        return frozenset(self.parents)

    def create(self, name: str, limits: Limits) -> BoxCgroup:
        dirs: dict[str, Path] = {}
        try:
            for controller, parent in self.parents.items():
                directory = parent / name
                directory.mkdir()
                dirs[controller] = directory
            if "memory" in dirs:
                memory = dirs["memory"]
                _write(memory / "memory.limit_in_bytes", str(limits.memory_bytes))
                if self.swap_accounted:
                    _write(memory / "memory.memsw.limit_in_bytes", str(limits.memory_bytes))
            if "pids" in dirs:
                _write(dirs["pids"] / "pids.max", str(limits.pids))
            if "cpu" in dirs:
                _write(dirs["cpu"] / "cpu.cfs_period_us", str(_CPU_PERIOD_US))
                _write(dirs["cpu"] / "cpu.cfs_quota_us", str(int(limits.cpus * _CPU_PERIOD_US)))
        except BaseException:
            _BoxCgroupV1(name, dirs).remove()
            raise
        return _BoxCgroupV1(name, dirs)

    def open(self, name: str) -> BoxCgroup:
        return _BoxCgroupV1(name, {c: p / name for c, p in self.parents.items()})

    def leftovers(self) -> list[str]:
        names: set[str] = set()
        for parent in self.parents.values():
            names.update(entry.name for entry in parent.iterdir() if entry.is_dir())
        return sorted(names)


# --- cgroup v2 -------------------------------------------------------------------------------


@dataclass
class _BoxCgroupV2:
    name: str
    directory: Path
    _peak_fd: int | None = None
    """memory.peak resets per open file (kernel 6.12+): reads go through the resetting fd."""

    def attach(self, pid: int) -> None:
        _write(self.directory / "cgroup.procs", str(pid))

    def pids(self) -> list[int]:
        return [int(p) for p in _read(self.directory / "cgroup.procs").split()]

    def kill_all(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._kill_all()

    def _kill_all(self) -> None:
        if (self.directory / "cgroup.kill").exists():
            _write(self.directory / "cgroup.kill", "1")
        else:  # kernels before 5.14: freeze, kill each, thaw
            _write(self.directory / "cgroup.freeze", "1")
            for pid in self.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            _write(self.directory / "cgroup.freeze", "0")
        _wait_until(lambda: not self.pids(), 1.0)

    def usage(self) -> Usage:
        cpu_us = _keyed(self.directory / "cpu.stat").get("usage_usec", 0)
        peak = _read_int(self.directory / "memory.peak")
        if self._peak_fd is not None:
            with contextlib.suppress(OSError, ValueError):
                peak = int(os.pread(self._peak_fd, 64, 0).split()[0])
        return Usage(cpu_seconds=cpu_us / 1e6, peak_memory_bytes=peak)

    def reset_peak(self) -> None:
        if self._peak_fd is None:
            try:
                self._peak_fd = os.open(self.directory / "memory.peak", os.O_RDWR | os.O_CLOEXEC)
            except OSError:
                return
        try:
            os.pwrite(self._peak_fd, b"reset\n", 0)
        except OSError:  # an older kernel: the peak stays the box's lifetime peak
            os.close(self._peak_fd)
            self._peak_fd = None

    def oom_kills(self) -> int:
        return _keyed(self.directory / "memory.events").get("oom_kill", 0)

    def pids_refusals(self) -> int:
        return _keyed(self.directory / "pids.events").get("max", 0)

    def remove(self) -> None:
        if self._peak_fd is not None:
            os.close(self._peak_fd)
            self._peak_fd = None
        for _ in range(50):
            try:
                self.directory.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.002)


@dataclass
class CgroupV2:
    parent: Path
    controllers: frozenset[str]
    swap_accounted: bool = True
    version: int = 2

    def create(self, name: str, limits: Limits) -> BoxCgroup:
        directory = self.parent / name
        directory.mkdir()
        box = _BoxCgroupV2(name, directory)
        try:
            if "memory" in self.controllers:
                _write(directory / "memory.max", str(limits.memory_bytes))
                if (directory / "memory.swap.max").exists():
                    _write(directory / "memory.swap.max", "0")
            if "pids" in self.controllers:
                _write(directory / "pids.max", str(limits.pids))
            if "cpu" in self.controllers:
                _write(
                    directory / "cpu.max", f"{int(limits.cpus * _CPU_PERIOD_US)} {_CPU_PERIOD_US}"
                )
        except BaseException:
            box.remove()
            raise
        return box

    def open(self, name: str) -> BoxCgroup:
        return _BoxCgroupV2(name, self.parent / name)

    def leftovers(self) -> list[str]:
        return sorted(
            e.name for e in self.parent.iterdir() if e.is_dir() and e.name != "supervisor"
        )


# --- detection -------------------------------------------------------------------------------


def _own_cgroups() -> dict[str, str]:
    """Controller (or "" for the unified hierarchy) -> our cgroup path in it."""
    result: dict[str, str] = {}
    for line in _read(Path("/proc/self/cgroup")).splitlines():
        _, names, path = line.split(":", 2)
        for name in names.split(",") if names else [""]:
            result[name] = path
    return result


def _mounts() -> list[tuple[str, str, set[str]]]:
    """(fstype, mount point, super options) of every cgroup mount."""
    found = []
    for line in _read(Path("/proc/self/mountinfo")).splitlines():
        left, _, right = line.partition(" - ")
        fstype, _source, options = [*right.split(" "), "", ""][:3]
        if fstype in ("cgroup", "cgroup2"):
            found.append((fstype, left.split(" ")[4], set(options.split(","))))
    return found


def _writable_dir(path: Path) -> bool:
    try:
        path.mkdir(exist_ok=True)
    except OSError:
        return False
    return os.access(path / "cgroup.procs", os.W_OK)


def _detect_v1(own: dict[str, str], problems: list[str]) -> CgroupV1 | None:
    parents: dict[str, Path] = {}
    for fstype, point, options in _mounts():
        if fstype != "cgroup":
            continue
        for controller in _CONTROLLERS_V1:
            if controller in options and controller not in parents:
                base = Path(point) / own.get(controller, "/").lstrip("/") / "execbox"
                if _writable_dir(base):
                    parents[controller] = base
                else:
                    problems.append(f"cgroup v1 {controller}: {base} is not writable")
    if not parents:
        return None
    memory = parents.get("memory")
    swap = bool(memory and (memory / "memory.memsw.limit_in_bytes").exists())
    return CgroupV1(parents, swap_accounted=swap)


def _prepare_v2(parent: Path, wanted: set[str]) -> frozenset[str]:
    """Enable controllers for box cgroups under ``parent``; return those that are on."""
    enabled = set(_read(parent / "cgroup.subtree_control").split())
    available = set(_read(parent / "cgroup.controllers").split())
    missing = (wanted & available) - enabled
    if missing:
        with contextlib.suppress(OSError):
            _write(parent / "cgroup.subtree_control", " ".join(f"+{c}" for c in sorted(missing)))
    enabled = set(_read(parent / "cgroup.subtree_control").split())
    return frozenset(enabled & wanted)


def detect_v2(root: Path, own_path: str, problems: list[str]) -> CgroupV2 | None:
    """Box cgroups under ``<our cgroup>/execbox`` on the unified hierarchy mounted at ``root``.

    The "no internal processes" rule forbids enabling controllers in a group that holds
    processes, so ``execbox`` is a child of our group, never our group itself.
    """
    parent = root / own_path.lstrip("/") / "execbox"
    if not _writable_dir(parent):
        problems.append(f"cgroup v2: {parent} is not writable (no delegation to this user)")
        return None
    controllers = _prepare_v2(parent.parent, {"memory", "pids", "cpu"})
    if controllers:
        controllers = _prepare_v2(parent, set(controllers))
    # cgroup.freeze (5.2+) and cgroup.kill (5.14+) need no controller: v2 can always freeze.
    swap = "memory" in controllers and (parent / "memory.swap.max").exists()
    return CgroupV2(parent, frozenset(controllers | {"freezer"}), swap_accounted=swap)


def detect_cgroups(problems: list[str] | None = None) -> CgroupDriver | None:
    """The best cgroup driver this process can use, or None (then rlimits are the fallback)."""
    problems = problems if problems is not None else []
    own = _own_cgroups()
    mounts = _mounts()
    if any(fstype == "cgroup" for fstype, _, _ in mounts):
        driver = _detect_v1(own, problems)
        if driver is not None:
            return driver
    for fstype, point, _ in mounts:
        if fstype == "cgroup2" and not any(f == "cgroup" for f, _, _ in mounts):
            return detect_v2(Path(point), own.get("", "/"), problems)
    if not mounts:
        problems.append("no cgroup filesystem is mounted")
    return None
