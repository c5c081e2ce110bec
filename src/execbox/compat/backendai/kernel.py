"""``Kernel``: the older name of ``ComputeSession`` (``session.Kernel.get_or_create(lang)``)."""

from __future__ import annotations

from .func.session import ComputeSession

__all__ = ["Kernel"]


class Kernel(ComputeSession):
    """A compute session under its pre-19.09 name; ``get_or_create(lang, client_token=...)``."""
