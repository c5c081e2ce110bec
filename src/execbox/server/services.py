"""What every route needs, built once at start-up and kept on ``app.state.services``."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import HTTPConnection

from ..engine import Engine
from ..store import Store
from ..store.accounts import Principal
from .metrics import Metrics
from .quotas import Quotas
from .settings import ServerSettings

__all__ = ["Services", "principal_of", "services_of"]


@dataclass
class Services:
    settings: ServerSettings
    store: Store
    engine: Engine
    quotas: Quotas
    metrics: Metrics


def services_of(connection: HTTPConnection) -> Services:
    services: Services = connection.app.state.services
    return services


def principal_of(connection: HTTPConnection) -> Principal:
    """Set by the auth middleware on every request that reaches a route."""
    principal: Principal = connection.scope["execbox.principal"]
    return principal
