"""What a key may ask for: limits clamped to its tenant's maxima, and caps on live objects.

Clamping rather than refusing keeps agents working: a client that asks for 8 GiB where its
tenant may have 2 gets 2, and the effective limits are in every answer. Asking for what the
tenant may never have (the network) is refused.
"""

from __future__ import annotations

from collections import Counter
from typing import Literal

from ..errors import PermissionDenied, QuotaExceeded
from ..models import Limits, validate_timeout
from ..store.accounts import Principal, TenantLimits
from .schemas import LimitsIn

__all__ = ["Quotas", "check_network", "clamp_limits", "clamp_seconds"]

Kind = Literal["session", "job"]


def clamp_limits(asked: LimitsIn | None, tenant: TenantLimits) -> Limits:
    """Validated limits (bad values raise InvalidLimits), each at most the tenant's maximum."""
    wanted = Limits().merged(**(asked.model_dump(exclude_none=True) if asked else {}))
    return Limits(
        memory=min(wanted.memory_bytes, tenant.max_memory),
        cpus=min(float(wanted.cpus), tenant.max_cpus),
        pids=min(int(wanted.pids), tenant.max_pids),
        disk=min(wanted.disk_bytes, tenant.max_disk),
        output=min(wanted.output_bytes, tenant.max_output),
    )


def clamp_seconds(asked: float | None, maximum: float, *, name: str) -> float:
    seconds = validate_timeout(asked, name=name)
    return maximum if seconds is None else min(seconds, maximum)


def check_network(asked: bool, tenant: TenantLimits) -> bool:
    if asked and not tenant.allow_network:
        raise PermissionDenied("this tenant may not give boxes network access")
    return asked


class Quotas:
    """Live sessions and jobs per key; one event loop, so check-and-take is atomic."""

    def __init__(self) -> None:
        self._holders: dict[str, tuple[Kind, str]] = {}
        self._counts: Counter[tuple[Kind, str]] = Counter()

    def take(self, kind: Kind, principal: Principal, object_id: str) -> None:
        cap = principal.max_sessions if kind == "session" else principal.max_jobs
        held = self._counts[kind, principal.key_id]
        if held >= cap:
            raise QuotaExceeded(
                f"this key already has {held} live {kind}s, its cap; close some or wait"
            )
        self._holders[object_id] = (kind, principal.key_id)
        self._counts[kind, principal.key_id] += 1

    def release(self, object_id: str) -> None:
        holder = self._holders.pop(object_id, None)
        if holder is not None:
            self._counts[holder] -= 1

    def live(self, kind: Kind) -> int:
        return sum(count for (k, _), count in self._counts.items() if k == kind)
