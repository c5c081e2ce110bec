"""The API's routers, one module per object type, then the peers' APIs served beside ours."""

from . import files, jobs, python_executor, sessions, streams, system

ROUTERS = [
    system.router,
    jobs.router,
    sessions.router,
    files.router,
    streams.router,
    python_executor.router,  # python-executor's own API
]
from ..jupyter import router as jupyter_router  # noqa: E402 - it uses .sessions, loaded above

ROUTERS.append(jupyter_router)  # the Jupyter kernel gateway API under /api

__all__ = ["ROUTERS"]
