"""python-executor's client API on execbox, embedded: every metadata field proven by what the
program observes (real boxes), files in every accepted form, async runs, kill, typed errors."""

from __future__ import annotations

import io
import secrets
import tarfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

import execbox
from execbox.compat.python_executor import (
    ExecutionConfig,
    ExecutionResult,
    ExecutionStatus,
    Metadata,
    PythonExecutorClient,
    UnsupportedOption,
)
from execbox.compat.python_executor.mapping import box_python_version, cpus_of, to_wire
from helpers import leftovers

CPU_RATIO = """\
import time
wall, cpu = time.monotonic(), time.process_time()
while time.monotonic() - wall < 1.5:
    sum(range(1000))
print(round((time.process_time() - cpu) / (time.monotonic() - wall), 3))
"""

HOG = """\
import sys
chunks = []
for megabytes in range(1, 401):
    chunks.append(bytearray(1 << 20))
    if megabytes % 50 == 0:
        print(megabytes, flush=True)
print("survived")
"""

FILL = """\
import errno, sys
try:
    with open("/workspace/fill.bin", "wb") as out:
        for _ in range(32):
            out.write(b"x" * (1 << 20))
            out.flush()
except OSError as exc:
    print(errno.errorcode[exc.errno])
    sys.exit(3)
print("wrote 32 MiB")
"""

ONLINE = """\
import urllib.request
try:
    urllib.request.urlopen("https://pypi.org/simple/six/", timeout=10).read(1)
    print("reached")
except OSError as exc:
    print("offline", type(exc).__name__)
"""


@pytest.fixture(scope="module")
def pe(client: execbox.Client) -> Iterator[PythonExecutorClient]:
    """The compat client on the suite's embedded client (the URL is python-executor's)."""
    with PythonExecutorClient("http://pyexec.cluster:9999/", client=client) as compat:
        yield compat


