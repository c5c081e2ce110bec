"""The local backend: bubblewrap + cgroups (v1 or v2) + seccomp + rlimits on this host."""

from .box import LocalBackend, LocalBox, LocalProcess

__all__ = ["LocalBackend", "LocalBox", "LocalProcess"]
