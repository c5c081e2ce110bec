"""The native API's routers, one module per object type."""

from . import files, jobs, python_executor, sessions, streams, system

ROUTERS = [system.router, jobs.router, sessions.router, files.router, streams.router]
ROUTERS.append(python_executor.router)  # python-executor's own API, beside ours
from ..jupyter import router as jupyter_router  # noqa: E402 - it needs .sessions loaded first

ROUTERS.append(jupyter_router)  # the Jupyter kernel gateway API under /api

__all__ = ["ROUTERS"]
