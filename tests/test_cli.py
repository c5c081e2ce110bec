"""The `execbox` command, run as a user would run it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from execbox.cli.main import EXIT_ERROR, EXIT_MEMORY, EXIT_TIMEOUT

ROOT = Path(__file__).resolve().parent.parent
EXECBOX = str(Path(sys.executable).parent / "execbox")


def execbox(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [EXECBOX, *args], input=stdin, capture_output=True, timeout=120, cwd=ROOT, env=os.environ
    )


def test_quickstart_example_runs():
    done = execbox("run", "examples/hello.py")
    assert done.returncode == 0, done.stderr
    assert b"Hello from a box" in done.stdout
    assert b"step 2" in done.stdout


def test_exit_code_args_env_and_pre_commands_pass_through(tmp_path):
    program = tmp_path / "prog.py"
    program.write_text(
        "import os, sys\nprint(open('pre').read().strip(), os.environ['K'], sys.argv[1:])\nsys.exit(5)\n"
    )
    done = execbox(
        "run", "--env", "K=v", "--pre", "echo made > pre", str(program), "--", "x", "--y"
    )
    assert done.returncode == 5, done.stderr
    assert done.stdout == b"made v ['x', '--y']\n"


def test_program_from_stdin_and_stdin_file(tmp_path):
    data = tmp_path / "in.txt"
    data.write_text("hello")
    program = tmp_path / "p.py"
    program.write_text("import sys; print(sys.stdin.read()[::-1])")
    assert execbox("run", "--stdin", str(data), str(program)).stdout == b"olleh\n"
    assert execbox("run", "-", stdin=b"print(6 * 7)").stdout == b"42\n"


@pytest.mark.parametrize(
    ("code", "options", "exit_code", "says"),
    [
        (b"while True: pass", ["--timeout", "0.5"], EXIT_TIMEOUT, b"timeout"),
        (
            b"x = [bytearray(1 << 20) for _ in range(4096)]",
            ["--memory", "64M"],
            EXIT_MEMORY,
            b"memory",
        ),
    ],
)
def test_limits_print_one_line_and_exit_with_the_documented_code(code, options, exit_code, says):
    done = execbox("run", *options, "-", stdin=code)
    assert done.returncode == exit_code
    assert done.stderr.count(b"\n") == 1, done.stderr
    assert says in done.stderr.lower()


@pytest.mark.parametrize(
    "args",
    [
        ["run", "does-not-exist.py"],
        ["run", "--memory", "-1", "examples/hello.py"],
        ["run", "--cpus", "0", "examples/hello.py"],
        ["run", "--env", "NOEQUALS", "examples/hello.py"],
        ["run", "--entrypoint", "missing.py", "examples"],
        ["run", "--nonsense", "examples/hello.py"],
        ["frobnicate"],
    ],
)
def test_bad_input_is_one_line_on_stderr(args):
    done = execbox(*args)
    assert done.returncode == EXIT_ERROR, done
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("execbox: ")
    assert b"Traceback" not in done.stderr


def test_doctor_lists_every_protection():
    done = execbox("doctor")
    assert done.returncode == 0
    text = done.stdout.decode()
    for name in (
        "user namespace",
        "pid namespace",
        "net namespace",
        "seccomp",
        "cgroup memory",
        "cgroup pids",
        "cgroup cpu",
        "disk cap",
        "unprivileged uid",
    ):
        assert name in text
    assert "active" in text
    assert "boxes can run here" in text
