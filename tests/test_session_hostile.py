"""Hostile code in sessions: each case asserts its outcome, then the SECURITY.md invariants.

After every case: no canary in anything the session returned; once the session is closed,
nothing of its box is left within 2 s; the engine still starts a session that works.
"""

from __future__ import annotations

import socket
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import execbox
from conftest import CANARY, SECRET_FILE
from execbox import ExecutionStatus, Limits
from helpers import leftovers


@pytest.fixture(scope="module")
def engine() -> Iterator[execbox.Client]:
    """No warm kernels: once a session is closed, no box at all may remain."""
    with execbox.Client(pool_size=0, session_pool_size=0) as c:
        yield c


def _nothing_left() -> None:
    deadline = time.monotonic() + 2.0
    while leftovers() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not leftovers(), f"left behind 2 s after the session ended: {leftovers()}"


def _engine_healthy(engine: execbox.Client) -> None:
    with engine.session() as session:
        result = session.execute("print('still fine')")
    assert result.ok, result
    assert result.stdout == "still fine\n"
    assert engine.run({"main.py": "print('jobs too')"}).stdout == "jobs too\n"
    _nothing_left()


def _no_canary(*results: execbox.ExecutionResult) -> None:
    for result in results:
        blob = repr(result.to_dict())
        assert CANARY not in blob, "a canary leaked into a session's result"


def _code(source: str) -> str:
    return textwrap.dedent(source).strip()


CHILD_MEMORY_BOMB = _code(
    """
    import subprocess, sys
    bomb = "chunks = []\\nwhile True:\\n    chunks.append(bytearray(16 << 20))"
    print(subprocess.run([sys.executable, "-c", bomb]).returncode)
    """
)


def test_memory_bomb_ends_the_session_with_memory_limit(engine):
    """A child killed at the limit leaves the kernel running; the kernel's own bomb, even
    after that first kill, ends the session as memory_limit (not as a kernel that died)."""
    session = engine.session(limits=Limits(memory="256M")).start()
    try:
        assert session.execute("x = 1").ok
        child = session.execute(CHILD_MEMORY_BOMB, timeout=60)
        assert child.ok, child
        assert child.stdout == "-9\n"
        assert "killed at the session's memory limit" in (child.message or "")
        assert session.execute("x").text == "1\n"
        result = session.execute(
            "chunks = []\nwhile True:\n    chunks.append(bytearray(16 << 20))", timeout=60
        )
        assert result.status is ExecutionStatus.MEMORY_LIMIT, (result.status, result.message)
        assert "memory" in (result.message or "")
        info = session.info()
        assert info.status == "closed", info
        assert info.reason == "memory_limit", info
        with pytest.raises(execbox.SessionClosed) as caught:
            session.execute("x")
        assert caught.value.reason == "memory_limit"
    finally:
        session.close()
    _no_canary(result)
    _nothing_left()
    _engine_healthy(engine)


@pytest.mark.parametrize(
    "bomb",
    [
        "import os\nwhile True:\n    os.fork()",
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
        "import threading, time\nwhile True:\n"
        "    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()",
    ],
    ids=["fork-raises", "fork-swallows", "threads"],
)
def test_fork_and_thread_bombs_end_the_session_with_pids_limit(engine, bomb):
    session = engine.session(limits=Limits(pids=64)).start()
    try:
        result = session.execute(bomb, timeout=30)
        assert result.status is ExecutionStatus.PIDS_LIMIT, (result.status, result.message)
        assert session.info().reason == "pids_limit"
    finally:
        session.close()
    _no_canary(result)
    _nothing_left()
    _engine_healthy(engine)


def test_secrets_of_the_host_are_out_of_reach(engine):
    probe = _code(
        f"""
        import os, glob
        seen = []
        seen.append(os.environ.get("EXECBOX_TEST_CANARY"))
        for path in glob.glob("/proc/*/environ") + glob.glob("/proc/*/cmdline"):
            try:
                seen.append(open(path, "rb").read().decode(errors="replace"))
            except OSError:
                pass
        for path in ({str(SECRET_FILE)!r}, "/etc/shadow", "/root/.bashrc"):
            try:
                seen.append(open(path).read())
            except OSError as exc:
                print(path, type(exc).__name__)
        print("canary" in "".join(s or "" for s in seen).lower())
        """
    )
    with engine.session() as session:
        result = session.execute(probe)
    assert result.ok, result.error
    assert result.stdout.strip().endswith("False"), result.stdout
    assert f"{SECRET_FILE} FileNotFoundError" in result.stdout
    _no_canary(result)
    _nothing_left()


