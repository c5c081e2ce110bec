"""The non-root path: the same tests, run as `nobody` through setpriv, where no cgroup can be
written. Boxes must still start, with rlimits as the fallback, and say so."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOBODY = 65534

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="switching to nobody needs root")


def _as_nobody(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "EXECBOX_STATE_DIR": str(home / "state"),
        "EXECBOX_CACHE_DIR": str(home / "cache"),
        "LANG": "C.UTF-8",
    }
    command = [
        shutil.which("setpriv") or "setpriv",
        f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--",
        sys.executable, *args,
    ]  # fmt: skip
    return subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.fixture
def nobody_home():
    home = Path(tempfile.mkdtemp(prefix="execbox-nobody-"))
    os.chown(home, NOBODY, NOBODY)
    yield home
    shutil.rmtree(home, ignore_errors=True)


def test_doctor_reports_the_fallbacks(nobody_home):
    done = _as_nobody("-m", "execbox.cli.main", "doctor", home=nobody_home)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "cgroup memory     MISSING" in done.stdout
    assert "RLIMIT_AS" in done.stdout
    assert f"your own uid {NOBODY}" in done.stdout


def test_suite_subset_passes_as_nobody(nobody_home):
    done = _as_nobody(
        "-m", "pytest", "-q", "-p", "no:cacheprovider",
        "tests/test_smoke.py", "tests/test_jobs.py", "tests/test_hostile.py",
        "-k", "not warm_pool and not reserved_uid",
        home=nobody_home,
    )  # fmt: skip
    tail = "\n".join((done.stdout + done.stderr).splitlines()[-40:])
    assert done.returncode == 0, tail
    assert " passed" in tail
    assert " failed" not in tail


def test_sessions_work_as_nobody(nobody_home):
    """Kernels in boxes without root: /proc/PID/root access, rlimits, the runtime in our cache."""
    done = _as_nobody(
        "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_sessions.py",
        "-k", "state_kept or isolated or stream_events or error_is_a_result or input_round_trip"
        " or timeout_interrupts or restart_loses or files_round_trip or planted_symlinks"
        " or matplotlib or env_and_cwd",
        home=nobody_home,
    )  # fmt: skip
    tail = "\n".join((done.stdout + done.stderr).splitlines()[-40:])
    assert done.returncode == 0, tail
    assert "22 passed" in tail, tail  # 11 tests, embedded and through a server run as nobody


def test_memory_limit_without_cgroups(nobody_home):
    code = "from execbox import Client, Limits\nwith Client(pool_size=0) as c:\n"
    code += "    r = c.run({'main.py': 'x = bytearray(3 << 30)'}, limits=Limits(memory='128M'))\n"
    code += "    print(r.status)\n"
    done = _as_nobody("-c", code, home=nobody_home)
    assert done.stdout.strip() == "memory_limit", done.stdout + done.stderr
    assert "rlimits only" in done.stderr
