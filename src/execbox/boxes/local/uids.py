"""A distinct unprivileged uid per live box, from a reserved range, unique across processes.

bwrap started by root is host root for file access, whatever ``--uid`` says; started by a uid
that owns nothing on the host, the box can read only what the world can. A held ``flock`` on
one file per uid is the reservation, so a crashed process frees its uids by dying.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import signal
from dataclasses import dataclass
from pathlib import Path

from ...errors import BoxError
from ...paths import state_dir
from . import acl

__all__ = ["UidLease", "UidPool", "kill_uid", "uid_leases"]

DEFAULT_BASE = 2_100_000
DEFAULT_COUNT = 65_536


def uid_leases(root: Path | None = None) -> Path:
    """Where the leases of an engine with state directory ``root`` (default: ours) live."""
    return (root or state_dir()) / "uids"


def kill_uid(uid: int) -> int:
    """SIGKILL every process whose real uid is ``uid`` (a leased uid is one box's alone)."""
    killed = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            status = (entry / "status").read_text()
            line = next((line for line in status.splitlines() if line.startswith("Uid:")), "")
            if int(line.split()[1]) == uid:
                os.kill(int(entry.name), signal.SIGKILL)
                killed += 1
    return killed


@dataclass
class UidLease:
    uid: int
    fd: int

    def release(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1


class UidPool:
    def __init__(self, directory: Path, base: int | None = None, count: int | None = None) -> None:
        self.directory = directory
        self.base = (
            base if base is not None else int(os.environ.get("EXECBOX_UID_BASE", DEFAULT_BASE))
        )
        self.count = (
            count if count is not None else int(os.environ.get("EXECBOX_UID_COUNT", DEFAULT_COUNT))
        )
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)

    def lease(self) -> UidLease:
        start = random.randrange(self.count)  # noqa: S311 - spreading, not secrecy
        for step in range(min(self.count, 4096)):
            uid = self.base + (start + step) % self.count
            fd = os.open(
                self.directory / f"{uid}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600
            )
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            acl.settle(self.directory, uid)  # access a crashed holder granted is taken back
            return UidLease(uid, fd)
        raise BoxError("no free box uid in the reserved range")
