"""An async context manager kept entered on an event loop in a thread of its own.

How sync APIs drive async code written once (anyio's blocking portal): the SDK's sync
transports, and compat layers whose users expect blocking calls. Work the async side starts
(jobs, kernels, streams) keeps running between calls; a portal left open is closed at exit.
"""

from __future__ import annotations

import atexit
import threading
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from typing import Any

from anyio.from_thread import BlockingPortal, start_blocking_portal

__all__ = ["PortalThread"]


class PortalThread:
    def __init__(self, target: AbstractAsyncContextManager[Any]) -> None:
        self._target = target
        self._lock = threading.Lock()
        self._portal_cm: AbstractContextManager[BlockingPortal] | None = None
        self._portal: BlockingPortal | None = None
        self._inner: AbstractContextManager[Any] | None = None

    def start(self) -> BlockingPortal:
        """The running portal, with the target entered on its loop; idempotent."""
        with self._lock:
            if self._portal is None:
                portal_cm = start_blocking_portal()
                portal = portal_cm.__enter__()
                inner = portal.wrap_async_context_manager(self._target)
                try:
                    inner.__enter__()
                except BaseException:
                    portal_cm.__exit__(None, None, None)
                    raise
                self._portal_cm, self._portal, self._inner = portal_cm, portal, inner
                atexit.register(self.stop)
            return self._portal

    def stop(self) -> None:
        """Leave the target on its loop, then end the loop's thread; idempotent."""
        with self._lock:
            inner, portal_cm = self._inner, self._portal_cm
            self._inner = self._portal_cm = self._portal = None
        if inner is not None and portal_cm is not None:
            atexit.unregister(self.stop)
            try:
                inner.__exit__(None, None, None)
            finally:
                portal_cm.__exit__(None, None, None)
