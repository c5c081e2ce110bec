"""Both cgroup drivers on the real hierarchies: limits written, members found, freeze-then-kill.

This host is hybrid (v1 controllers, plus a unified v2 mount without controllers), so v2 is
exercised for what it can do here: membership, cgroup.kill / cgroup.freeze, removal.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from execbox.boxes.local.cgroups import CgroupV1, _own_cgroups, detect_cgroups, detect_v2
from execbox.models import Limits


def _sleepers(n: int) -> list[subprocess.Popen[bytes]]:
    return [subprocess.Popen(["sleep", "60"]) for _ in range(n)]


def _reap(processes: list[subprocess.Popen[bytes]]) -> list[int | None]:
    codes = []
    for process in processes:
        try:
            codes.append(process.wait(timeout=5))
        except subprocess.TimeoutExpired:
            process.kill()
            codes.append(None)
    return codes


def _unified_mount() -> Path | None:
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        if " - cgroup2 " in line:
            return Path(line.split()[4])
    return None


@pytest.mark.skipif(os.geteuid() != 0, reason="writing cgroups needs root or delegation")
def test_v1_limits_membership_and_kill():
    driver = detect_cgroups()
    if not isinstance(driver, CgroupV1):
        pytest.skip("this host has no cgroup v1 hierarchy")
    box = driver.create("box-test-v1", Limits(memory="96M", pids=33, cpus=0.5))
    try:
        memory = driver.parents["memory"] / "box-test-v1"
        assert (memory / "memory.limit_in_bytes").read_text().strip() == str(96 << 20)
        assert (driver.parents["pids"] / "box-test-v1" / "pids.max").read_text().strip() == "33"
        assert (
            driver.parents["cpu"] / "box-test-v1" / "cpu.cfs_quota_us"
        ).read_text().strip() == "50000"
        sleepers = _sleepers(3)
        for process in sleepers:
            box.attach(process.pid)
        assert sorted(box.pids()) == sorted(p.pid for p in sleepers)
        box.kill_all()
        assert _reap(sleepers) == [-9, -9, -9]
        assert box.pids() == []
    finally:
        box.remove()
    assert "box-test-v1" not in driver.leftovers()


@pytest.mark.skipif(os.geteuid() != 0, reason="writing cgroups needs root or delegation")
def test_v2_membership_and_kill_on_the_unified_hierarchy():
    mount = _unified_mount()
    if mount is None:
        pytest.skip("no cgroup2 mount on this host")
    problems: list[str] = []
    driver = detect_v2(mount, _own_cgroups().get("", "/"), problems)
    assert driver is not None, problems
    assert "freezer" in driver.controllers
    box = driver.create("box-test-v2", Limits())
    try:
        sleepers = _sleepers(2)
        for process in sleepers:
            box.attach(process.pid)
        assert sorted(box.pids()) == sorted(p.pid for p in sleepers)
        started = time.monotonic()
        box.kill_all()
        assert time.monotonic() - started < 1
        assert _reap(sleepers) == [-9, -9]
    finally:
        box.remove()
    assert "box-test-v2" not in driver.leftovers()
