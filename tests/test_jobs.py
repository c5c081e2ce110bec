"""The job API end to end, on real boxes: sync and async clients, submit/status/wait/kill."""

from __future__ import annotations

import io
import tarfile
import time

import anyio
import pytest

import execbox
from execbox import JobStatus, Limits, OutputEvent, StatusEvent


@pytest.fixture(scope="module")
def client(sdk_options):
    """Every test here runs embedded and against a server: one API, one behaviour."""
    with execbox.Client(**sdk_options) as c:
        yield c


def test_run_returns_everything(client, invariants):
    result = client.run(
        {"main.py": "import sys, os\nprint('out'); print('err', file=sys.stderr); sys.exit(3)"}
    )
    assert (result.stdout, result.stderr, result.exit_code) == ("out\n", "err\n", 3)
    assert result.created_at <= result.started_at <= result.finished_at
    assert result.usage.wall_seconds > 0
    assert result.usage.cpu_seconds > 0
    assert result.usage.peak_memory_bytes > 0
    assert result.duration == result.usage.wall_seconds
    assert not (result.stdout_truncated)
    assert not (result.stderr_truncated)
    invariants.check(result, JobStatus.FAILED)


def test_args_stdin_env_and_subdirectories(client):
    files = {
        "app/main.py": "import sys, os\nfrom helper import shout\n"
        "print(shout(sys.stdin.read()), sys.argv[1:], os.environ['GREETING'], os.getcwd())",
        "app/helper.py": "def shout(s): return s.upper()",
    }
    result = client.run(
        files, entrypoint="app/main.py", args=["a", "b c"], stdin="hi", env={"GREETING": "yo"}
    )
    assert result.stdout == "HI ['a', 'b c'] yo /workspace\n", result.stderr


def test_entrypoint_inference(client):
    assert client.run({"__main__.py": "print('dunder')"}).stdout == "dunder\n"
    assert client.run({"only.py": "print('only')", "data.txt": "x"}).stdout == "only\n"
    both = {"main.py": "print('main')", "other.py": "print('other')"}
    assert client.run(both).stdout == "main\n"


def test_files_from_a_directory_and_from_tar(client, tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("VALUE = 42\n")
    (tmp_path / "main.py").write_text("import pkg; print(pkg.VALUE)\n")
    assert client.run(str(tmp_path)).stdout == "42\n"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(tmp_path / "main.py", arcname="main.py")
        tar.add(tmp_path / "pkg", arcname="pkg")
    assert client.run(buffer.getvalue()).stdout == "42\n"


def test_pre_commands_run_in_order_and_a_failing_one_fails_the_job(client, invariants):
    ok = client.run(
        {"main.py": "print(open('made').read())"},
        pre_commands=["echo first > made", "echo second >> made"],
    )
    assert ok.status is JobStatus.SUCCEEDED
    assert ok.stdout == "first\nsecond\n\n"
    failed = client.run(
        {"main.py": "open('ran', 'w')"}, pre_commands=["echo before; echo oops >&2; exit 7"]
    )
    assert failed.exit_code == 7
    assert "before" in failed.stdout
    assert "oops" in failed.stderr
    assert "pre-command 1" in (failed.message or "")
    invariants.check(failed, JobStatus.FAILED, reason="pre_command_failed")


def test_submit_status_wait_and_find_again(client):
    job = client.submit({"main.py": "import time; time.sleep(0.5); print('done')"})
    assert job.id.startswith("job_")
    assert job.refresh() in (JobStatus.QUEUED, JobStatus.RUNNING)
    with pytest.raises(execbox.ExecboxTimeout):
        job.wait(timeout=0.05)
    again = client.job(job.id)
    assert again.id == job.id
    result = again.wait(timeout=30)
    assert result.stdout == "done\n"
    assert job.refresh() is JobStatus.SUCCEEDED
    assert job.id in [j.id for j in client.jobs()]
    with pytest.raises(execbox.JobNotFound):
        client.job("job_nope")


def test_output_bytes_arrive_exactly_as_written(client):
    """Every byte value, invalid UTF-8 included, in the result and in the streamed chunks."""
    code = "import sys; sys.stdout.buffer.write(bytes(range(256)) * 3); sys.stderr.write('é')"
    result = client.run({"main.py": code})
    assert result.stdout_bytes == bytes(range(256)) * 3
    assert result.stderr_bytes == "é".encode()
    job = client.submit({"main.py": code})
    chunks = [e.data for e in job.events() if isinstance(e, OutputEvent) and e.stream == "stdout"]
    assert b"".join(chunks) == bytes(range(256)) * 3


def test_kill_stops_the_whole_tree_at_once(client, invariants):
    code = (
        "import os, time\n"
        "for _ in range(3):\n"
        "    if os.fork() == 0:\n"
        "        time.sleep(600)\n"
        "print('started', flush=True)\n"
        "time.sleep(600)\n"
    )
    job = client.submit({"main.py": code})
    deadline = time.monotonic() + 10
    while job.refresh() is not JobStatus.RUNNING and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)
    started = time.monotonic()
    job.kill()
    result = job.wait(timeout=10)
    assert time.monotonic() - started < 2
    invariants.check(result, JobStatus.KILLED, reason="killed")


