"""Backend.AI's Python client on execbox: change the import, keep the code.

    from execbox.compat.backendai.session import Session   # was ai.backend.client.session

    with Session() as session:
        kern = session.ComputeSession.get_or_create("python:3.9-ubuntu20.04")
        result = kern.execute(None, 'print("hello world")', mode="query")
        ...

Compute sessions are execbox sessions (a kernel in an isolated box), embedded in this process
or on the execbox server named by ``EXECBOX_URL``. The execute protocol is Backend.AI's: modes
``query``, ``batch``, ``continue`` (or ``continued``) and ``input``; results with ``runId``,
``status``, ``console`` records, ``exitCode`` and ``options``.
"""

from .config import APIConfig, get_config, set_config
from .exceptions import APIVersionWarning, BackendAPIError, BackendClientError, BackendError
from .func.session import ComputeSession
from .kernel import Kernel
from .session import AsyncSession, BaseSession, Session

__all__ = [
    "APIConfig",
    "APIVersionWarning",
    "AsyncSession",
    "BackendAPIError",
    "BackendClientError",
    "BackendError",
    "BaseSession",
    "ComputeSession",
    "Kernel",
    "Session",
    "get_config",
    "set_config",
]
