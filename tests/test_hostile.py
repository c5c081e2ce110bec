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
from execbox.boxes.local.uids import DEFAULT_BASE, DEFAULT_COUNT
from execbox.models import JobStatus
from helpers import box_processes

MIB = 1 << 20


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
        program(
            """
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
        ),
        limits=execbox.Limits(pids=32),
        timeout=5,
    )
    assert "fork failed" in result.stdout, (result.status, result.stdout, result.stderr[-2000:])
    assert result.stdout.endswith(": BlockingIOError EAGAIN\n"), result.stdout
    assert result.exit_code == 3
    assert result.duration < 5
    invariants.check(result, JobStatus.FAILED, reason="pids_limit")


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
    invariants.check(result, JobStatus.FAILED)


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
    assert "\ufffd" in result.stdout and result.stdout.endswith(" ok")
    assert "\ufffd" in result.stderr and result.stderr.endswith(" err")
    assert not result.stdout_truncated and not result.stderr_truncated
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
    assert seen["PATH"] and seen["HOME"] and seen["LANG"]
    host_only = set(os.environ) - {"PATH", "HOME", "LANG", "LC_ALL", "USER", "TMPDIR"}
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


@pytest.mark.parametrize("target", ["/usr/x", "/etc/passwd", "/opt/execbox/agent.py", "/x"])
def test_writes_outside_the_workspace_fail(client, invariants, target):
    host = Path(target)
    before = host.stat() if host.exists() else None
    agent_before = RUNTIME_AGENT.read_bytes()
    scratch = f"/tmp/execbox-hostile-{os.urandom(6).hex()}"
    result = client.run(
        program(
            """
            import errno, json, sys
            target, scratch = sys.argv[1:]
            seen = {}
            try:
                with open(target, "w") as f:
                    f.write("owned\\n")
                seen["outside"] = "written"
            except OSError as exc:
                seen["outside"] = errno.errorcode.get(exc.errno, exc.errno)
            with open(scratch, "w") as f:
                f.write("fine")
            with open("/workspace/out.txt", "w") as f:
                f.write("fine")
            seen["tmp"] = open(scratch).read()
            seen["workspace"] = open("out.txt").read()
            print(json.dumps(seen))
            """
        ),
        args=[target, scratch],
    )
    seen = report(result)
    assert seen["outside"] in ("EROFS", "EACCES"), seen
    assert seen["tmp"] == seen["workspace"] == "fine"
    if before is None:
        assert not host.exists(), f"{target} appeared on the host"
    else:
        after = host.stat()
        assert (after.st_mtime_ns, after.st_size) == (before.st_mtime_ns, before.st_size)
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


KERNEL_PROBES = {
    "ptrace_traceme": "rc = libc.ptrace(0, 0, None, None)",
    "ptrace_attach_init": "rc = libc.ptrace(16, 1, None, None)",
    "unshare_user": "rc = libc.unshare(0x10000000)",
    "unshare_net": "rc = libc.unshare(0x40000000)",
    "mount_tmpfs": 'rc = libc.mount(b"none", b"/tmp", b"tmpfs", 0, None)',
    "io_uring_setup": "rc = libc.syscall(425, 8, ctypes.create_string_buffer(120))",
    "bpf": "rc = libc.syscall(321, 0, None, 0)",
    "keyctl": "rc = libc.syscall(250, 0, 0, 0, 0, 0)",
}


@pytest.mark.parametrize("name", sorted(KERNEL_PROBES))
def test_kernel_surface_is_denied(client, invariants, name):
    result = client.run(
        program(
            f"""
            import ctypes, errno
            libc = ctypes.CDLL(None, use_errno=True)
            libc.syscall.restype = ctypes.c_long
            {KERNEL_PROBES[name]}
            print(rc, errno.errorcode.get(ctypes.get_errno(), ctypes.get_errno()))
            """
        )
    )
    assert result.stdout == "-1 EPERM\n", (result.stdout, result.stderr[-2000:])
    invariants.check(result, JobStatus.SUCCEEDED)


@pytest.mark.parametrize(
    ("family", "kind"),
    [
        ("AF_PACKET", "SOCK_RAW"),
        ("AF_PACKET", "SOCK_DGRAM"),
        ("AF_VSOCK", "SOCK_STREAM"),
        ("AF_INET", "SOCK_RAW"),
    ],
)
def test_dangerous_socket_families_are_denied(client, invariants, family, kind):
    result = client.run(
        program(
            f"""
            import errno, socket
            try:
                socket.socket(socket.{family}, socket.{kind})
                print("opened")
            except OSError as exc:
                print(type(exc).__name__, errno.errorcode.get(exc.errno, exc.errno))
            """
        )
    )
    name, code = result.stdout.split()
    assert name in ("OSError", "PermissionError"), result.stdout
    assert code in ("EAFNOSUPPORT", "EPERM"), result.stdout
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


def _descendants(root: int) -> dict[int, str]:
    """Host pids below ``root`` and the Uid line of their status."""
    parents: dict[int, int] = {}
    uids: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        parents[int(entry.name)] = int(fields["PPid"])
        uids[int(entry.name)] = fields["Uid"].strip() + " / " + fields["Gid"].strip()
    found: dict[int, str] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in found:
                found[pid] = uids[pid]
                frontier.append(pid)
    return found


def test_box_runs_as_uid_1000_inside_and_a_reserved_uid_outside(client, invariants):
    job = client.submit(
        program(
            """
            import os, time
            print(os.getuid(), os.geteuid(), os.getgid(), flush=True)
            time.sleep(2)
            """
        ),
        timeout=20,
    )
    deadline = time.monotonic() + 10
    tree: dict[int, str] = {}
    while time.monotonic() < deadline:
        tree = _descendants(os.getpid())
        if len(tree) >= 3 and box_processes():  # bwrap, the agent, the program
            break
        time.sleep(0.05)
    result = job.wait(30)
    assert result.stdout == "1000 1000 1000\n"
    assert len(tree) >= 3, tree
    for pid, ids in tree.items():
        numbers = {int(n) for n in ids.replace("/", " ").split()}
        assert all(DEFAULT_BASE <= n < DEFAULT_BASE + DEFAULT_COUNT for n in numbers), (pid, ids)
    invariants.check(result, JobStatus.SUCCEEDED)
