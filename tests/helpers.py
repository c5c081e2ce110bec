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


def box_processes() -> list[int]:
    """Host pids that belong to a box: a reserved uid (as root), else a bwrap we started."""
    found = []
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        uid = int(fields.get("Uid", "0").split()[0])
        if os.geteuid() == 0:
            if DEFAULT_BASE <= uid < DEFAULT_BASE + DEFAULT_COUNT:
                found.append(int(entry.name))
        elif (
            uid == os.getuid()
            and int(fields.get("PPid", "0")) == me
            and "bwrap" in fields.get("Name", "")
        ):
            found.append(int(entry.name))
    return found


def box_cgroups() -> list[str]:
    """Box cgroups of this run's state directory; runs with other state dirs share the parent."""
    groups = probe().cgroups
    root = Path(os.environ["EXECBOX_STATE_DIR"]).resolve()
    prefix = f"box-{hashlib.sha256(str(root).encode()).hexdigest()[:6]}-"
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
