"""Backend.AI's function classes (``ai.backend.client.func``) that execbox offers."""

from .session import ComputeSession

__all__ = ["ComputeSession"]
