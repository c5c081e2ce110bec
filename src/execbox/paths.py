"""Where execbox keeps state and caches on the host.

Root uses system directories that box uids can traverse (a box binds files from them); a user
uses the XDG directories of their home, since their boxes run as themselves.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir", "state_dir", "write_if_changed"]


def _choose(variable: str, system: str, xdg: str, fallback: str) -> Path:
    configured = os.environ.get(variable)
    if configured:
        path = Path(configured)
    elif os.geteuid() == 0:
        path = Path(system)
    else:
        base = os.environ.get(xdg) or str(Path.home() / fallback)
        path = Path(base) / "execbox"
    path.mkdir(parents=True, exist_ok=True, mode=0o755)
    return path


def state_dir() -> Path:
    return _choose("EXECBOX_STATE_DIR", "/var/lib/execbox", "XDG_STATE_HOME", ".local/state")


def cache_dir() -> Path:
    return _choose("EXECBOX_CACHE_DIR", "/var/cache/execbox", "XDG_CACHE_HOME", ".cache")


def write_if_changed(target: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace ``target`` atomically unless it already holds ``data`` (files boxes bind)."""
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    if target.exists() and target.read_bytes() == data:
        return
    temporary = target.with_name(f".{target.name}.tmp{os.getpid()}")
    temporary.write_bytes(data)
    temporary.chmod(mode)
    temporary.replace(target)
