"""python-executor's request and result objects, with its field names, defaults and states.

These are the objects code written for ``python_executor_client`` builds and reads, so they keep
that client's shapes: ``Metadata`` (what to run), ``ExecutionConfig`` (resource limits, with
python-executor's documented defaults), ``ExecutionResult`` and ``ExecutionStatus``. Times in
results are naive datetimes in UTC, as that client parses them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = ["ExecutionConfig", "ExecutionResult", "ExecutionStatus", "Metadata"]


class ExecutionStatus(str, enum.Enum):  # noqa: UP042 - the peer's type: a str-valued Enum
    """``pending`` and ``running`` are live; ``completed`` means the program ended by itself
    (whatever its exit code), ``failed`` that it could not run to its end (timeout, internal
    error), ``killed`` that it was stopped on request."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    KILLED = "killed"

    def __str__(self) -> str:
        return self.value

    @property
    def finished(self) -> bool:
        return self in (ExecutionStatus.COMPLETED, ExecutionStatus.FAILED, ExecutionStatus.KILLED)


@dataclass
class ExecutionConfig:
    """Resource limits; each is enforced by the box (see ``mapping`` for how)."""

    timeout_seconds: int = 300
    network_disabled: bool = True
    memory_mb: int = 1024
    disk_mb: int = 2048
    cpu_shares: int = 1024

    def to_dict(self) -> dict[str, Any]:
        return {
            "timeout_seconds": self.timeout_seconds,
            "network_disabled": self.network_disabled,
            "memory_mb": self.memory_mb,
            "disk_mb": self.disk_mb,
            "cpu_shares": self.cpu_shares,
        }


@dataclass
class Metadata:
    """How to run the files: entrypoint, image, requirements, commands, input, limits, env."""

    entrypoint: str
    docker_image: str | None = None
    requirements_txt: str | None = None
    pre_commands: list[str] | None = None
    stdin: str | None = None
    config: ExecutionConfig | None = None
    env_vars: list[str] | None = None
    """``"KEY=value"`` strings."""
    script_args: list[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON python-executor's server reads (unset and empty fields left out)."""
        data: dict[str, Any] = {"entrypoint": self.entrypoint}
        for name in ("docker_image", "requirements_txt", "pre_commands", "stdin"):
            value = getattr(self, name)
            if value:
                data[name] = value
        if self.config is not None:
            data["config"] = self.config.to_dict()
        if self.env_vars:
            data["env_vars"] = self.env_vars
        if self.script_args:
            data["script_args"] = self.script_args
        return data


def _time(value: Any) -> datetime | None:
    """ISO 8601 with a trailing ``Z`` (UTC) to a naive UTC datetime."""
    if not value:
        return None
    text = str(value)
    return datetime.fromisoformat(text[:-1] if text.endswith("Z") else text)


@dataclass
class ExecutionResult:
    """An execution's state; outputs, exit code and times once it has finished.

    ``error`` says why it did not end normally (timeout, memory limit, kill, a failed
    pre-command, requirements that could not be installed); ``result`` is the repr of the last
    expression for ``eval(..., eval_last_expr=True)``."""

    execution_id: str
    status: ExecutionStatus
    stdout: str | None = None
    stderr: str | None = None
    exit_code: int | None = None
    error: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_ms: int | None = None
    result: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExecutionResult:
        """From the JSON of python-executor's routes (ours or the original)."""
        return cls(
            execution_id=data["execution_id"],
            status=ExecutionStatus(data["status"]),
            stdout=data.get("stdout"),
            stderr=data.get("stderr"),
            exit_code=data.get("exit_code"),
            error=data.get("error"),
            started_at=_time(data.get("started_at")),
            finished_at=_time(data.get("finished_at")),
            duration_ms=data.get("duration_ms"),
            result=data.get("result"),
        )
