"""The execbox server: the engine behind a REST and WebSocket API, with keys and records.

Needs the ``server`` extra (``pip install 'execbox[server]'``); ``import execbox`` never
imports it.
"""

from .app import create_app
from .settings import ServerSettings

__all__ = ["ServerSettings", "create_app"]
