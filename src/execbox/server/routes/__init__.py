"""The native API's routers, one module per object type."""

from . import files, jobs, sessions, streams, system

ROUTERS = [system.router, jobs.router, sessions.router, files.router, streams.router]

__all__ = ["ROUTERS"]
