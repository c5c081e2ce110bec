"""POSIX ACL entries naming one box uid: how a bind a box must write is opened to it alone.

As root, boxes run as unprivileged uids of their own, which may not write a host directory
owned by someone else. ``grant`` gives one uid ``rwX`` on a tree (links never followed, only
directories and regular files touched) and ``revoke`` takes it back. Each grant is first noted
in a ledger beside the uid's lease (``<uid>.grants``): whoever leases that uid next settles a
ledger a crashed process left (``UidPool.lease``), so no later box inherits the access.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import stat
import struct
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["acl_users", "grant", "revoke", "settle"]

log = logging.getLogger("execbox.boxes")

_ACL = "system.posix_acl_access"
_VERSION = 2
_USER_OBJ, _USER, _GROUP_OBJ, _GROUP, _MASK, _OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
_NO_ID = 0xFFFFFFFF
_HEADER, _ENTRY = struct.Struct("<I"), struct.Struct("<HHI")
_lock = threading.Lock()
"""ACL edits are read-modify-write: two grants at once must not lose an entry."""

Entry = tuple[int, int, int]  # (tag, perm, id)


def _ledger(leases: Path, uid: int) -> Path:
    return leases / f"{uid}.grants"


def grant(paths: Sequence[str], uid: int, leases: Path) -> None:
    """Give ``uid`` rwX on every path, recursively, noted first in the uid's ledger
    (blocking: run it in a thread)."""
    ledger = _ledger(leases, uid)
    known = json.loads(ledger.read_text()) if ledger.exists() else []
    ledger.write_text(json.dumps(sorted({*known, *paths})))
    for path in paths:
        _walk(path, lambda entries, mode: _with_user(entries, mode, uid))


def revoke(paths: Sequence[str], uid: int, leases: Path) -> None:
    """Take back what ``grant`` gave ``uid``; the ledger goes once nothing is left in it."""
    for path in paths:
        _walk(path, lambda entries, mode: _without_user(entries, uid))
    ledger = _ledger(leases, uid)
    with contextlib.suppress(FileNotFoundError, ValueError):
        left = sorted(set(json.loads(ledger.read_text())) - set(paths))
        if left:
            ledger.write_text(json.dumps(left))
        else:
            ledger.unlink()


def settle(leases: Path, uid: int) -> None:
    """Revoke what a ledger of ``uid`` still lists (its holder died); called on leasing."""
    ledger = _ledger(leases, uid)
    try:
        paths = json.loads(ledger.read_text())
    except FileNotFoundError:
        return
    except ValueError:
        paths = []
    for path in paths:
        try:
            _walk(path, lambda entries, mode: _without_user(entries, uid))
        except OSError as exc:
            log.warning("could not revoke uid %d's leftover access to %s: %s", uid, path, exc)
    ledger.unlink(missing_ok=True)


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
