"""python-executor's ``Metadata`` to an execbox job, and an execbox job's result back.

One mapping, used by the client (``PythonExecutorClient``) and by the server's
python-executor routes, so both honour every field the same way:

============================  ==================================================================
python-executor               execbox
============================  ==================================================================
``entrypoint``                the program run (``python <entrypoint> <script_args...>``)
``script_args``               its arguments
``env_vars`` ``["K=v"]``      its environment
``stdin``                     its standard input
``pre_commands``              shell commands run in the box first, in order; one that fails ends
                              the run with its exit code (``error`` says which)
``requirements_txt``          requirements installed from wheels by a trusted host step and
                              bound read-only into the box, so they work with the network off
``docker_image``              only ``python[:tag]`` images whose version is the boxes' Python:
                              boxes run this host's interpreter; any other image raises
                              ``UnsupportedOption``
``timeout_seconds``           the job's wall-clock timeout (status ``failed``, ``error`` says so)
``memory_mb``                 the box's memory cgroup limit (swap included): a program past it is
                              killed, exit code 137, ``error`` says so
``disk_mb``                   the size of the box's writable filesystems (workspace and /tmp):
                              writing past it fails with ``ENOSPC``
``cpu_shares``                a CPU quota of ``cpu_shares / 1024`` CPUs (see ``cpus_of``)
``network_disabled``          the network: a box has none unless ``network_disabled`` is False
============================  ==================================================================

Unset or zero limits take python-executor's documented defaults (300 s, 1024 MiB, 2048 MiB,
1024 shares, no network), as its server fills zero values. A value that cannot be honoured is an
error, never silently dropped.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ...errors import InvalidLimits, InvalidSpec, NoEntrypoint
from ...models import JobResult, JobStatus, Limits
from .types import ExecutionConfig, ExecutionResult, ExecutionStatus, Metadata

__all__ = [
    "CPU_SHARES_PER_CPU",
    "JobOptions",
    "UnsupportedOption",
    "box_python_version",
    "check_image",
    "check_python_version",
    "config_from",
    "cpus_of",
    "execution_result",
    "job_options",
    "live_result",
    "metadata_from",
    "status_of",
    "to_wire",
]

MIB = 1 << 20
CPU_SHARES_PER_CPU = 1024
DEFAULTS = ExecutionConfig()


class UnsupportedOption(InvalidSpec):
    """A python-executor option execbox cannot honour (another image or Python version)."""


@dataclass(frozen=True)
class JobOptions:
    """Keyword arguments of ``execbox.Client.submit`` (and of the server's job spec)."""

    entrypoint: str
    args: tuple[str, ...]
    requirements: str | None
    pre_commands: tuple[str, ...]
    stdin: str | None
    env: dict[str, str]
    timeout: float
    memory: int
    cpus: float
    disk: int
    network: bool

    def limit_values(self) -> dict[str, Any]:
        return {"memory": self.memory, "cpus": self.cpus, "disk": self.disk}

    def limits(self) -> Limits:
        return Limits(**self.limit_values())


def cpus_of(shares: int) -> float:
    """CPUs for Docker CPU shares.

    Docker's shares are a relative weight that only matters when CPUs are contended; execbox
    gives each box a hard quota instead. The two meet at the convention Docker and Kubernetes
    share: 1024 shares are one CPU (``--cpus=1``; a request of ``1`` CPU is 1024 shares). So
    512 shares are a quota of half a CPU, 2048 of two, and the box can never take more,
    contended or not."""
    return shares / CPU_SHARES_PER_CPU


def _count(value: Any, name: str, default: int) -> int:
    """A positive whole number; None or 0 mean python-executor's default."""
    if value is None or (value == 0 and not isinstance(value, bool)):
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidLimits(f"{name} must be a positive whole number, got {value!r}")
    return int(value)


def _strings(value: Any, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise InvalidSpec(f"{name} must be a list of strings, got {value!r}")
    if not all(isinstance(item, str) for item in value):
        raise InvalidSpec(f"{name} must hold only strings, got {value!r}")
    return tuple(value)


def _env(items: tuple[str, ...]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in items:
        name, equals, value = item.partition("=")
        if not equals or not name:
            raise InvalidSpec(f"env_vars: {item!r} is not of the form KEY=value")
        env[name] = value
    return env


def _text(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidSpec(f"{name} must be a string, got {type(value).__name__}")
    return value or None


def job_options(metadata: Metadata) -> JobOptions:
    """Every field of ``metadata`` as an execbox job option; InvalidSpec for what cannot be."""
    if not isinstance(metadata, Metadata):
        raise InvalidSpec(f"metadata must be a Metadata, not {type(metadata).__name__}")
    if not isinstance(metadata.entrypoint, str) or not metadata.entrypoint:
        raise NoEntrypoint("metadata.entrypoint must name the Python file to run")
    config = metadata.config if metadata.config is not None else DEFAULTS
    if not isinstance(config, ExecutionConfig):
        raise InvalidSpec(f"metadata.config must be an ExecutionConfig, not {config!r}")
    check_image(_text(metadata.docker_image, "docker_image"))
    network_disabled = config.network_disabled
    if network_disabled is not None and not isinstance(network_disabled, bool):
        raise InvalidSpec(f"network_disabled must be true or false, got {network_disabled!r}")
    shares = _count(config.cpu_shares, "cpu_shares", DEFAULTS.cpu_shares)
    cpus = cpus_of(shares)
    lowest = math.ceil(0.01 * CPU_SHARES_PER_CPU)
    if cpus < 0.01:
        raise InvalidLimits(f"cpu_shares {shares} is below {lowest}, a hundredth of a CPU")
    return JobOptions(
        entrypoint=metadata.entrypoint,
        args=_strings(metadata.script_args, "script_args"),
        requirements=_text(metadata.requirements_txt, "requirements_txt"),
        pre_commands=_strings(metadata.pre_commands, "pre_commands"),
        stdin=_text(metadata.stdin, "stdin"),
        env=_env(_strings(metadata.env_vars, "env_vars")),
        timeout=float(_count(config.timeout_seconds, "timeout_seconds", DEFAULTS.timeout_seconds)),
        memory=_count(config.memory_mb, "memory_mb", DEFAULTS.memory_mb) * MIB,
        cpus=cpus,
        disk=_count(config.disk_mb, "disk_mb", DEFAULTS.disk_mb) * MIB,
        network=network_disabled is False,
    )


# -- images and Python versions ---------------------------------------------------------------

_IMAGE = re.compile(r"^(?:(?:docker\.io/)?library/)?python(?::(?P<tag>[A-Za-z0-9._-]+))?$")
_VERSION_TAG = re.compile(r"^(?P<version>\d+(?:\.\d+){0,2})(?:-[A-Za-z0-9._-]+)?$")


def box_python_version() -> tuple[int, int]:
    """(major, minor) of the interpreter boxes run: the local backend's choice."""
    from ...boxes.local.host import box_python, python_version

    parts = python_version(box_python()[0]).split(".")
    if len(parts) < 2 or not (parts[0].isdigit() and parts[1].isdigit()):
        return sys.version_info[0], sys.version_info[1]
    return int(parts[0]), int(parts[1])


def check_python_version(version: str | None, *, what: str = "python_version") -> None:
    """A requested version must be the boxes' own (``3`` or ``3.11`` or ``3.11.4`` on 3.11)."""
    if version is None:
        return
    ours = box_python_version()
    parts = version.split(".") if isinstance(version, str) else []
    if not parts or len(parts) > 3 or not all(part.isdigit() for part in parts):
        raise UnsupportedOption(f"{what}: {version!r} is not a Python version such as '3.11'")
    asked = tuple(int(part) for part in parts[:2])
    if asked != ours[: len(asked)]:
        raise UnsupportedOption(
            f"{what}: execbox boxes run Python {ours[0]}.{ours[1]} (this host's interpreter); "
            f"{version!r} cannot be honoured"
        )


def check_image(image: str | None) -> None:
    """Boxes are no containers: only a ``python`` image of the boxes' version can be honoured."""
    if image is None:
        return
    match = _IMAGE.match(image)
    if match is None:
        raise UnsupportedOption(
            f"docker_image {image!r}: execbox runs no container images, only this host's "
            "Python in a box; use 'python:<version>' of that version, or leave it unset"
        )
    tag = match["tag"]
    if tag is None or not tag[0].isdigit():
        return  # "python", "python:latest", "python:slim": any Python will do
    version = _VERSION_TAG.match(tag)
    if version is None:
        raise UnsupportedOption(f"docker_image {image!r}: unknown tag {tag!r}")
    check_python_version(version["version"], what=f"docker_image {image!r}")


# -- results ----------------------------------------------------------------------------------

_STATUS = {
    JobStatus.QUEUED: ExecutionStatus.PENDING,
    JobStatus.RUNNING: ExecutionStatus.RUNNING,
    JobStatus.SUCCEEDED: ExecutionStatus.COMPLETED,
    JobStatus.FAILED: ExecutionStatus.COMPLETED,
    JobStatus.MEMORY_LIMIT: ExecutionStatus.COMPLETED,
    JobStatus.TIMEOUT: ExecutionStatus.FAILED,
    JobStatus.ERROR: ExecutionStatus.FAILED,
    JobStatus.KILLED: ExecutionStatus.KILLED,
}


def status_of(status: JobStatus) -> ExecutionStatus:
    """A program that ran to its end (any exit code, or killed by its memory limit, as a
    container's OOM kill is) is ``completed``; one stopped by its timeout or an internal error
    is ``failed``; a kill on request is ``killed``."""
    return _STATUS[status]


def _naive_utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


def execution_result(result: JobResult, value: str | None = None) -> ExecutionResult:
    """A finished job as python-executor reports an execution."""
    exit_code = result.exit_code
    if result.status is JobStatus.MEMORY_LIMIT:
        exit_code = 137  # what a container killed by its memory cgroup reports
    elif result.status in (JobStatus.TIMEOUT, JobStatus.KILLED, JobStatus.ERROR):
        exit_code = None
    return ExecutionResult(
        execution_id=result.id,
        status=status_of(result.status),
        stdout=result.stdout,
        stderr=result.stderr,
        exit_code=exit_code,
        error=result.message,
        started_at=_naive_utc(result.started_at),
        finished_at=_naive_utc(result.finished_at),
        duration_ms=round(result.usage.wall_seconds * 1000),
        result=value,
    )


def live_result(
    execution_id: str, status: JobStatus, started_at: datetime | None = None
) -> ExecutionResult:
    """An execution that has not finished: its state, and when it started."""
    return ExecutionResult(execution_id, status_of(status), started_at=_naive_utc(started_at))


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat() + "Z"


def to_wire(result: ExecutionResult, **extra: Any) -> dict[str, Any]:
    """The JSON python-executor's server answers with; fields without a value are left out,
    but for ``exit_code`` (null until there is one)."""
    data: dict[str, Any] = {
        "execution_id": result.execution_id,
        "status": result.status.value,
        "stdout": result.stdout,
        "stderr": result.stderr,
        "exit_code": result.exit_code,
        "error": result.error,
        "started_at": _iso(result.started_at),
        "finished_at": _iso(result.finished_at),
        "duration_ms": result.duration_ms,
        "result": result.result,
        **extra,
    }
    return {k: v for k, v in data.items() if v is not None or k == "exit_code"}


def metadata_from(data: Mapping[str, Any]) -> Metadata:
    """A ``Metadata`` from python-executor's JSON; InvalidSpec names an unknown field."""
    known = set(Metadata.__dataclass_fields__)
    unknown = sorted(set(data) - known)
    if unknown:
        raise InvalidSpec(
            f"metadata: unknown field {unknown[0]!r}; known: {', '.join(sorted(known))}"
        )
    fields = dict(data)
    config = fields.pop("config", None)
    if config is not None:
        fields["config"] = config_from(config, "metadata.config")
    if "entrypoint" not in fields:
        raise NoEntrypoint("metadata: 'entrypoint' is required")
    return Metadata(**fields)


def config_from(data: Any, where: str = "config") -> ExecutionConfig:
    if not isinstance(data, Mapping):
        raise InvalidSpec(f"{where} must be a JSON object")
    known = set(ExecutionConfig.__dataclass_fields__)
    unknown = sorted(set(data) - known)
    if unknown:
        raise InvalidSpec(
            f"{where}: unknown field {unknown[0]!r}; known: {', '.join(sorted(known))}"
        )
    # Absent fields take the documented defaults; zeros are turned into them by _count.
    return ExecutionConfig(**{k: v for k, v in data.items() if v is not None})
