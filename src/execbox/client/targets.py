"""Which engine a client without a transport talks to: embedded, or the server of a URL."""

from __future__ import annotations

import os
from typing import Any

from ..errors import InvalidSpec

__all__ = ["API_KEY_VARIABLE", "URL_VARIABLE", "target_url"]

URL_VARIABLE = "EXECBOX_URL"
API_KEY_VARIABLE = "EXECBOX_API_KEY"


def target_url(url: str | None, engine_options: dict[str, Any]) -> str | None:
    """The server URL to use, or None for an embedded engine.

    An explicit ``url`` wins; engine options ask for an embedded engine (so tests and tools
    that tune one keep working where ``EXECBOX_URL`` is set); otherwise ``EXECBOX_URL``.
    """
    if url is not None:
        if engine_options:
            names = ", ".join(sorted(engine_options))
            raise InvalidSpec(f"{names}: engine options apply to an embedded client, not a url")
        return url
    if engine_options:
        return None
    return os.environ.get(URL_VARIABLE) or None