def test_events_stream_output_as_it_is_produced(client):
    code = "import time\nfor i in range(5):\n    print(i, flush=True)\n    time.sleep(0.2)\n"
    job = client.submit({"main.py": code})
    started = time.monotonic()
    first_chunk_at = None
    chunks = []
    final = None
    for event in job.events():
        if isinstance(event, OutputEvent):
            first_chunk_at = first_chunk_at or time.monotonic() - started
            chunks.append(event.data)
        elif isinstance(event, StatusEvent) and event.status.terminal:
            final = event.result
    ended_at = time.monotonic() - started
    assert b"".join(chunks) == b"0\n1\n2\n3\n4\n"
    assert first_chunk_at is not None
    assert first_chunk_at < ended_at - 0.5
    assert final is not None
    assert final.status is JobStatus.SUCCEEDED


def test_output_cap_keeps_the_first_bytes(client):
    result = client.run({"main.py": "print('a' * 5000)"}, limits=Limits(output="1K"))
    assert result.stdout_truncated
    assert len(result.stdout_bytes) == 1024
    assert result.status is JobStatus.SUCCEEDED


def test_async_client_runs_jobs_concurrently(sdk_options):
    async def main() -> list[str]:
        async with execbox.AsyncClient(**sdk_options) as client:
            jobs = [await client.submit({"main.py": f"print({i})"}) for i in range(4)]
            results = [await job.wait(timeout=60) for job in jobs]
            streamed = []
            job = await client.submit({"main.py": "print('s')"})
            async for event in job.events():
                if isinstance(event, OutputEvent):
                    streamed.append(event.data)
            assert b"".join(streamed) == b"s\n"  # chunk boundaries are the pipe's
            return [r.stdout for r in results]

    assert anyio.run(main) == ["0\n", "1\n", "2\n", "3\n"]


def test_async_client_must_be_opened(sdk_options):
    async def main() -> None:
        client = execbox.AsyncClient(**sdk_options)
        with pytest.raises(execbox.ExecboxError, match="async with"):
            await client.run({"main.py": "print(1)"})

    anyio.run(main)


def test_sync_client_works_without_a_with_block(sdk_options):
    client = execbox.Client(**sdk_options)
    try:
        assert client.run({"main.py": "print('lazy')"}).stdout == "lazy\n"
    finally:
        client.close()


def test_warm_pool_serves_each_box_once(pooled_client):
    code = "import os; open('/workspace/mark', 'x'); print(sorted(os.listdir('/workspace')))"
    for _ in range(4):
        result = pooled_client.run({"main.py": code})
        assert result.stdout == "['main.py', 'mark']\n", result.stderr


def test_network_is_off_by_default_and_on_when_asked(client):
    code = (
        "import urllib.request\n"
        "try:\n"
        "    urllib.request.urlopen('https://pypi.org/simple/six/', timeout=10).read(1)\n"
        "    print('reached')\n"
        "except OSError as exc:\n"
        "    print('offline', type(exc).__name__)\n"
    )
    assert client.run({"main.py": code}).stdout.startswith("offline")
    assert client.run({"main.py": code}, network=True).stdout == "reached\n"
