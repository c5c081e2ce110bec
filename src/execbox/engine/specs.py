"""Validation shared by job and session specs, and the session spec itself.

Everything a caller can get wrong is refused here with ``InvalidSpec`` before any box starts.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..boxes.base import WORKSPACE, Mount
from ..errors import InvalidSpec
from ..models import Limits, validate_timeout
from .requirements import Requirements, RequirementsInput, parse_requirements

__all__ = [
    "MountsInput",
    "SessionSpec",
    "check_env",
    "check_limits",
    "make_session_spec",
]

MAX_ENV = 256
MAX_MOUNTS = 64
RESERVED = (
    "/proc", "/dev", "/sys", "/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64",
    "/libx32", "/opt/execbox", "/tmp/.execbox",
)  # fmt: skip

MountsInput = Mapping[str, str] | Sequence[Mount] | None


def check_env(env: Mapping[str, str] | None) -> dict[str, str]:
    if env is None:
        return {}
    if not isinstance(env, Mapping) or len(env) > MAX_ENV:
        raise InvalidSpec(f"env must be a mapping of at most {MAX_ENV} variables")
    clean: dict[str, str] = {}
    for key, value in env.items():
        if not isinstance(key, str) or not key or "=" in key or "\x00" in key:
            raise InvalidSpec(f"env: invalid variable name {key!r}")
        if not isinstance(value, str) or "\x00" in value:
            raise InvalidSpec(f"env: value of {key!r} must be a string without NUL")
        clean[key] = value
    return clean


def check_limits(limits: Limits | None) -> Limits:
    if limits is not None and not isinstance(limits, Limits):
        raise InvalidSpec(f"limits must be execbox.Limits, not {type(limits).__name__}")
    return limits or Limits()


def check_mounts(mounts: MountsInput) -> tuple[Mount, ...]:
    """``{host_path: box_path}`` (read-only) or ``Mount`` objects (``writable=True`` for rw)."""
    if mounts is None:
        return ()
    if isinstance(mounts, Mapping):
        items = [Mount(str(source), str(target)) for source, target in mounts.items()]
    elif isinstance(mounts, Sequence) and not isinstance(mounts, str):
        items = list(mounts)
    else:
        raise InvalidSpec("mounts must be {host_path: box_path} or a list of execbox.Mount")
    if len(items) > MAX_MOUNTS:
        raise InvalidSpec(f"at most {MAX_MOUNTS} mounts")
    checked = []
    for mount in items:
        if not isinstance(mount, Mount):
            raise InvalidSpec(f"mount {mount!r} is not an execbox.Mount")
        source, target = mount.source, mount.target
        if "\x00" in source + target or not os.path.isabs(source) or not target.startswith("/"):
            raise InvalidSpec(f"mount {source!r} -> {target!r}: both paths must be absolute")
        target = posixpath.normpath(target)
        if target == "/" or any(target == r or target.startswith(r + "/") for r in RESERVED):
            raise InvalidSpec(f"mount target {target!r} would hide a part of the box it needs")
        if not os.path.exists(source):
            raise InvalidSpec(f"mount source {source!r} does not exist")
        checked.append(Mount(os.path.realpath(source), target, bool(mount.writable)))
    return tuple(checked)


@dataclass(frozen=True)
class SessionSpec:
    kernel: str = "python3"
    limits: Limits = field(default_factory=Limits)
    network: bool = False
    env: Mapping[str, str] = field(default_factory=dict)
    mounts: tuple[Mount, ...] = ()
    cwd: str = WORKSPACE
    requirements: Requirements = field(default_factory=Requirements)
    idle_timeout: float | None = None
    """Seconds without any execution before the session closes; running code is activity."""
    ttl: float | None = None
    """Seconds after which the session closes, busy or not."""

    @property
    def poolable(self) -> bool:
        """Whether a pre-started kernel can serve it (env and cwd are set after the claim)."""
        return not self.mounts and not self.requirements


def make_session_spec(
    *,
    kernel: str = "python3",
    limits: Limits | None = None,
    network: bool = False,
    env: Mapping[str, str] | None = None,
    mounts: MountsInput = None,
    cwd: str | None = None,
    requirements: RequirementsInput = None,
    idle_timeout: float | None = None,
    ttl: float | None = None,
) -> SessionSpec:
    if not isinstance(kernel, str) or not kernel or "/" in kernel or len(kernel) > 128:
        raise InvalidSpec(f"kernel must be a kernelspec name, not {kernel!r}")
    workdir = cwd or WORKSPACE
    if not isinstance(workdir, str) or not workdir.startswith("/") or "\x00" in workdir:
        raise InvalidSpec(f"cwd must be an absolute path in the box, not {cwd!r}")
    return SessionSpec(
        kernel=kernel,
        limits=check_limits(limits),
        network=bool(network),
        env=check_env(env),
        mounts=check_mounts(mounts),
        cwd=posixpath.normpath(workdir),
        requirements=parse_requirements(requirements),
        idle_timeout=validate_timeout(idle_timeout, name="idle_timeout"),
        ttl=validate_timeout(ttl, name="ttl"),
    )
