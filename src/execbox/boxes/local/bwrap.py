"""The bubblewrap command line of a box: which namespaces, which filesystem, which limits.

The filesystem is built up from nothing: read-only ``/usr`` (and the merged-usr links), the
Python prefix, a synthetic ``/etc``, a fresh ``/proc`` and ``/dev``, sized tmpfs mounts for
``/tmp``, ``/dev/shm`` and the workspace, then ``/`` remounted read-only. Never ``/``, ``/run``,
``/home``, ``/root``, ``/etc`` as a whole, ``/sys`` or any directory of the service: a read-only
bind does not stop connecting to a unix socket inside it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ...paths import write_if_changed
from ..base import WORKSPACE, BoxSpec

__all__ = ["AGENT_PATH", "BOX_GID", "BOX_UID", "BoxLayout", "bwrap_argv", "write_runtime"]

BOX_UID = BOX_GID = 1000
AGENT_PATH = "/opt/execbox/agent.py"
ETC_FILES = {
    "passwd": (
        "root:x:0:0:root:/nonexistent:/usr/sbin/nologin\n"
        f"box:x:{BOX_UID}:{BOX_GID}:execbox:{WORKSPACE}:/bin/sh\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
    ),
    "group": f"root:x:0:\nbox:x:{BOX_GID}:\nnogroup:x:65534:\n",
    "hosts": "127.0.0.1\tlocalhost execbox\n::1\tlocalhost ip6-localhost\n",
    "nsswitch.conf": "passwd: files\ngroup: files\nhosts: files dns\n",
}
NETWORK_ETC = ("/etc/resolv.conf", "/etc/ssl", "/etc/ca-certificates", "/etc/pki")
SHARED_ETC = ("/etc/fonts",)
"""Host configuration every box sees: fontconfig's, so plotting libraries find fonts."""
MERGED_USR = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")


@dataclass(frozen=True)
class BoxLayout:
    """Host paths every box needs, prepared once per backend."""

    runtime: Path
    """Holds ``agent.py``, ``etc/`` and ``empty/``; readable by box uids."""
    python: str
    python_prefix: str
    hidden: tuple[str, ...] = ()
    """The interpreter's system site-packages: boxes start clean, like a slim image."""


def write_runtime(directory: Path) -> Path:
    """Lay out the agent and the synthetic /etc under ``directory``; idempotent."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o755)
    agent_source = (Path(__file__).parent / "agent.py").read_bytes()
    (directory / "empty").mkdir(exist_ok=True, mode=0o755)
    files = {Path("agent.py"): agent_source}
    files.update({Path("etc") / name: text.encode() for name, text in ETC_FILES.items()})
    for host_path in NETWORK_ETC + SHARED_ETC:  # mount points for host files bound over them
        placeholder = directory / "etc" / Path(host_path).name
        if os.path.isdir(host_path):
            placeholder.mkdir(parents=True, exist_ok=True, mode=0o755)
        elif os.path.exists(host_path):
            files.setdefault(Path("etc") / Path(host_path).name, b"")
    for relative, content in files.items():
        write_if_changed(directory / relative, content)
    return directory


def _root_links() -> list[str]:
    args: list[str] = []
    for name in MERGED_USR:
        path = Path("/") / name
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), f"/{name}"]
        elif path.is_dir():
            args += ["--ro-bind", str(path), f"/{name}"]
    return args


def bwrap_argv(
    bwrap: str,
    layout: BoxLayout,
    spec: BoxSpec,
    *,
    seccomp_fd: int | None,
    info_fd: int,
    agent_config: str,
) -> list[str]:
    limits = spec.limits
    argv = [
        bwrap,
        "--unshare-all", "--unshare-user", "--disable-userns",
        "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--as-pid-1",
        "--uid", str(BOX_UID), "--gid", str(BOX_GID), "--hostname", "execbox",
        "--info-fd", str(info_fd),
        "--ro-bind", "/usr", "/usr", *_root_links(),
    ]  # fmt: skip
    if spec.network:
        argv.append("--share-net")
    prefix = layout.python_prefix
    if not (prefix == "/usr" or prefix.startswith("/usr/")):
        argv += ["--ro-bind", prefix, prefix]
    for path in layout.hidden:
        argv += ["--ro-bind", str(layout.runtime / "empty"), path]
    argv += ["--ro-bind", str(layout.runtime / "etc"), "/etc"]  # one mount, not one per file
    for path in SHARED_ETC + (NETWORK_ETC if spec.network else ()):
        if os.path.exists(path):
            argv += ["--ro-bind", path, path]
    tmp_size = str(limits.disk_bytes)
    argv += [
        "--proc", "/proc", "--dev", "/dev",
        "--size", tmp_size, "--tmpfs", "/dev/shm",
        "--size", tmp_size, "--tmpfs", "/tmp",
        "--size", str(limits.disk_bytes), "--perms", "0755", "--tmpfs", WORKSPACE,
        "--ro-bind", str(layout.runtime / "agent.py"), AGENT_PATH,
    ]  # fmt: skip
    argv += _mount_args(spec)  # after the tmpfs mounts, which would otherwise hide them
    if seccomp_fd is not None:
        argv += ["--seccomp", str(seccomp_fd)]
    argv += ["--remount-ro", "/", "--chdir", WORKSPACE]
    argv += ["--", layout.python, "-I", "-S", AGENT_PATH, agent_config]
    return argv


def _mount_args(spec: BoxSpec) -> Sequence[str]:
    args: list[str] = []
    for mount in spec.mounts:
        args += ["--bind" if mount.writable else "--ro-bind", mount.source, mount.target]
    return args