def test_host_loopback_and_unix_listeners_are_unreachable(engine):
    with tempfile.TemporaryDirectory() as directory:
        Path(directory).chmod(0o755)
        path = Path(directory) / "host.sock"
        with (
            socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp,
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as unix,
        ):
            tcp.bind(("127.0.0.1", 0))
            tcp.listen(8)
            unix.bind(str(path))
            path.chmod(0o777)
            unix.listen(8)
            for listener in (tcp, unix):
                listener.setblocking(False)
            port = tcp.getsockname()[1]
            probe = _code(
                f"""
                import socket
                for family, address in ((socket.AF_INET, ("127.0.0.1", {port})),
                                        (socket.AF_UNIX, {str(path)!r})):
                    s = socket.socket(family, socket.SOCK_STREAM)
                    s.settimeout(2)
                    try:
                        s.connect(address)
                        print("connected")
                    except OSError as exc:
                        print("refused", type(exc).__name__)
                """
            )
            with engine.session() as session:
                result = session.execute(probe)
            assert result.ok, result.error
            assert "connected" not in result.stdout, result.stdout
            for listener in (tcp, unix):
                with pytest.raises(BlockingIOError):
                    listener.accept()
    _nothing_left()


def test_planted_links_never_lead_the_host_to_its_own_sockets(engine):
    """The code swaps the kernel's ipc sockets for links to a host socket, then kills the kernel:
    the restart never connects the host to what the links point at."""
    with tempfile.TemporaryDirectory() as directory:
        Path(directory).chmod(0o755)
        path = Path(directory) / "host.sock"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as unix:
            unix.bind(str(path))
            unix.listen(8)
            unix.setblocking(False)
            attack = _code(
                f"""
                import os, subprocess, sys
                swapper = '''
                import os, time
                end = time.time() + 4
                while time.time() < end:
                    for name in os.listdir("/tmp/.execbox"):
                        full = os.path.join("/tmp/.execbox", name)
                        if name.startswith("k") and not name.endswith(".json") and not os.path.islink(full):
                            try:
                                os.unlink(full)
                                os.symlink({str(path)!r}, full)
                            except OSError:
                                pass
                    time.sleep(0.001)
                '''
                subprocess.Popen([sys.executable, "-c", swapper], start_new_session=True)
                import time; time.sleep(0.2)
                os._exit(1)
                """
            )
            with engine.session() as session:
                first = session.execute(attack, timeout=60)
                assert first.status is ExecutionStatus.KERNEL_DIED or session.info().reason
                if session.info().status != "closed":
                    after = session.execute("print('alive')", timeout=30)
                    assert after.status in (ExecutionStatus.OK, ExecutionStatus.CANCELLED)
            with pytest.raises(BlockingIOError):
                unix.accept()
    _nothing_left()
    _engine_healthy(engine)


def test_killing_everything_in_the_box_restarts_the_kernel(engine):
    with engine.session() as session:
        assert session.execute("x = 1").ok
        result = session.execute(
            "import os, subprocess\nsubprocess.Popen(['sleep', '60'])\n"
            "os.kill(-1, 9)\nos.kill(os.getpid(), 9)"
        )
        assert result.status is ExecutionStatus.KERNEL_DIED, (result.status, result.message)
        assert result.restarted
        again = session.execute("print('back')")
        assert again.ok
        assert again.stdout == "back\n"
        gone = session.execute("x")
        assert gone.status is ExecutionStatus.ERROR
        assert gone.error.ename == "NameError"
    _nothing_left()


def test_output_flood_is_capped_and_the_session_survives(engine):
    with engine.session(limits=Limits(output="1M")) as session:
        result = session.execute(
            "import sys\nfor _ in range(64):\n    sys.stdout.write('x' * (1 << 20))", timeout=60
        )
        assert result.truncated
        assert len(result.stdout) <= 1 << 20
        assert session.execute("print('ok')").stdout == "ok\n"
    _nothing_left()


def test_sessions_cannot_reach_each_other(engine):
    with engine.session() as first, engine.session() as second:
        first.execute("open('/workspace/mine.txt', 'w').write('first')\nimport subprocess")
        first.execute("p = subprocess.Popen(['sleep', '30'])")
        seen = second.execute(
            _code(
                """
                import os
                print(os.path.exists('/workspace/mine.txt'))
                print(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))
                """
            )
        )
        lines = seen.stdout.splitlines()
        assert lines[0] == "False", seen.stdout
        pids = eval(lines[1])  # noqa: S307 - our own list of ints
        assert len(pids) <= 4, f"the second box sees foreign processes: {pids}"
    _nothing_left()
