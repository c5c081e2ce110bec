"""Hostile programs run in real boxes: each asserts what the program saw, then the invariants.

Every case runs the hostile code in a box, checks the observable outcome (status, reason, the
errno or exception the program printed) and then calls ``invariants.check``: no canary in the
result, nothing of the box left 2 s later, a benign job still works, the status is right.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

import execbox
from conftest import CANARY, SECRET_FILE
from execbox.boxes.local.host import probe
from execbox.boxes.local.uids import DEFAULT_BASE, DEFAULT_COUNT
from execbox.models import JobStatus
from helpers import FORK_BOMB, box_processes

MIB = 1 << 20


# Only a pids cgroup counts how often its limit was hit; under the RLIMIT_NPROC fallback a
# failed fork is just the program's error, reported without a reason.
_GROUPS = probe().cgroups
PIDS_LIMIT_REASON = "pids_limit" if _GROUPS and "pids" in _GROUPS.controllers else None


def program(source: str) -> dict[str, str]:
    """The files of a job whose main.py is ``source``, dedented."""
    return {"main.py": textwrap.dedent(source)}


def report(result: execbox.JobResult) -> dict:
    """The JSON object a program printed on its last line of stdout."""
    lines = result.stdout.strip().splitlines()
    assert lines, (result.status, result.reason, result.stderr[-2000:])
    return json.loads(lines[-1])


def rss_bytes() -> int:
    """This test process's resident set size (VmRSS)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def _descendants(root: int) -> dict[int, tuple[str, set[int]]]:
    """Host pids below ``root``, with their name and every uid and gid they hold."""
    parents: dict[int, int] = {}
    facts: dict[int, tuple[str, set[int]]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        pid = int(entry.name)
        parents[pid] = int(fields["PPid"])
        ids = {int(n) for n in (fields["Uid"] + fields["Gid"]).split()}
        facts[pid] = (fields["Name"].strip(), ids)
    found: dict[int, tuple[str, set[int]]] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in found:
                found[pid] = facts[pid]
                frontier.append(pid)
    return found


def wait_for_program(timeout: float = 10.0) -> None:
    """Until a job's program (``python main.py``) runs on this host, started by this process."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in _descendants(os.getpid()):
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"main.py" in argv:
                return
        time.sleep(0.02)
    raise AssertionError("no job program started")


# -- resource exhaustion ---------------------------------------------------------------------


def test_memory_bomb_is_stopped_by_the_memory_limit(client, invariants):
    result = client.run(
        program(
            """
            chunks = []
            for _ in range(256):  # 4 GiB, every page written
                chunks.append(b"\\x01" * (16 << 20))
            print("survived", len(chunks))
            """
        ),
        limits=execbox.Limits(memory="128M"),
        timeout=30,
    )
    assert "survived" not in result.stdout
    assert result.reason == "memory_limit", (result.reason, result.message)
    invariants.check(result, JobStatus.MEMORY_LIMIT, reason="memory_limit")


def test_fork_bomb_is_contained_by_the_pids_limit(client, invariants):
    result = client.run(
        {"main.py": FORK_BOMB},
        limits=execbox.Limits(pids=32),
        timeout=5,
    )
    assert "fork failed" in result.stdout, (result.status, result.stdout, result.stderr[-2000:])
    assert result.stdout.endswith(": BlockingIOError EAGAIN\n"), result.stdout
    assert result.exit_code == 3
    assert result.duration < 5
    invariants.check(result, JobStatus.FAILED, reason=PIDS_LIMIT_REASON)


def test_thread_bomb_is_contained_by_the_pids_limit(client, invariants):
    result = client.run(
        program(
            """
            import os, threading, time

            started = 0
            try:
                while True:
                    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
                    started += 1
            except RuntimeError as exc:
                print(f"RuntimeError: {exc} after {started} threads", flush=True)
                os._exit(1)
            """
        ),
        limits=execbox.Limits(pids=32),
        timeout=10,
    )
    assert "RuntimeError: can't start new thread" in result.stdout, result.stderr[-2000:]
    started = int(result.stdout.split("after ")[1].split()[0])
    assert started < 32
    assert result.exit_code == 1
    invariants.check(result, JobStatus.FAILED, reason=PIDS_LIMIT_REASON)


def test_infinite_loop_times_out(client, invariants):
    result = client.run(program("while True:\n    pass\n"), timeout=1)
    assert result.reason == "timeout"
    assert 1.0 <= result.duration <= 3.0, result.duration
    invariants.check(result, JobStatus.TIMEOUT, reason="timeout")


def test_sleep_past_the_timeout_times_out(client, invariants):
    result = client.run(program("import time\ntime.sleep(60)\nprint('woke')\n"), timeout=1)
    assert "woke" not in result.stdout
    assert 1.0 <= result.duration <= 3.0, result.duration
    invariants.check(result, JobStatus.TIMEOUT, reason="timeout")


# -- output abuse ----------------------------------------------------------------------------


def test_output_flood_is_capped_and_drained(client, invariants):
    before = rss_bytes()
    result = client.run(
        program(
            """
            import sys
            while True:
                sys.stdout.write("x" * 65536)
            """
        ),
        limits=execbox.Limits(output="1M"),
        timeout=2,
    )
    growth = rss_bytes() - before
    assert result.stdout_truncated is True
    assert len(result.stdout_bytes) == MIB
    assert set(result.stdout_bytes) == {ord("x")}
    assert growth < 64 * MIB, f"the caller grew by {growth / MIB:.1f} MiB"
    invariants.check(result, JobStatus.TIMEOUT, reason="timeout")


def test_single_huge_line_is_capped(client, invariants):
    before = rss_bytes()
    result = client.run(program("import sys\nsys.stdout.write('y' * (64 << 20))\n"), timeout=30)
    growth = rss_bytes() - before
    assert result.stdout_truncated is True
    assert len(result.stdout_bytes) == 8 * MIB
    assert set(result.stdout_bytes) == {ord("y")}
    assert growth < 64 * MIB, f"the caller grew by {growth / MIB:.1f} MiB"
    invariants.check(result, JobStatus.SUCCEEDED)


def test_invalid_utf8_output_is_kept_as_bytes(client, invariants):
    result = client.run(
        program(
            """
            import os
            os.write(1, b"\\xff\\xfe\\x80 ok")
            os.write(2, b"\\xc3\\x28 err")
            """
        )
    )
    assert result.stdout_bytes == b"\xff\xfe\x80 ok"
    assert result.stderr_bytes == b"\xc3\x28 err"
    assert "\ufffd" in result.stdout
    assert result.stdout.endswith(" ok")
    assert "\ufffd" in result.stderr
    assert result.stderr.endswith(" err")
    assert not result.stdout_truncated
    assert not result.stderr_truncated
    invariants.check(result, JobStatus.SUCCEEDED)


# -- process lifecycle -----------------------------------------------------------------------


def test_double_forked_daemon_does_not_hold_the_job_or_survive_it(client, invariants):
    result = client.run(
        program(
            """
            import os, time

            if os.fork() == 0:
                os.setsid()
                if os.fork() == 0:
                    for i in range(60):
                        with open("/tmp/daemon-alive", "w") as f:
                            f.write(str(i))
                        time.sleep(1)
                    os._exit(0)
                os._exit(0)
            os.wait()
            print("parent done", flush=True)
            """
        ),
        timeout=30,
    )
    assert result.stdout == "parent done\n"
    assert result.exit_code == 0
    assert result.duration < 3.0, result.duration
    invariants.check(result, JobStatus.SUCCEEDED)


def test_kill_all_from_inside_hits_only_the_box(client, invariants):
    # Another box, running meanwhile as another uid: kill(-1) from the first must not reach it.
    neighbour = client.submit(
        program("import time\ntime.sleep(1.5)\nprint('neighbour survived')\n"), timeout=20
    )
    wait_for_program()
    result = client.run(
        program(
            """
            import json, os, signal, time

            children = []
            for _ in range(3):
                pid = os.fork()
                if pid == 0:
                    time.sleep(60)
                    os._exit(0)
                children.append(pid)
            os.kill(-1, signal.SIGKILL)  # every process this uid may signal, but the caller
            statuses = [os.waitpid(pid, 0)[1] for pid in children]
            try:
                os.kill(1, signal.SIGKILL)  # the box's init ignores it
                time.sleep(0.1)
                os.kill(1, 0)
                init = "alive"
            except OSError as exc:
                init = type(exc).__name__
            print(json.dumps({
                "children": [os.WTERMSIG(s) if os.WIFSIGNALED(s) else None for s in statuses],
                "init": init,
            }))
            """
        ),
        timeout=10,
    )
    seen = report(result)
    assert seen == {"children": [9, 9, 9], "init": "alive"}
    assert result.exit_code == 0
    os.kill(os.getpid(), 0)  # the test process is fine
    other = neighbour.wait(20)
    assert other.status is JobStatus.SUCCEEDED, (other.status, other.reason, other.stderr)
    assert other.stdout == "neighbour survived\n"
    invariants.check(result, JobStatus.SUCCEEDED)


# -- filesystem confidentiality --------------------------------------------------------------


def test_etc_shadow_is_not_there(client, invariants):
    result = client.run(
        program(
            """
            try:
                print(open("/etc/shadow").read())
            except OSError as exc:
                print(type(exc).__name__)
            """
        )
    )
    assert result.stdout == "FileNotFoundError\n"
    invariants.check(result, JobStatus.SUCCEEDED)


def test_home_directories_are_absent(client, invariants):
    result = client.run(
        program(
            """
            import json, os

            seen = {}
            for path in ("/root", "/home", "/var", "/run", "/srv", "/sys"):
                try:
                    seen[path] = sorted(os.listdir(path))
                except OSError as exc:
                    seen[path] = type(exc).__name__
            print(json.dumps(seen))
            """
        )
    )
    seen = report(result)
    for path, listing in seen.items():
        assert listing in ("FileNotFoundError", []), (path, listing)
    invariants.check(result, JobStatus.SUCCEEDED)


def test_service_secret_file_is_not_reachable(client, invariants):
    result = client.run(
        program(
            """
            import json, os, sys

            secret = sys.argv[1]
            seen = {}
            for path in (secret, os.path.dirname(secret)):
                try:
                    if os.path.isdir(path):
                        seen[path] = sorted(os.listdir(path))
                    else:
                        seen[path] = open(path).read()
                except OSError as exc:
                    seen[path] = type(exc).__name__
            print(json.dumps(seen))
            """
        ),
        args=[str(SECRET_FILE)],
    )
    assert report(result) == {
        str(SECRET_FILE): "FileNotFoundError",
        str(SECRET_FILE.parent): "FileNotFoundError",
    }
    invariants.check(result, JobStatus.SUCCEEDED)


def test_proc_shows_only_the_box_and_no_canary(client, invariants):
    host_pid = os.getpid()
    host_cmdline = Path(f"/proc/{host_pid}/cmdline").read_bytes().decode(errors="replace")
    result = client.run(
        program(
            """
            import json, os

            seen = {}
            for entry in os.listdir("/proc"):
                if not entry.isdigit():
                    continue
                info = {}
                for name in ("environ", "cmdline"):
                    try:
                        with open(f"/proc/{entry}/{name}", "rb") as f:
                            info[name] = f.read().decode(errors="replace")
                    except OSError as exc:
                        info[name] = "!" + type(exc).__name__
                seen[entry] = info
            print(json.dumps(seen))
            """
        )
    )
    assert result.status is JobStatus.SUCCEEDED, result.stderr[-2000:]
    # The canary must not be in the raw bytes either (invariants check those too).
    seen = report(result)
    assert "1" in seen, seen
    for pid, info in seen.items():
        for name, text in info.items():
            assert CANARY not in text, (pid, name)
            assert "EXECBOX_TEST_CANARY" not in text, (pid, name)
        if pid == str(host_pid):
            assert info["cmdline"] != host_cmdline
    # Only the box: its init (the agent) and the program itself.
    assert len(seen) == 2, seen
    for pid, info in seen.items():
        cmdline = info["cmdline"]
        assert "agent.py" in cmdline or "main.py" in cmdline, (pid, cmdline)
    # The agent (pid 1) is undumpable: its environment is not readable from the program.
    assert seen["1"]["environ"] == "!PermissionError", seen["1"]
    invariants.check(result, JobStatus.SUCCEEDED)


def test_box_environment_is_minimal_and_carries_the_user_env(client, invariants):
    result = client.run(
        program("import json, os\nprint(json.dumps(dict(os.environ)))\n"),
        env={"MY": "1"},
    )
    seen = report(result)
    assert "EXECBOX_TEST_CANARY" not in seen
    assert seen["MY"] == "1"
    assert seen["PATH"]
    assert seen["HOME"]
    assert seen["LANG"]
    # PYTHONUNBUFFERED is the engine's own; the rest of the host's environment stays out.
    allowed = {"PATH", "HOME", "LANG", "LC_ALL", "USER", "TMPDIR", "PYTHONUNBUFFERED"}
    host_only = set(os.environ) - allowed
    assert not (set(seen) & host_only), set(seen) & host_only
    assert len(seen) <= 12, sorted(seen)
    invariants.check(result, JobStatus.SUCCEEDED)


# -- network ---------------------------------------------------------------------------------


def test_host_loopback_listener_is_unreachable(client, invariants):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.setblocking(False)
        port = listener.getsockname()[1]
        result = client.run(
            program(
                """
                import socket, sys
                try:
                    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2)
                    print("connected")
                except OSError as exc:
                    print(type(exc).__name__)
                """
            ),
            args=[str(port)],
        )
        with pytest.raises(BlockingIOError):
            listener.accept()
    assert result.stdout == "ConnectionRefusedError\n"
    invariants.check(result, JobStatus.SUCCEEDED)


def test_host_unix_socket_is_unreachable(client, invariants):
    directory = Path(tempfile.mkdtemp(prefix="execbox-hostile-unix-"))
    try:
        directory.chmod(0o777)
        path = directory / "service.sock"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
            listener.bind(str(path))
            path.chmod(0o777)
            listener.listen(8)
            listener.setblocking(False)
            result = client.run(
                program(
                    """
                    import socket, sys
                    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    try:
                        s.connect(sys.argv[1])
                        print("connected")
                    except OSError as exc:
                        print(type(exc).__name__)
                    """
                ),
                args=[str(path)],
            )
            with pytest.raises(BlockingIOError):
                listener.accept()
    finally:
        for child in directory.iterdir():
            child.unlink()
        directory.rmdir()
    assert result.stdout == "FileNotFoundError\n"
    invariants.check(result, JobStatus.SUCCEEDED)


def test_outside_network_is_unreachable(client, invariants):
    result = client.run(
        program(
            """
            import errno, socket
            try:
                socket.create_connection(("1.1.1.1", 53), timeout=1)
                print("connected")
            except OSError as exc:
                print(type(exc).__name__, errno.errorcode.get(exc.errno))
            """
        )
    )
    assert result.stdout == "OSError ENETUNREACH\n"
    invariants.check(result, JobStatus.SUCCEEDED)


# -- filesystem integrity --------------------------------------------------------------------


RUNTIME_AGENT = Path(os.environ["EXECBOX_STATE_DIR"]) / "runtime" / "agent.py"
OUTSIDE_TARGETS = ("/usr/x", "/etc/passwd", "/opt/execbox/agent.py", "/x", "/")


def test_writes_outside_the_workspace_fail(client, invariants):
    before = {target: Path(target).stat() for target in OUTSIDE_TARGETS if Path(target).exists()}
    agent_before = RUNTIME_AGENT.read_bytes()
    scratch = f"/tmp/execbox-hostile-{os.urandom(6).hex()}"
    result = client.run(
        program(
            """
            import errno, json, os, sys

            scratch, targets = sys.argv[1], sys.argv[2:]
            seen = {}
            for target in targets:
                try:
                    if target == "/":
                        os.mkdir("/newdir")
                    else:
                        with open(target, "w") as f:
                            f.write("owned\\n")
                    seen[target] = "written"
                except OSError as exc:
                    seen[target] = errno.errorcode.get(exc.errno, exc.errno)
            with open(scratch, "w") as f:
                f.write("fine")
            with open("/workspace/out.txt", "w") as f:
                f.write("fine")
            seen["tmp"] = open(scratch).read()
            seen["workspace"] = open("out.txt").read()
            print(json.dumps(seen))
            """
        ),
        args=[scratch, *OUTSIDE_TARGETS],
    )
    seen = report(result)
    for target in OUTSIDE_TARGETS:
        assert seen[target] in ("EROFS", "EACCES"), (target, seen[target])
    assert seen["tmp"] == seen["workspace"] == "fine"
    for target in OUTSIDE_TARGETS:
        if target in before:
            after = Path(target).stat()
            assert (after.st_mtime_ns, after.st_size) == (
                before[target].st_mtime_ns,
                before[target].st_size,
            ), target
        else:
            assert not Path(target).exists(), f"{target} appeared on the host"
    assert not Path("/newdir").exists()
    assert not Path(scratch).exists(), "the box's /tmp is the host's /tmp"
    assert RUNTIME_AGENT.read_bytes() == agent_before
    invariants.check(result, JobStatus.SUCCEEDED)


def test_disk_cap_stops_a_large_write(client, invariants):
    result = client.run(
        program(
            """
            import errno, sys
            block = b"z" * (1 << 20)
            written = 0
            try:
                with open("/workspace/big", "wb") as f:
                    for _ in range(64):
                        f.write(block)
                        f.flush()
                        written += 1
            except OSError as exc:
                print(errno.errorcode.get(exc.errno, exc.errno), written, flush=True)
                sys.exit(1)
            print("wrote", written)
            """
        ),
        limits=execbox.Limits(disk="16M"),
    )
    code, written = result.stdout.split()
    assert code in ("ENOSPC", "EFBIG"), result.stdout
    assert int(written) <= 16
    assert result.exit_code == 1
    invariants.check(result, JobStatus.FAILED)


# -- descriptors and kernel surface ----------------------------------------------------------


def test_no_host_descriptor_is_inherited(client, invariants):
    # A deliberately inheritable host descriptor to the secret: it must not reach the box.
    leak = os.open(SECRET_FILE, os.O_RDONLY)
    os.set_inheritable(leak, True)
    try:
        result = client.run(
            program(
                """
                import json, os
                fds = os.listdir("/proc/self/fd")
                links = {}
                for fd in fds:
                    try:
                        links[fd] = os.readlink(f"/proc/self/fd/{fd}")
                    except OSError as exc:
                        links[fd] = type(exc).__name__
                print(json.dumps(links))
                """
            )
        )
    finally:
        os.close(leak)
    links = report(result)
    assert {int(fd) for fd in links} <= {0, 1, 2, 3}, links
    assert not any(str(SECRET_FILE) in target for target in links.values()), links
    invariants.check(result, JobStatus.SUCCEEDED)


def test_kernel_surface_is_denied(client, invariants):
    result = client.run(
        program(
            """
            import ctypes, errno, json, socket

            libc = ctypes.CDLL(None, use_errno=True)
            libc.syscall.restype = ctypes.c_long
            calls = {
                "ptrace_traceme": lambda: libc.ptrace(0, 0, None, None),
                "ptrace_attach_init": lambda: libc.ptrace(16, 1, None, None),
                "unshare_user": lambda: libc.unshare(0x10000000),
                "unshare_net": lambda: libc.unshare(0x40000000),
                "mount_tmpfs": lambda: libc.mount(b"none", b"/tmp", b"tmpfs", 0, None),
                "io_uring_setup": lambda: libc.syscall(425, 8, ctypes.create_string_buffer(120)),
                "bpf": lambda: libc.syscall(321, 0, None, 0),
                "keyctl": lambda: libc.syscall(250, 0, 0, 0, 0, 0),
            }
            sockets = {
                "AF_PACKET/SOCK_RAW": (socket.AF_PACKET, socket.SOCK_RAW),
                "AF_PACKET/SOCK_DGRAM": (socket.AF_PACKET, socket.SOCK_DGRAM),
                "AF_VSOCK/SOCK_STREAM": (socket.AF_VSOCK, socket.SOCK_STREAM),
                "AF_INET/SOCK_RAW": (socket.AF_INET, socket.SOCK_RAW),
                "AF_INET6/SOCK_RAW": (socket.AF_INET6, socket.SOCK_RAW),
                "AF_NETLINK/SOCK_RAW": (socket.AF_NETLINK, socket.SOCK_RAW),
            }
            seen = {}
            for name, call in calls.items():
                ctypes.set_errno(0)
                rc = call()
                seen[name] = f"{rc} {errno.errorcode.get(ctypes.get_errno())}"
            for name, (family, kind) in sockets.items():
                try:
                    socket.socket(family, kind).close()
                    seen[name] = "opened"
                except OSError as exc:
                    seen[name] = f"{type(exc).__name__} {errno.errorcode.get(exc.errno)}"
            print(json.dumps(seen))
            """
        )
    )
    seen = report(result)
    calls = {name: value for name, value in seen.items() if "/" not in name}
    assert calls == dict.fromkeys(
        [
            "ptrace_traceme",
            "ptrace_attach_init",
            "unshare_user",
            "unshare_net",
            "mount_tmpfs",
            "io_uring_setup",
            "bpf",
            "keyctl",
        ],
        "-1 EPERM",
    ), calls
    for name in ("AF_PACKET/SOCK_RAW", "AF_PACKET/SOCK_DGRAM", "AF_VSOCK/SOCK_STREAM"):
        assert seen[name] in ("OSError EAFNOSUPPORT", "PermissionError EPERM"), (name, seen)
    for name in ("AF_INET/SOCK_RAW", "AF_INET6/SOCK_RAW"):
        assert seen[name] in ("PermissionError EPERM", "OSError EAFNOSUPPORT"), (name, seen)
    # Netlink stays open: getifaddrs() needs it (ZMQ, psutil), and the box has only its own lo.
    assert seen["AF_NETLINK/SOCK_RAW"] == "opened", seen
    invariants.check(result, JobStatus.SUCCEEDED)


def test_seccomp_no_new_privs_and_no_capabilities(client, invariants):
    result = client.run(
        program(
            """
            import json
            fields = dict(
                line.split(":\\t", 1)
                for line in open("/proc/self/status").read().splitlines()
                if ":\\t" in line
            )
            print(json.dumps({k: fields[k] for k in
                ("Seccomp", "NoNewPrivs", "CapEff", "CapPrm", "CapInh", "CapBnd", "CapAmb")}))
            """
        )
    )
    status = report(result)
    assert status["Seccomp"] == "2"
    assert status["NoNewPrivs"] == "1"
    for cap in ("CapEff", "CapPrm", "CapInh", "CapBnd", "CapAmb"):
        assert status[cap] == "0000000000000000", (cap, status[cap])
    invariants.check(result, JobStatus.SUCCEEDED)


def test_box_runs_as_uid_1000_inside_and_a_reserved_uid_outside(client, invariants):
    job = client.submit(
        program(
            """
            import os, time
            print(os.getuid(), os.geteuid(), os.getgid(), flush=True)
            time.sleep(1)
            """
        ),
        timeout=20,
    )
    wait_for_program()
    tree = _descendants(os.getpid())  # bwrap, the agent, the program
    running = box_processes()  # while the program sleeps: afterwards nothing may remain
    result = job.wait(30)
    assert result.stdout == "1000 1000 1000\n"
    assert len(tree) >= 3, tree
    for pid, (name, ids) in tree.items():
        assert all(DEFAULT_BASE <= n < DEFAULT_BASE + DEFAULT_COUNT for n in ids), (pid, name, tree)
    assert running, "the box's processes ran under no reserved uid"
    invariants.check(result, JobStatus.SUCCEEDED)


def test_a_box_start_cut_short_at_any_point_leaves_nothing() -> None:
    """Cancelled while bwrap is still setting up (a timeout, a pool refill stopped by a
    client's close), a box leaves no process: bwrap's inner child waits for its parent, which
    a kill takes away, so it would otherwise wait outside any cgroup for ever."""
    import anyio

    from execbox.boxes.base import BoxSpec
    from execbox.boxes.local.box import LocalBackend
    from helpers import leftovers

    async def starts_cut_short() -> int:
        finished = 0
        async with LocalBackend() as backend:
            for delay in [0.0005 * 1.5**step for step in range(16)] * 2:
                with anyio.move_on_after(delay):
                    box = await backend.create(BoxSpec())
                    finished += 1
                    await box.destroy()
        return finished

    finished = anyio.run(starts_cut_short)
    assert finished < 32, "every start was quicker than its cut: nothing was cut short"
    deadline = time.monotonic() + 2.0
    while leftovers() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not leftovers(), f"left behind by starts cut short: {leftovers()}"
