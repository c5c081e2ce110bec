"""The `execbox` command against a real server (jobs, sessions, run --url) and `execbox repl`,
embedded and remote, driven through pipes and signals as a terminal would drive them."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import execbox
from execbox.cli.main import EXIT_ERROR
from server_support import ServerProcess

ROOT = Path(__file__).resolve().parent.parent
EXECBOX = str(Path(sys.executable).parent / "execbox")


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EXECBOX, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def server_env(sdk_server: ServerProcess) -> dict[str, str]:
    return {"EXECBOX_URL": sdk_server.base, "EXECBOX_API_KEY": sdk_server.key}


@pytest.fixture
def sdk(sdk_server: ServerProcess) -> Iterator[execbox.Client]:
    with execbox.Client(sdk_server.base, api_key=sdk_server.key) as client:
        yield client


def test_run_with_url_streams_and_records(sdk_server: ServerProcess) -> None:
    done = cli("run", "--url", sdk_server.base, "--api-key", sdk_server.key, "examples/hello.py")
    assert done.returncode == 0, done.stderr
    assert "Hello from a box" in done.stdout
    listed = cli("jobs", "list", "--url", sdk_server.base, "--api-key", sdk_server.key)
    assert listed.returncode == 0, listed.stderr
    header, newest = listed.stdout.splitlines()[:2]
    assert header.split() == ["ID", "STATUS", "CREATED", "EXIT", "SECONDS"]
    assert newest.split()[1] == "succeeded"


def test_run_exit_codes_are_the_same_through_a_server(server_env: dict[str, str]) -> None:
    timed_out = subprocess.run(
        [EXECBOX, "run", "--timeout", "1", "-"],
        input="import time; time.sleep(30)",
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **server_env},
    )
    assert timed_out.returncode == 124, timed_out.stderr
    assert timed_out.stderr.count("\n") == 1
    failing = subprocess.run(
        [EXECBOX, "run", "-"],
        input="import sys; print('bye'); sys.exit(3)",
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **server_env},
    )
    assert (failing.returncode, failing.stdout) == (3, "bye\n")


def test_jobs_show_logs_and_kill(sdk: execbox.Client, server_env: dict[str, str]) -> None:
    finished = sdk.submit(
        {"main.py": "import sys; print('out line'); print('err', file=sys.stderr)"}
    )
    finished.wait(timeout=60)
    shown = cli("jobs", "show", finished.id, env=server_env)
    assert shown.returncode == 0, shown.stderr
    assert f"id:         {finished.id}" in shown.stdout
    assert "status:     succeeded" in shown.stdout
    assert "queued" in shown.stdout  # the history
    assert "running" in shown.stdout
    logs = cli("jobs", "logs", finished.id, env=server_env)
    assert (logs.stdout, logs.stderr) == ("out line\n", "err\n")
    as_json = cli("jobs", "show", finished.id, "--json", env=server_env)
    assert '"exit_code": 0' in as_json.stdout

    running = sdk.submit(
        {
            "main.py": "import time\nfor i in range(600):\n    print(i, flush=True)\n    time.sleep(0.1)"
        }
    )
    follower = subprocess.Popen(
        [EXECBOX, "jobs", "logs", "-f", running.id],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **server_env},
    )
    assert follower.stdout is not None
    assert follower.stdout.readline() == "0\n"  # streamed while the job runs
    killed = cli("jobs", "kill", running.id, env=server_env)
    assert killed.returncode == 0, killed.stderr
    assert killed.stdout.strip() == f"{running.id} killed"
    follower.wait(30)
    assert follower.returncode == 0
    assert running.wait(timeout=10).status is execbox.JobStatus.KILLED
    assert "killed" in cli("jobs", "list", "--status", "killed", env=server_env).stdout


def test_sessions_list_and_kill(sdk: execbox.Client, server_env: dict[str, str]) -> None:
    with sdk.session() as session:
        session.execute("1")
        listed = cli("sessions", "list", env=server_env)
        assert listed.returncode == 0, listed.stderr
        row = next(line for line in listed.stdout.splitlines() if line.startswith(session.id))
        assert row.split()[1:3] == ["idle", "python3"]
        killed = cli("sessions", "kill", session.id, env=server_env)
        assert killed.stdout.strip() == f"{session.id} closed (closed)"
        with pytest.raises(execbox.SessionClosed):
            session.execute("1")
        assert session.id not in cli("sessions", "list", env=server_env).stdout
        assert session.id in cli("sessions", "list", "--all", env=server_env).stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["jobs", "show", "job_nope"], "no job 'job_nope'"),
        (["jobs", "logs", "job_nope"], "no job 'job_nope'"),
        (["jobs", "kill", "job_nope"], "no job 'job_nope'"),
        (["sessions", "kill", "ses_nope"], "no session 'ses_nope'"),
    ],
)
def test_unknown_ids_are_one_line(args: list[str], says: str, server_env: dict[str, str]) -> None:
    done = cli(*args, env=server_env)
    assert done.returncode == EXIT_ERROR
    assert done.stderr == f"execbox: {says}\n"


def test_missing_server_or_bad_key_is_one_line(sdk_server: ServerProcess) -> None:
    without = cli("jobs", "list", env={"EXECBOX_URL": ""})
    assert without.returncode == EXIT_ERROR
    assert without.stderr.startswith("execbox: this command reads a server's records")
    assert without.stderr.count("\n") == 1
    bad = cli("sessions", "list", "--url", sdk_server.base, "--api-key", "ebx_wrong")
    assert bad.returncode == EXIT_ERROR
    assert bad.stderr == "execbox: malformed API key\n"


# -- the REPL -----------------------------------------------------------------------------------


class Terminal:
    """`execbox repl` on pipes: lines in, output lines collected by a reader thread."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, cwd: Path) -> None:
        self.process = subprocess.Popen(
            [EXECBOX, "repl", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=cwd,
            env={**os.environ, **(env or {})},
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def send(self, text: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(text)
        self.process.stdin.flush()

    def expect(self, fragment: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                continue
            self.seen.append(line)
            if fragment in line:
                return line
        raise AssertionError(f"{fragment!r} not seen within {timeout} s: {self.seen[-20:]}")

    def finish(self) -> int:
        assert self.process.stdin is not None
        self.process.stdin.close()
        return self.process.wait(60)


@pytest.mark.parametrize("where", ["embedded", "remote"])
def test_repl_streams_answers_input_saves_images_and_interrupts(
    where: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    env = {"EXECBOX_URL": ""}
    if where == "remote":
        env = request.getfixturevalue("server_env")
    terminal = Terminal("--images", "pictures", env=env, cwd=tmp_path)
    try:
        terminal.expect("Ctrl-C interrupts a cell")
        terminal.send("total = 6 * 7\nfor i in range(2):\n    print('line', i)\n\n")
        terminal.expect("line 1")
        terminal.send("total\n")
        terminal.expect("Out[3]: 42")
        terminal.send("name = input('who? ')\nada\nprint('hello', name)\n")
        terminal.expect("hello ada")
        terminal.send("import matplotlib.pyplot as plt\nplt.plot([1, 3, 2]); plt.show()\n")
        saved = terminal.expect("[image saved: ").split("[image saved: ")[1].rstrip("]\n")
        assert (tmp_path / saved).read_bytes().startswith(b"\x89PNG")
        terminal.send("import time\nprint('sleeping', flush=True); time.sleep(60)\n")
        terminal.expect("sleeping")
        started = time.monotonic()
        terminal.process.send_signal(signal.SIGINT)
        terminal.expect("KeyboardInterrupt")
        assert time.monotonic() - started < 10
        terminal.send("print('still', total)\n1/0\n")
        terminal.expect("still 42")
        terminal.expect("ZeroDivisionError")
        assert terminal.finish() == 0
    finally:
        if terminal.process.poll() is None:
            terminal.process.kill()
            terminal.process.wait(10)
