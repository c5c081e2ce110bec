"""ipybox's ``binds`` as execbox mounts, and, as root, the box user's access to them.

ipybox mounts each host path read-write at ``/app/<container path>``; here ``/app`` is the
session's workspace (its working directory), so relative paths in the code stay the same.

Run as root, execbox starts every box as an unprivileged uid of its own, which may not write
(or even read) a host directory owned by someone else, whereas ipybox's container user owns
what it writes. So, for the life of each client, that uid is granted ``rwX`` on every bind by a
POSIX ACL entry naming it, removed again when the client disconnects: nobody else gains
anything. The uid is learnt from a probe file the new kernel creates in a private directory.
The walk never follows a link and touches only directories and regular files. A process that
dies without disconnecting leaves its entries behind (``getfacl`` shows them; ``setfacl -x``
removes them).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import posixpath
import secrets
import shutil
import stat
import struct
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ...boxes.base import WORKSPACE, Mount
from ...paths import state_dir

__all__ = ["APP", "Bind", "UidProbe", "acl_users", "grant", "resolve_binds", "revoke"]

log = logging.getLogger("execbox.compat.ipybox")

APP = WORKSPACE
"""What ipybox calls ``/app``: the kernel's working directory, where binds land."""
PROBE_TARGET = "/tmp/.ipybox-probe"

_ACL = "system.posix_acl_access"
_VERSION = 2
_USER_OBJ, _USER, _GROUP_OBJ, _GROUP, _MASK, _OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
_NO_ID = 0xFFFFFFFF
_HEADER, _ENTRY = struct.Struct("<I"), struct.Struct("<HHI")
_lock = threading.Lock()
"""ACL edits are read-modify-write: two clients granting at once must not lose an entry."""

Entry = tuple[int, int, int]  # (tag, perm, id)


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
    for bind in binds:
        _walk(bind.source, lambda entries, mode: _with_user(entries, mode, uid))


def revoke(binds: tuple[Bind, ...], uid: int) -> None:
    """Take back what ``grant`` gave ``uid``, restoring the group bits it widened."""
    for bind in binds:
        _walk(bind.source, lambda entries, mode: _without_user(entries, uid))


def _with_user(entries: list[Entry], mode: int, uid: int) -> list[Entry]:
    perm = 7 if stat.S_ISDIR(mode) or mode & 0o111 else 6
    return [e for e in entries if not (e[0] == _USER and e[2] == uid)] + [(_USER, perm, uid)]


def _without_user(entries: list[Entry], uid: int) -> list[Entry] | None:
    kept = [e for e in entries if not (e[0] == _USER and e[2] == uid)]
    return kept if len(kept) != len(entries) else None


def _walk(root: str, change: Callable[[list[Entry], int], list[Entry] | None]) -> None:
    """Apply ``change`` to the ACL of ``root`` and everything below it, links never followed."""
    with _lock:
        try:
            if os.path.isdir(root) and not os.path.islink(root):
                for _, _, files, dir_fd in os.fwalk(root):
                    _edit(dir_fd, change)
                    for name in files:
                        _edit_file(name, dir_fd, change)
            else:
                _edit_file(root, None, change)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.ENOTSUP):
                raise
            log.warning("%s: no POSIX ACLs on this filesystem: the box may not write it", root)


def _edit_file(
    name: str, dir_fd: int | None, change: Callable[[list[Entry], int], list[Entry] | None]
) -> None:
    """Regular files only, opened without following a link and checked to be what was seen."""
    try:
        seen = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(seen.st_mode):
        return
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(name, flags, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOENT):
            return  # replaced meanwhile: not ours to touch
        raise
    try:
        now = os.fstat(fd)
        if (now.st_dev, now.st_ino) == (seen.st_dev, seen.st_ino) and stat.S_ISREG(now.st_mode):
            _edit(fd, change)
    finally:
        os.close(fd)


def _edit(fd: int, change: Callable[[list[Entry], int], list[Entry] | None]) -> None:
    mode = os.fstat(fd).st_mode
    entries = _read(fd, mode)
    changed = change(entries, mode)
    if changed is not None:
        os.setxattr(fd, _ACL, _encode(changed))


def _read(fd: int, mode: int) -> list[Entry]:
    try:
        blob = os.getxattr(fd, _ACL)
    except OSError as exc:
        if exc.errno != errno.ENODATA:
            raise
        return [
            (_USER_OBJ, (mode >> 6) & 7, _NO_ID),
            (_GROUP_OBJ, (mode >> 3) & 7, _NO_ID),
            (_OTHER, mode & 7, _NO_ID),
        ]
    (version,) = _HEADER.unpack_from(blob)
    if version != _VERSION:
        raise OSError(errno.EINVAL, f"unknown POSIX ACL version {version}")
    count = (len(blob) - _HEADER.size) // _ENTRY.size
    return [_ENTRY.unpack_from(blob, _HEADER.size + i * _ENTRY.size) for i in range(count)]


def _encode(entries: list[Entry]) -> bytes:
    """Sorted, with the mask recomputed as setfacl does (the union of the group class)."""
    body = [e for e in entries if e[0] != _MASK]
    if any(tag in (_USER, _GROUP) for tag, _, _ in body):
        mask = 0
        for tag, perm, _ in body:
            if tag in (_USER, _GROUP, _GROUP_OBJ):
                mask |= perm
        body.append((_MASK, mask, _NO_ID))
    body.sort(key=lambda e: (e[0], e[2]))
    return _HEADER.pack(_VERSION) + b"".join(_ENTRY.pack(*e) for e in body)


def acl_users(path: str) -> dict[int, int]:
    """uid -> permission bits of the named users in ``path``'s ACL (for tests and checks)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            return {e[2]: e[1] for e in _read(fd, os.fstat(fd).st_mode) if e[0] == _USER}
        finally:
            os.close(fd)
    return {}