def processes_with(marker: str) -> list[int]:
    """Host pids whose command line holds ``marker`` (a box's program has it in its name)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def wait_for(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout} s")


def tar_of(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def completed(result: ExecutionResult) -> ExecutionResult:
    assert result.status is ExecutionStatus.COMPLETED, result
    assert result.exit_code == 0, result
    return result


# -- the seed's examples and the result object ------------------------------------------------


def test_seed_examples_and_result_fields(pe: PythonExecutorClient) -> None:
    result = pe.execute_sync(files={"main.py": "print('Hello, World!')"}, entrypoint="main.py")
    completed(result)
    assert (result.stdout, result.stderr, result.error) == ("Hello, World!\n", "", None)
    assert str(result.status) == "completed"
    assert isinstance(result.started_at, datetime)
    assert isinstance(result.finished_at, datetime)
    assert result.started_at.tzinfo is None  # naive UTC, as python-executor's client parses
    assert result.started_at <= result.finished_at
    assert isinstance(result.duration_ms, int)
    assert result.execution_id.startswith("job_")
    multi = pe.execute_sync(
        files={
            "main.py": "from helper import greet; greet()",
            "helper.py": "def greet(): print('Hello from helper!')",
        },
        entrypoint="main.py",
    )
    assert completed(multi).stdout == "Hello from helper!\n"
    failing = pe.execute_sync(files={"main.py": "import sys; print('x'); sys.exit(4)"})
    assert (failing.status, failing.exit_code, failing.stdout) == ("completed", 4, "x\n")
    # The wire form of our routes reads back into the same object.
    assert ExecutionResult.from_dict(to_wire(failing)) == failing
    assert to_wire(failing)["started_at"].endswith("Z")


def test_files_as_path_string_path_and_tar(pe: PythonExecutorClient, tmp_path: Path) -> None:
    project = tmp_path / "myproject"
    (project / "pkg").mkdir(parents=True)
    (project / "main.py").write_text("from pkg.tool import name; print(name())\n")
    (project / "pkg" / "__init__.py").write_text("")
    (project / "pkg" / "tool.py").write_text("def name(): return 'from a directory'\n")
    assert completed(pe.execute_sync(files=project)).stdout == "from a directory\n"
    assert completed(pe.execute_sync(files=str(project))).stdout == "from a directory\n"
    single = tmp_path / "solo.py"
    single.write_text("print('one file')\n")
    assert completed(pe.execute_sync(files=str(single))).stdout == "one file\n"
    assert completed(pe.execute_sync(files=single)).stdout == "one file\n"
    archive = tar_of({"app/__main__.py": "print('no')", "run.py": "print('from tar')"})
    result = pe.execute_sync(tar_data=archive, entrypoint="run.py")
    assert completed(result).stdout == "from tar\n"
    # Without an entrypoint: main.py, else __main__.py, else the first .py, as the peer picks.
    picked = pe.execute_sync(tar_data=tar_of({"b.py": "print('b')", "__main__.py": "print('m')"}))
    assert completed(picked).stdout == "m\n"
    first = pe.execute_sync(files={"z.py": "print('z')", "a.py": "print('a')"})
    assert completed(first).stdout == "z\n"
    # tar_data wins over files, as documented.
    both = pe.execute_sync(files={"main.py": "print('files')"}, tar_data=tar_of({"main.py": ""}))
    assert completed(both).stdout == ""


def test_metadata_object_env_args_and_stdin(pe: PythonExecutorClient) -> None:
    code = "import os, sys\nprint(os.environ['GREETING'], sys.argv[1:], sys.stdin.read()[::-1])\n"
    metadata = Metadata(
        entrypoint="prog.py",
        stdin="abc",
        env_vars=["GREETING=hello=world"],
        script_args=["--verbose", "input file.txt"],
        config=ExecutionConfig(timeout_seconds=30, memory_mb=256),
    )
    result = pe.execute_sync(files={"prog.py": code}, metadata=metadata)
    assert completed(result).stdout == "hello=world ['--verbose', 'input file.txt'] cba\n"
    no_stdin = pe.execute_sync(files={"main.py": "import sys; print(repr(sys.stdin.read()))"})
    assert completed(no_stdin).stdout == "''\n"


# -- every limit, by what the program observes ------------------------------------------------


def test_memory_mb_stops_a_hog(pe: PythonExecutorClient) -> None:
    hog = pe.execute_sync(files={"main.py": HOG}, memory_mb=64)
    assert hog.status is ExecutionStatus.COMPLETED, hog
    assert hog.exit_code == 137, hog
    assert "survived" not in (hog.stdout or "")
    assert "memory" in (hog.error or ""), hog
    roomy = pe.execute_sync(files={"main.py": HOG.replace("401", "101")}, memory_mb=512)
    assert completed(roomy).stdout.endswith("survived\n")


def test_disk_mb_refuses_a_fill(pe: PythonExecutorClient) -> None:
    small = pe.execute_sync(files={"main.py": FILL}, disk_mb=8)
    assert (small.status, small.exit_code, small.stdout) == ("completed", 3, "ENOSPC\n"), small
    large = pe.execute_sync(files={"main.py": FILL}, disk_mb=64)
    assert completed(large).stdout == "wrote 32 MiB\n"


def test_cpu_shares_is_a_quota(pe: PythonExecutorClient) -> None:
    assert cpus_of(1024) == 1.0
    assert cpus_of(512) == 0.5
    quarter = completed(pe.execute_sync(files={"main.py": CPU_RATIO}, cpu_shares=256))
    ratio = float(quarter.stdout or "nan")
    assert 0.05 < ratio <= 0.4, f"a quarter CPU quota let the loop use {ratio} of a CPU"
    whole = completed(pe.execute_sync(files={"main.py": CPU_RATIO}, cpu_shares=2048))
    assert float(whole.stdout or "nan") > ratio, (whole.stdout, ratio)


def test_network_disabled_by_default_and_enabled_on_request(pe: PythonExecutorClient) -> None:
    offline = completed(pe.execute_sync(files={"main.py": ONLINE}))
    assert (offline.stdout or "").startswith("offline"), offline
    explicit = completed(pe.execute_sync(files={"main.py": ONLINE}, network_disabled=True))
    assert (explicit.stdout or "").startswith("offline"), explicit
    online = completed(pe.execute_sync(files={"main.py": ONLINE}, network_disabled=False))
    assert online.stdout == "reached\n", online


def test_timeout_seconds_stops_the_run(pe: PythonExecutorClient) -> None:
    started = time.monotonic()
    result = pe.execute_sync(
        files={"main.py": "import time\nprint('start', flush=True)\ntime.sleep(60)"},
        timeout_seconds=1,
    )
    assert time.monotonic() - started < 30
    assert result.status is ExecutionStatus.FAILED, result
    assert "timeout" in (result.error or ""), result
    assert result.stdout == "start\n"
    assert result.exit_code is None


def test_pre_commands_run_first_and_a_failing_one_stops_the_run(pe: PythonExecutorClient) -> None:
    code = "print(open('made.txt').read().split())"
    result = pe.execute_sync(
        files={"main.py": code},
        pre_commands=["echo first > made.txt", "echo second >> made.txt"],
    )
    assert completed(result).stdout == "['first', 'second']\n"
    failed = pe.execute_sync(
        files={"main.py": "print('main ran')"}, pre_commands=["echo before", "exit 3"]
    )
    assert (failed.status, failed.exit_code) == ("completed", 3), failed
    assert failed.stdout == "before\n"
    assert "pre-command 2" in (failed.error or ""), failed


def test_requirements_txt_installed_with_the_network_off(pe: PythonExecutorClient) -> None:
    code = "import six\nprint(six.__name__, six.PY3)\n"
    result = pe.execute_sync(files={"main.py": code}, requirements_txt="# deps\nsix>=1.16\n")
    assert completed(result).stdout == "six True\n", result
    without = pe.execute_sync(files={"main.py": code})
    assert without.exit_code == 1
    assert "ModuleNotFoundError" in (without.stderr or "")


def test_docker_image_only_the_boxes_python(pe: PythonExecutorClient) -> None:
    major, minor = box_python_version()
    for image in (f"python:{major}.{minor}-slim", "python", f"python:{major}", "python:latest"):
        result = pe.execute_sync(files={"main.py": "print(1)"}, docker_image=image)
        assert completed(result).stdout == "1\n", image
    for image in ("python:2.7-slim", f"python:{major}.{minor + 1}", "ubuntu:22.04", "my/img"):
        with pytest.raises(UnsupportedOption, match="docker_image"):
            pe.execute_sync(files={"main.py": "print(1)"}, docker_image=image)


# -- async, wait, kill ------------------------------------------------------------------------


def test_async_get_execution_and_wait_for_completion(pe: PythonExecutorClient) -> None:
    code = "import time\ntime.sleep(1)\nprint('done')"
    exec_id = pe.execute_async(files={"main.py": code})
    assert isinstance(exec_id, str)
    early = pe.get_execution(exec_id)
    assert early.status in (ExecutionStatus.PENDING, ExecutionStatus.RUNNING), early
    assert early.exit_code is None
    result = pe.wait_for_completion(exec_id, poll_interval=1.0, max_wait=60)
    assert completed(result).stdout == "done\n"
    assert pe.get_execution(exec_id) == result
    slow = pe.execute_async(files={"main.py": "import time; time.sleep(3600)"})
    with pytest.raises(TimeoutError):
        pe.wait_for_completion(slow, max_wait=0.5)
    pe.kill(slow)
    assert pe.get_execution(slow).status is ExecutionStatus.KILLED


def test_kill_stops_a_busy_loop_and_leaves_no_process(pe: PythonExecutorClient) -> None:
    marker = f"spin_{secrets.token_hex(6)}"
    exec_id = pe.execute_async(files={f"{marker}.py": "while True:\n    pass\n"})
    wait_for(lambda: processes_with(marker), 30, "the loop to start")
    assert pe.get_execution(exec_id).status is ExecutionStatus.RUNNING
    started = time.monotonic()
    pe.kill(exec_id)
    assert time.monotonic() - started < 10
    result = pe.get_execution(exec_id)
    assert result.status is ExecutionStatus.KILLED, result
    assert result.exit_code is None
    assert "killed" in (result.error or "")
    wait_for(lambda: not processes_with(marker), 5, "the loop's process to be gone")
    wait_for(lambda: not leftovers(), 5, f"no box left: {leftovers()}")
    pe.kill(exec_id)  # a finished run is left as it is
    assert pe.get_execution(exec_id).status is ExecutionStatus.KILLED


def test_client_timeout_bounds_execute_sync(client: execbox.Client) -> None:
    short = PythonExecutorClient("http://localhost:8080", timeout=1, client=client)
    with pytest.raises(TimeoutError):
        short.execute_sync(files={"main.py": "import time; time.sleep(30)"})
    (job,) = [job for job in client.jobs() if not job.status.terminal]
    short.kill(job.id)
    assert short.get_execution(job.id).status is ExecutionStatus.KILLED


def test_own_engine_and_close() -> None:
    with PythonExecutorClient("http://pyexec.cluster:9999/") as own:
        assert own.base_url == "http://pyexec.cluster:9999"
        assert own.timeout == 300
        assert completed(own.execute_sync(files={"main.py": "print(2)"})).stdout == "2\n"
    with pytest.raises(execbox.InvalidState, match="closed"):
        own.execute_sync(files={"main.py": "print(2)"})


# -- eval -------------------------------------------------------------------------------------


def test_eval_returns_the_last_expression(pe: PythonExecutorClient) -> None:
    assert pe.eval("2 + 2").result == "4"
    summed = pe.eval("x = 5\ny = 10\nx + y")
    assert (summed.result, summed.stdout) == ("15", "")
    assert pe.eval("'hello'").result == "'hello'"
    printed = pe.eval("print('hello')")
    assert (printed.stdout, printed.result) == ("hello\n", None)
    assert pe.eval("x = 5").result is None
    files = [
        {"name": "calc.py", "content": "from lib import twice\ntwice(21)"},
        {"name": "lib.py", "content": "def twice(n): return 2 * n"},
    ]
    assert pe.eval("", files=files).result == "42"
    typed = pe.eval("import sys\nsys.stdin.read().upper()", stdin="abc")
    assert typed.result == "'ABC'"
    plain = pe.eval("1 + 1", eval_last_expr=False)
    assert (plain.result, plain.stdout) == (None, "")
    failed = pe.eval("print(undefined)")
    assert failed.exit_code == 1
    assert "NameError" in (failed.stderr or "")
    with pytest.raises(UnsupportedOption, match="python_version"):
        pe.eval("1", python_version="2.7")


# -- errors -----------------------------------------------------------------------------------


def test_bad_input_raises_typed_errors_before_anything_runs(pe: PythonExecutorClient) -> None:
    before = len(pe._execbox().jobs())
    main = {"main.py": "print(1)"}
    cases: list[tuple[type[BaseException], str, dict[str, object]]] = [
        (ValueError, "files or tar_data", {}),
        (execbox.NoEntrypoint, "not among the files", {"files": main, "entrypoint": "nope.py"}),
        (execbox.NoEntrypoint, "no Python files", {"files": {"data.txt": "x"}}),
        (execbox.InvalidFiles, "neither a file", {"files": "/no/such/dir"}),
        (execbox.InvalidFiles, "tar", {"tar_data": b"not a tar archive at all"}),
        (execbox.InvalidLimits, "memory_mb", {"files": main, "memory_mb": -5}),
        (execbox.InvalidLimits, "memory", {"files": main, "memory_mb": 1}),
        (execbox.InvalidLimits, "cpu_shares", {"files": main, "cpu_shares": 5}),
        (execbox.InvalidLimits, "timeout_seconds", {"files": main, "timeout_seconds": 1.5}),
        (execbox.InvalidSpec, "network_disabled", {"files": main, "network_disabled": "no"}),
        (execbox.InvalidSpec, "KEY=value", {"files": main, "env_vars": ["NOEQUALS"]}),
        (execbox.InvalidSpec, "pre_commands", {"files": main, "pre_commands": "ls"}),
        (execbox.InvalidSpec, "only names", {"files": main, "requirements_txt": "-r x.txt"}),
        (TypeError, "unexpected keyword", {"files": main, "gpus": 1}),
    ]
    for kind, message, arguments in cases:
        with pytest.raises(kind, match=message):
            pe.execute_sync(**arguments)  # type: ignore[arg-type]
    with pytest.raises(execbox.InvalidSpec, match="not both"):
        pe.execute_sync(files=main, metadata=Metadata(entrypoint="main.py"), stdin="x")
    assert len(pe._execbox().jobs()) == before  # nothing was started


def test_unknown_execution_ids_are_not_found(pe: PythonExecutorClient) -> None:
    for call in (pe.get_execution, pe.kill, pe.wait_for_completion):
        with pytest.raises(execbox.JobNotFound):
            call("exe_550e8400-e29b-41d4-a716-446655440000")
    with pytest.raises(LookupError):
        pe.get_execution("job_0123456789abcdef01234567")
    with pytest.raises(execbox.InvalidSpec, match="poll_interval"):
        pe.wait_for_completion("job_x", poll_interval=0)
