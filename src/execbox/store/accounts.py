"""Tenants and API keys as the server sees them: who is calling, and how much they may ask."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

__all__ = ["KeyInfo", "NewKey", "ParsedKey", "Principal", "TenantLimits", "parse_key"]

_KEY = re.compile(r"ebx_([0-9a-f]{16})_([0-9a-f]{64})")


@dataclass(frozen=True, slots=True)
class TenantLimits:
    """The most a tenant's clients may ask for; larger asks are clamped to these."""

    max_memory: int = 2 << 30
    max_cpus: float = 2.0
    max_pids: int = 512
    max_disk: int = 1 << 30
    max_output: int = 64 << 20
    max_timeout: float = 3600.0
    max_ttl: float = 86400.0
    allow_network: bool = False


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller behind a valid key."""

    key_id: str
    tenant_id: str
    tenant_name: str
    limits: TenantLimits
    admin: bool = False
    max_sessions: int = 16
    max_jobs: int = 16


@dataclass(frozen=True, slots=True)
class KeyInfo:
    id: str
    tenant: str
    name: str
    admin: bool
    max_sessions: int
    max_jobs: int
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class ParsedKey:
    key_id: str
    secret: str

    def matches(self, secret_sha256: str) -> bool:
        return hmac.compare_digest(hash_secret(self.secret), secret_sha256)


@dataclass(frozen=True, slots=True)
class NewKey:
    """A key as created: ``token`` is shown once and stored only as a hash."""

    id: str
    token: str
    secret_sha256: str

    @classmethod
    def generate(cls) -> NewKey:
        key_id, secret = secrets.token_hex(8), secrets.token_hex(32)
        return cls(key_id, f"ebx_{key_id}_{secret}", hash_secret(secret))


def hash_secret(secret: str) -> str:
    # 256 random bits need no slow hash: nothing is left to guess that a salt or cost would guard.
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_key(token: str) -> ParsedKey | None:
    match = _KEY.fullmatch(token)
    return ParsedKey(match[1], match[2]) if match else None
