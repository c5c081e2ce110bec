"""The SECURITY.md invariants, checked after every hostile case."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import execbox
from execbox.boxes.local.host import probe
from execbox.boxes.local.uids import DEFAULT_BASE, DEFAULT_COUNT
from execbox.models import JobResult, JobStatus

FORK_BOMB = """\
import errno, os, sys, time

leader = os.getpid()
deadline = time.monotonic() + 1.5
failures, first = 0, None
while os.getpid() != leader or time.monotonic() < deadline:
    try:
        os.fork()  # parent and every child keep forking, forever
    except OSError as exc:
        failures += 1
        first = first or f"{type(exc).__name__} {errno.errorcode[exc.errno]}"
        time.sleep(0.05)
print(f"fork failed {failures} times: {first}", flush=True)
sys.exit(3)
"""
"""A program whose every process forks for ever; the leader reports its failures and exits 3."""


def box_processes() -> list[int]:
    """Host pids of this run's boxes: in one of its box cgroups (as root), else bwraps we started."""
    found = []
    prefix = _cgroup_prefix()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            groups = (entry / "cgroup").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        uid = int(fields.get("Uid", "0").split()[0])
        if os.geteuid() == 0:
            if DEFAULT_BASE <= uid < DEFAULT_BASE + DEFAULT_COUNT and (
                prefix in groups or _of_this_run(entry)
            ):
                found.append(int(entry.name))
        elif (
            uid == os.getuid()
            and "bwrap" in fields.get("Name", "")
            and (int(fields.get("PPid", "0")) == os.getpid() or _of_this_run(entry))
        ):
            found.append(int(entry.name))
    return found


def _of_this_run(entry: Path) -> bool:
    """A process whose command line names this run's state directory: a box's bwrap, even
    one that never reached its cgroup."""
    try:
        return os.environ["EXECBOX_STATE_DIR"].encode() in (entry / "cmdline").read_bytes()
    except OSError:
        return False


def _cgroup_prefix() -> str:
    """Box ids (and cgroup names) start with a tag of the state directory they belong to."""
    root = Path(os.environ["EXECBOX_STATE_DIR"]).resolve()
    return f"box-{hashlib.sha256(str(root).encode()).hexdigest()[:6]}-"


def box_cgroups() -> list[str]:
    """Box cgroups of this run's state directory; runs with other state dirs share the parent."""
    groups = probe().cgroups
    prefix = _cgroup_prefix()
    return [name for name in groups.leftovers() if name.startswith(prefix)] if groups else []


def box_records() -> list[str]:
    directory = Path(os.environ["EXECBOX_STATE_DIR"]) / "boxes"
    return sorted(p.name for p in directory.glob("box-*.json")) if directory.exists() else []


def leftovers() -> dict[str, list[object]]:
    return {
        name: items
        for name, items in (
            ("processes", box_processes()),
            ("cgroups", box_cgroups()),
            ("records", box_records()),
        )
        if items
    }


class Invariants:
    """No canary anywhere; nothing of the box left 2 s after; a benign run works; right status."""

    def __init__(self, client: execbox.Client, canary: str) -> None:
        self.client = client
        self.canary = canary

    def check(self, result: JobResult, status: JobStatus, reason: str | None = None) -> None:
        seen = result.stdout_bytes + result.stderr_bytes + str(result.message).encode()
        assert self.canary.encode() not in seen, "a canary leaked into the result"
        deadline = time.monotonic() + 2.0
        while leftovers() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not leftovers(), f"left behind 2 s after the result: {leftovers()}"
        assert result.status is status, (
            result.status,
            result.reason,
            result.message,
            result.stderr[-2000:],
        )
        if reason is not None:
            assert result.reason == reason, (result.reason, result.message)
        assert result.finished_at is not None
        benign = self.client.run({"main.py": "print('still fine')"})
        assert benign.status is JobStatus.SUCCEEDED, benign
        assert benign.stdout == "still fine\n"
