"""The Jupyter kernel gateway API: Jupyter's clients run code in execbox sessions.

``routes`` has the REST routes and the kernel WebSocket, ``kernels`` the bridge between
Jupyter messages and the engine's executions, ``messages`` the wire format, ``specs`` the
kernelspecs and ``kernel_info``, ``replies`` the answers that need no code to run.
"""

from .routes import router

__all__ = ["router"]
