"""ipybox's ``binds`` as execbox mounts, and, as root, the box user's access to them.

ipybox mounts each host path read-write at ``/app/<container path>``; here ``/app`` is the
session's workspace (its working directory), so relative paths in the code stay the same.

Run as root, execbox starts every box as an unprivileged uid of its own, which may not write
(or even read) a host directory owned by someone else, whereas ipybox's container user owns
what it writes. So, for the life of each client, that uid is granted ``rwX`` on every bind by a
POSIX ACL entry naming it, removed again when the client disconnects: nobody else gains
anything. The uid is learnt from a probe file the new kernel creates in a private directory.
The walk never follows a link and touches only directories and regular files. Grants are noted
in the uid's ledger first (``boxes.local.acl``): if this process dies before taking them back,
whoever leases that uid next does so before any box runs as it.
"""

from __future__ import annotations

import errno
import logging
import os
import posixpath
import secrets
import shutil
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ...boxes.base import WORKSPACE, Mount
from ...boxes.local import acl
from ...boxes.local.uids import uid_leases
from ...paths import state_dir

__all__ = ["APP", "Bind", "UidProbe", "acl_users", "grant", "resolve_binds", "revoke"]

log = logging.getLogger("execbox.compat.ipybox")

APP = WORKSPACE
"""What ipybox calls ``/app``: the kernel's working directory, where binds land."""
PROBE_TARGET = "/tmp/.ipybox-probe"


@dataclass(frozen=True)
class Bind:
    source: str
    """The host path, resolved (created as a directory if missing, as ipybox does)."""
    target: str
    """Where it is in the box: under the workspace."""

    def mount(self) -> Mount:
        return Mount(self.source, self.target, writable=True)


def resolve_binds(binds: Mapping[str, str], *, check_reach: bool) -> tuple[Bind, ...]:
    """ipybox's ``{host path: container path}`` as binds; ValueError names a bad entry."""
    if not isinstance(binds, Mapping):
        raise ValueError("binds must be a mapping of host paths to container paths")
    resolved = []
    for host, container in binds.items():
        if not isinstance(host, str | os.PathLike) or not isinstance(container, str):
            raise ValueError(f"binds: {host!r} -> {container!r} must be two paths")
        relative = posixpath.normpath(container.lstrip("/")) if container.strip("/") else ""
        if relative in ("", ".") or relative.startswith("../") or relative == "..":
            raise ValueError(
                f"binds: container path {container!r} must name a directory below /app "
                "(the workspace), as in ipybox"
            )
        source = Path(host).resolve()
        if not source.exists():
            source.mkdir(parents=True)
        if check_reach:
            _check_reachable(source)
        resolved.append(Bind(str(source), posixpath.join(APP, relative)))
    return tuple(resolved)


def _check_reachable(source: Path) -> None:
    """Boxes run as an unprivileged uid: every directory above a bind must let others pass."""
    for parent in source.parents:
        if not os.stat(parent).st_mode & stat.S_IXOTH:
            raise ValueError(
                f"binds: {source} cannot be mounted: boxes run as an unprivileged user, who may "
                f"not enter {parent} (chmod o+x {parent}, or bind a path outside it)"
            )


class UidProbe:
    """A private directory the new kernel drops a file into: its owner is the box's host uid."""

    def __init__(self) -> None:
        # In the state directory: as root, box uids can reach it by design (/tmp may not be).
        self.directory = tempfile.mkdtemp(prefix="ipybox-probe-", dir=state_dir())
        # Others may create entries but not list them: the name is a secret of this client.
        os.chmod(self.directory, 0o1733)  # noqa: S103 - the box's uid must create the file
        self.name = secrets.token_hex(16)

    def mount(self) -> Mount:
        return Mount(self.directory, PROBE_TARGET, writable=True)

    @property
    def code(self) -> str:
        """Run first in the new kernel, before any code of the user's."""
        return f"open({posixpath.join(PROBE_TARGET, self.name)!r}, 'x').close()"

    def uid(self) -> int:
        """The uid that created the probe file; OSError if it is missing or not a plain file."""
        info = os.stat(os.path.join(self.directory, self.name), follow_symlinks=False)
        if not stat.S_ISREG(info.st_mode) or info.st_uid in (0, os.geteuid()):
            raise OSError(errno.EPERM, "the probe file was not made by a box user")
        return info.st_uid

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def grant(binds: tuple[Bind, ...], uid: int) -> None:
    """Give ``uid`` rwX on every bind, recursively (blocking: run it in a thread)."""
    acl.grant([bind.source for bind in binds], uid, uid_leases())


def revoke(binds: tuple[Bind, ...], uid: int) -> None:
    """Take back what ``grant`` gave ``uid``."""
    acl.revoke([bind.source for bind in binds], uid, uid_leases())


acl_users = acl.acl_users
