"""Request bodies of the native API. Unknown fields are refused, so a typo is an error, not a
silently ignored wish."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ExecutionIn", "InputIn", "JobIn", "LimitsIn", "SessionIn"]

Size = int | str


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LimitsIn(_Strict):
    """Asked limits; each is clamped to the tenant's maximum. Sizes: bytes or "512M"."""

    memory: Size | None = None
    cpus: float | None = None
    pids: int | None = None
    disk: Size | None = None
    output: Size | None = None


class JobIn(_Strict):
    files: dict[str, str] = Field(default_factory=dict, description="name -> text content")
    files_base64: dict[str, str] = Field(
        default_factory=dict, description="name -> base64 content, for binary files"
    )
    archive_base64: str | None = Field(None, description="a tar archive (optionally gzipped)")
    entrypoint: str | None = Field(None, description="defaults to main.py or the only .py")
    args: list[str] = Field(default_factory=list)
    requirements: list[str] | str | None = None
    pre_commands: list[str] = Field(default_factory=list)
    stdin: str | None = None
    stdin_base64: str | None = Field(None, description="stdin as base64, for binary input")
    env: dict[str, str] = Field(default_factory=dict)
    timeout: float | None = Field(None, description="seconds; clamped to the tenant's maximum")
    limits: LimitsIn | None = None
    network: bool = False


class SessionIn(_Strict):
    kernel: str = "python3"
    limits: LimitsIn | None = None
    network: bool = False
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    requirements: list[str] | str | None = None
    idle_timeout: float | None = Field(None, description="seconds without activity")
    ttl: float | None = Field(None, description="seconds of life; clamped to the tenant's max")
    client_token: str | None = Field(
        None, max_length=200, description="get-or-create: an open session with it is returned"
    )


class ExecutionIn(_Strict):
    code: str
    timeout: float | None = None
    wait: bool = Field(False, description="answer with the result instead of 202 at once")


class InputIn(_Strict):
    value: str
