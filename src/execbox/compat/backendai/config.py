"""``APIConfig`` as Backend.AI's client reads it, and what each setting means on execbox.

Where code runs is execbox's choice, not Backend.AI's: embedded in this process, or the
execbox server named by ``EXECBOX_URL`` (with ``EXECBOX_API_KEY``), both read by execbox itself.
The ``BACKEND_*`` variables and ``APIConfig`` arguments are accepted and kept, so code that builds
or inspects a configuration runs unchanged, but an endpoint or key of a Backend.AI cluster is
never used to reach execbox. ``vfolder_mounts`` have no execbox counterpart and are refused
when a compute session is created.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

__all__ = ["APIConfig", "get_config", "set_config"]

DEFAULT_ENDPOINT = "https://api.backend.ai"
API_VERSION = "v6.20220615"


def _env(key: str, default: str) -> str:
    return os.environ.get(f"BACKEND_{key}", default)


def _flag(value: str) -> bool:
    return value.strip().lower() in ("1", "yes", "true", "y", "on")


class APIConfig:
    """Backend.AI's client configuration; arguments win over ``BACKEND_*`` variables."""

    def __init__(
        self,
        *,
        endpoint: str | None = None,
        endpoint_type: str | None = None,
        domain: str | None = None,
        group: str | None = None,
        version: str | None = None,
        user_agent: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        hash_type: str | None = None,
        vfolder_mounts: Iterable[str] | None = None,
        skip_sslcert_validation: bool | None = None,
        connection_timeout: float | None = None,
        read_timeout: float | None = None,
        announcement_handler: Callable[[str], None] | None = None,
    ) -> None:
        raw_endpoints = str(endpoint) if endpoint else _env("ENDPOINT", DEFAULT_ENDPOINT)
        self._endpoints = [e.strip().rstrip("/") for e in raw_endpoints.split(",") if e.strip()]
        self._endpoint_type = endpoint_type or _env("ENDPOINT_TYPE", "api")
        self._domain = domain or _env("DOMAIN", "default")
        self._group = group or _env("GROUP", "default")
        self._version = version or API_VERSION
        self._user_agent = user_agent or "execbox compat for Backend.AI Client for Python"
        self._access_key = access_key if access_key is not None else _env("ACCESS_KEY", "")
        self._secret_key = secret_key if secret_key is not None else _env("SECRET_KEY", "")
        self._hash_type = (hash_type or "sha256").lower()
        from_env = [v.strip() for v in _env("VFOLDER_MOUNTS", "").split(",") if v.strip()]
        self._vfolder_mounts = sorted({*(vfolder_mounts or ()), *from_env})
        self._skip_sslcert_validation = bool(skip_sslcert_validation) or _flag(
            _env("SKIP_SSLCERT_VALIDATION", "no")
        )
        self._connection_timeout = (
            connection_timeout
            if connection_timeout is not None
            else float(_env("CONNECTION_TIMEOUT", "10.0"))
        )
        self._read_timeout = (
            read_timeout if read_timeout is not None else float(_env("READ_TIMEOUT", "0"))
        )
        self._announcement_handler = announcement_handler

    def __repr__(self) -> str:
        return f"<APIConfig endpoint={self.endpoint!r} (not used: execbox decides where code runs)>"

    @property
    def endpoint(self) -> str:
        return self._endpoints[0] if self._endpoints else DEFAULT_ENDPOINT

    @property
    def endpoints(self) -> list[str]:
        return list(self._endpoints)

    @property
    def endpoint_type(self) -> str:
        return self._endpoint_type

    @property
    def domain(self) -> str:
        return self._domain

    @property
    def group(self) -> str:
        return self._group

    @property
    def version(self) -> str:
        return self._version

    @property
    def user_agent(self) -> str:
        return self._user_agent

    @property
    def access_key(self) -> str:
        return self._access_key

    @property
    def secret_key(self) -> str:
        return self._secret_key

    @property
    def is_anonymous(self) -> bool:
        return self._access_key == ""

    @property
    def hash_type(self) -> str:
        return self._hash_type

    @property
    def vfolder_mounts(self) -> list[str]:
        return list(self._vfolder_mounts)

    @property
    def skip_sslcert_validation(self) -> bool:
        return self._skip_sslcert_validation

    @property
    def connection_timeout(self) -> float:
        return self._connection_timeout

    @property
    def read_timeout(self) -> float:
        return self._read_timeout

    @property
    def announcement_handler(self) -> Callable[[str], None] | None:
        return self._announcement_handler


_config: APIConfig | None = None


def get_config() -> APIConfig:
    """The process's configuration: the one given to ``set_config``, else one from the env."""
    global _config
    if _config is None:
        _config = APIConfig()
    return _config


def set_config(config: APIConfig) -> None:
    global _config
    _config = config
