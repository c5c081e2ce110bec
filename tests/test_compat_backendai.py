"""execbox.compat.backendai against real boxes and kernels, embedded and through a server.

Backend.AI's run loop for real: query state kept, ``continued`` slices that lose and repeat
nothing, ``waiting-input`` answered (``is_password`` for getpass), batch upload + build + exec
(``*`` and explicit commands, a failing build skipping the exec), exit codes, stderr and media
records, ``stream_execute`` answering input, get-or-create by token, ``destroy`` ending the box,
a memory bomb ending its session (which a new get_or_create replaces), Lua, bad input refused.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from execbox.compat.backendai import (
    APIConfig,
    AsyncSession,
    BackendAPIError,
    BackendClientError,
    BackendError,
    Session,
)
from execbox.compat.backendai.func.session import ComputeSession
from execbox.compat.backendai.kernel import Kernel
from execbox.errors import ExecboxError
from server_support import ServerProcess, wait_until

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples" / "backendai").glob("*.py"))
SLICE = 0.3
"""The time slice of the tests' sessions: short, so that ``continued`` comes soon."""
BOUND = 120.0
"""Bound of every run loop and async test body: a hang fails the test, not the run."""
ANSI = re.compile(r"\x1b\[")


# -- helpers ----------------------------------------------------------------------------------


def drive(
    kern: Any,
    code: str,
    mode: str = "query",
    opts: dict[str, Any] | None = None,
    *,
    answers: tuple[str, ...] = (),
    continue_as: str = "continue",
) -> list[dict[str, Any]]:
    """The seed's run loop: every result up to ``finished``, answering inputs in order."""
    results: list[dict[str, Any]] = []
    pending = list(answers)
    run_id = None
    deadline = time.monotonic() + BOUND
    while True:
        assert time.monotonic() < deadline, f"no 'finished' within {BOUND} s: {results[-3:]}"
        result = kern.execute(run_id, code, mode=mode, opts=opts)
        opts = None
        results.append(result)
        run_id = result["runId"]
        if result["status"] == "finished":
            return results
        if result["status"] == "waiting-input":
            mode, code = "input", pending.pop(0)
        else:
            mode, code = continue_as, ""


def text(results: list[dict[str, Any]], kind: str = "stdout") -> str:
    return "".join(rec[1] for r in results for rec in r["console"] if rec[0] == kind)


def statuses(results: list[dict[str, Any]]) -> list[str]:
    return [r["status"] for r in results]


def run_async(body: Callable[[], Awaitable[Any]]) -> Any:
    async def bounded() -> Any:
        async with asyncio.timeout(BOUND):
            return await body()

    return asyncio.run(bounded())


def host_processes_with(marker: str) -> list[int]:
    """Host pids whose command line holds ``marker`` (boxes' processes are visible here)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


# -- fixtures: one client session per transport -----------------------------------------------


@pytest.fixture(scope="module", params=["embedded", "remote"])
def transport(request: pytest.FixtureRequest) -> Iterator[str]:
    """Embedded, or every execbox client made while it is active talks to a real server."""
    if request.param == "embedded":
        yield "embedded"
        return
    server: ServerProcess = request.getfixturevalue("sdk_server")
    saved = {name: os.environ.get(name) for name in ("EXECBOX_URL", "EXECBOX_API_KEY")}
    os.environ.update(EXECBOX_URL=server.base, EXECBOX_API_KEY=server.key)
    try:
        yield "remote"
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="module")
def session(transport: str) -> Iterator[Session]:
    with Session(flush_timeout=SLICE) as opened:
        yield opened


@pytest.fixture(scope="module")
def kern(session: Session) -> ComputeSession:
    return session.ComputeSession.get_or_create("cr.backend.ai/multiarch/python:3.9-ubuntu20.04")


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


# -- query mode -------------------------------------------------------------------------------


def test_query_keeps_state_and_reports_finished(kern: ComputeSession) -> None:
    first = drive(kern, "x = 6 * 7")
    assert statuses(first) == ["finished"]
    assert first[0]["exitCode"] == 0
    assert first[0]["console"] == []
    second = drive(kern, "print(x)")
    assert second[-1]["console"] == [["stdout", "42\n"]]
    assert second[-1]["runId"] != first[-1]["runId"]
    assert set(second[-1]) >= {"runId", "status", "exitCode", "options", "console"}


def test_a_long_cell_is_continued_until_finished_with_nothing_lost(kern: ComputeSession) -> None:
    code = "import time\nfor i in range(40):\n    print(i, flush=True)\n    time.sleep(0.05)"
    for spelling in ("continue", "continued"):
        results = drive(kern, code, continue_as=spelling)
        assert statuses(results)[-1] == "finished"
        assert "continued" in statuses(results)
        assert all(r["exitCode"] is None for r in results[:-1])
        assert results[-1]["exitCode"] == 0
        assert text(results) == "".join(f"{i}\n" for i in range(40))
        assert len({r["runId"] for r in results}) == 1


def test_consecutive_output_is_one_record_per_stream_in_order(kern: ComputeSession) -> None:
    code = (
        "import sys\nprint('a'); print('b', flush=True)\nprint('oops', file=sys.stderr, flush=True)\n"
        "print('c')"
    )
    results = drive(kern, code)
    console = [rec for r in results for rec in r["console"]]
    assert console == [["stdout", "a\nb\n"], ["stderr", "oops\n"], ["stdout", "c\n"]]


def test_an_exception_is_its_traceback_on_stderr_and_exit_code_1(kern: ComputeSession) -> None:
    results = drive(kern, "print('before')\n1 / 0")
    assert results[-1]["exitCode"] == 1
    assert text(results) == "before\n"
    stderr = text(results, "stderr")
    assert "ZeroDivisionError" in stderr
    assert "Traceback" in stderr
    assert not ANSI.search(stderr)


def test_input_waits_and_is_answered(kern: ComputeSession) -> None:
    code = (
        "name = input('name? ')\nimport getpass\nword = getpass.getpass()\nprint(name, len(word))"
    )
    results = drive(kern, code, answers=("Alice", "s3cret!"))
    assert statuses(results) == ["waiting-input", "waiting-input", "finished"]
    assert results[0]["options"] == {"is_password": False}
    assert results[0]["console"] == [["stdout", "name? "]]
    assert results[1]["options"] == {"is_password": True}
    assert results[1]["console"] == [["stdout", "Password: "]]
    assert results[2]["console"] == [["stdout", "Alice 7\n"]]
    assert results[2]["exitCode"] == 0


def test_input_or_continue_of_no_live_run_is_refused(kern: ComputeSession) -> None:
    done = drive(kern, "1")
    with pytest.raises(BackendAPIError) as caught:
        kern.execute(done[-1]["runId"], "", mode="continue")
    assert caught.value.status == 404
    assert "runId" in str(caught.value)
    long = kern.execute(None, "import time; time.sleep(2)", mode="query")
    assert long["status"] == "continued"
    with pytest.raises(BackendAPIError) as caught:
        kern.execute(long["runId"], "hello", mode="input")
    assert caught.value.status == 400
    assert "not waiting for input" in str(caught.value)
    with pytest.raises(BackendAPIError, match="still going"):
        kern.execute(long["runId"], "print(1)", mode="query")
    rest = []
    while not rest or rest[-1]["status"] != "finished":
        rest.append(kern.execute(long["runId"], "", mode="continue"))
        assert len(rest) < BOUND / SLICE
    assert rest[-1]["exitCode"] == 0


def test_runs_keep_their_own_output_in_the_order_they_were_asked(kern: ComputeSession) -> None:
    slow = kern.execute(
        None, "import time\nprint('slow 1', flush=True)\ntime.sleep(1.5)\nprint('slow 2')", "query"
    )
    quick = kern.execute(None, "print('quick')", mode="query")
    assert quick["status"] == "continued"
    assert quick["console"] == []
    slow_results = [slow]
    while slow_results[-1]["status"] != "finished":
        slow_results.append(kern.execute(slow["runId"], "", mode="continue"))
        assert len(slow_results) < BOUND / SLICE
    quick_results = [quick]
    while quick_results[-1]["status"] != "finished":
        quick_results.append(kern.execute(quick["runId"], "", mode="continue"))
        assert len(quick_results) < BOUND / SLICE
    assert text(slow_results) == "slow 1\nslow 2\n"
    assert text(quick_results) == "quick\n"


def test_interrupt_stops_a_running_query_with_130(kern: ComputeSession) -> None:
    first = kern.execute(None, "import time\nprint('going', flush=True)\ntime.sleep(60)", "query")
    assert first["status"] == "continued"
    kern.interrupt()
    results = [first]
    while results[-1]["status"] != "finished":
        results.append(kern.execute(first["runId"], "", mode="continue"))
        assert len(results) < 30 / SLICE
    assert results[-1]["exitCode"] == 130
    assert "going\n" in text(results)
    assert "KeyboardInterrupt" in text(results, "stderr")
    assert drive(kern, "print('still here')")[-1]["console"] == [["stdout", "still here\n"]]


# -- media ------------------------------------------------------------------------------------


def test_media_records_are_shaped_for_handle_media(kern: ComputeSession) -> None:
    code = (
        "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.show()\n"
        "from IPython.display import SVG, HTML, display\n"
        'display(SVG(\'<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8">'
        '<rect width="8" height="8"/></svg>\'))\n'
        "display(HTML('<b>bold</b>'))\n"
        "6 * 7"
    )
    results = drive(kern, code)
    records = [rec for r in results for rec in r["console"]]
    kinds = [rec[0] for rec in records]
    assert kinds == ["image/png", "image/svg+xml", "text/html", "stdout"], records
    png = records[0][1]
    assert png.startswith("data:image/png;base64,")
    assert base64.b64decode(png.split(",", 1)[1]).startswith(b"\x89PNG\r\n\x1a\n")
    assert records[1][1].lstrip().startswith("<svg")
    assert "<rect" in records[1][1]
    assert records[2][1] == "<b>bold</b>"
    assert records[3] == ["stdout", "42\n"]


# -- batch mode -------------------------------------------------------------------------------

SETUP_PY = """\
import sys
with open("version.py", "w") as module:
    module.write("VERSION = '1.0'\\n")
print("built by setup.py", *sys.argv[1:])
"""
MYCODE_PY = """\
import sys
from version import VERSION
print("mycode", VERSION, *sys.argv[1:])
"""


def test_batch_uploads_builds_and_execs(kern: ComputeSession, workdir: Path) -> None:
    (workdir / "mycode.py").write_text(MYCODE_PY)
    (workdir / "setup.py").write_text(SETUP_PY)
    kern.upload(["mycode.py", "setup.py"])
    opts = {"build": "*", "exec": "python mycode.py arg1 arg2"}
    results = drive(kern, "", "batch", opts)
    assert opts == {"build": "*", "exec": "python mycode.py arg1 arg2"}  # not consumed
    ends = [r for r in results if r["status"] != "continued"]
    assert [(r["status"], r["exitCode"]) for r in ends] == [("build-finished", 0), ("finished", 0)]
    assert text(results) == "built by setup.py develop\nmycode 1.0 arg1 arg2\n"


def test_batch_with_explicit_commands_and_the_default_exec(kern: ComputeSession) -> None:
    results = drive(
        kern,
        "",
        "batch",
        {"clean": "rm -f main.py", "build": "echo 'print(\"main ran\")' > main.py", "exec": "*"},
    )
    ends = [(r["status"], r["exitCode"]) for r in results if r["status"] != "continued"]
    assert ends == [("clean-finished", 0), ("build-finished", 0), ("finished", 0)]
    assert text(results) == "main ran\n"
    missing = drive(kern, "", "batch", {"build": "rm main.py", "exec": "*"})
    assert missing[-1]["exitCode"] == 127
    assert 'cannot find the main script ("main.py")' in text(missing, "stderr")


def test_a_failing_build_skips_the_exec_with_127(kern: ComputeSession) -> None:
    results = drive(kern, "", "batch", {"build": "echo broken >&2; exit 3", "exec": "touch ran"})
    ends = [(r["status"], r["exitCode"]) for r in results if r["status"] != "continued"]
    assert ends == [("build-finished", 3), ("finished", 127)]
    assert text(results, "stderr") == "broken\n"
    listing = json.loads(kern.list_files(".")["files"])
    assert "ran" not in {entry["filename"] for entry in listing}


def test_batch_exit_codes_and_streams(kern: ComputeSession) -> None:
    results = drive(kern, "", "batch", {"exec": "echo out; echo err >&2; exit 5"})
    assert [r["status"] for r in results][-2:] == ["build-finished", "finished"]
    assert results[-1]["exitCode"] == 5
    console = [rec for r in results for rec in r["console"]]
    assert console == [["stdout", "out\n"], ["stderr", "err\n"]]
    killed = drive(kern, "", "batch", {"exec": "python -c 'import os; os.kill(os.getpid(), 9)'"})
    assert killed[-1]["exitCode"] == 137


def test_batch_programs_ask_for_input_as_queries_do(kern: ComputeSession) -> None:
    program = (
        "import getpass\nname = input('name? ')\nword = getpass.getpass()\n"
        "print('hi', name, len(word))\nprint(input())"
    )
    kern.execute(None, "before = set(dir())", mode="query")
    results = drive(
        kern,
        "",
        "batch",
        {"build": f"cat > ask.py <<'END'\n{program}\nEND", "exec": "python ask.py"},
        answers=("Alice", "pw123", "last line"),
    )
    assert statuses(results) == [
        "build-finished",
        "waiting-input",
        "waiting-input",
        "waiting-input",
        "finished",
    ]
    assert [r["options"] for r in results[1:4]] == [
        {"is_password": False},
        {"is_password": True},
        {"is_password": False},
    ]
    assert text(results) == "name? Password: hi Alice 5\nlast line\n"
    assert results[-1]["exitCode"] == 0
    added = text(drive(kern, "print(sorted(n for n in set(dir()) - before if n[0] != '_'))"))
    assert added == "['before']\n"  # the helper leaves nothing in the user's namespace


def test_a_long_batch_streams_in_slices_and_interrupt_kills_its_processes(
    kern: ComputeSession,
) -> None:
    marker = f"bai-{secrets.token_hex(6)}"
    command = f"echo started; python -c 'import time; time.sleep(120)' {marker}"
    first = kern.execute(None, "", mode="batch", opts={"exec": command})
    results = [first]
    while "started" not in text(results):
        results.append(kern.execute(first["runId"], "", mode="continue"))
        assert len(results) < 60 / SLICE
    wait_until(lambda: host_processes_with(marker), 30, "the batch process running")
    kern.interrupt()
    while results[-1]["status"] != "finished":
        results.append(kern.execute(first["runId"], "", mode="continue"))
        assert len(results) < 60 / SLICE
    assert results[-1]["exitCode"] == 130
    wait_until(lambda: not host_processes_with(marker), 10, "the batch process gone")


# -- files ------------------------------------------------------------------------------------


def test_upload_download_and_list(kern: ComputeSession, workdir: Path) -> None:
    (workdir / "data").mkdir()
    (workdir / "data" / "in.bin").write_bytes(bytes(range(256)))
    kern.upload(["data/in.bin"])
    drive(kern, "open('data/out.txt', 'w').write(str(len(open('data/in.bin', 'rb').read())))")
    got = kern.download(["data/out.txt", "/home/work/data/in.bin"], dest=str(workdir / "back"))
    assert got == {"file_names": ["data/out.txt", "data/in.bin"]}
    assert (workdir / "back" / "data" / "out.txt").read_text() == "256"
    assert (workdir / "back" / "data" / "in.bin").read_bytes() == bytes(range(256))
    names = {e["filename"] for e in json.loads(kern.list_files("data")["files"])}
    assert names == {"in.bin", "out.txt"}
    outside = workdir.parent / f"outside-{secrets.token_hex(4)}.txt"
    outside.write_text("x")
    try:
        with pytest.raises(ValueError, match="outside of the base directory"):
            kern.upload([str(outside)])
    finally:
        outside.unlink()


# -- compute sessions: get-or-create, destroy, limits -----------------------------------------


def test_a_token_reaches_the_session_another_client_made_on_a_server(
    sdk_server: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As with Backend.AI's manager: get-or-create by token is the server's, not a process's."""
    monkeypatch.setenv("EXECBOX_URL", sdk_server.base)
    monkeypatch.setenv("EXECBOX_API_KEY", sdk_server.key)
    token = f"tok-{secrets.token_hex(4)}"
    with Session(flush_timeout=SLICE) as one, Session(flush_timeout=SLICE) as two:
        first = one.ComputeSession.get_or_create("python", client_token=token)
        try:
            drive(first, "shared = 'across clients'")
            again = two.ComputeSession.get_or_create("python", client_token=token)
            assert text(drive(again, "print(shared)")) == "across clients\n"
        finally:
            first.destroy()
        fresh = two.ComputeSession.get_or_create("python", client_token=token)
        try:
            assert "NameError" in text(drive(fresh, "print(shared)"), "stderr")
        finally:
            fresh.destroy()


def test_the_same_token_gives_the_same_compute_session(session: Session) -> None:
    token = f"tok-{secrets.token_hex(4)}"
    first = session.ComputeSession.get_or_create("python", client_token=token)
    again = session.ComputeSession.get_or_create("lablup/python:3.11", name=token)
    older = session.Kernel.get_or_create(lang="python", client_token=token)
    other = session.ComputeSession.get_or_create(
        "python", client_token=f"tok-{secrets.token_hex(4)}"
    )
    try:
        assert first.created
        assert not again.created
        assert not older.created
        assert first.id == again.id == older.id == older.kernel_id
        assert isinstance(older, Kernel)
        assert isinstance(first, session.ComputeSession)
        assert other.id != first.id
        assert other.created
        drive(first, "shared = 'yes'")
        assert text(drive(older, "print(shared)")) == "yes\n"
        with pytest.raises(BackendAPIError) as caught:
            session.ComputeSession.get_or_create("python", client_token=token, no_reuse=True)
        assert caught.value.status == 409
        with pytest.raises(BackendAPIError, match="exists with image"):
            session.ComputeSession.get_or_create("lua", client_token=token)
    finally:
        first.destroy()
        other.destroy()


def test_destroy_ends_the_box_and_what_runs_in_it(session: Session) -> None:
    token = f"tok-{secrets.token_hex(4)}"
    kern = session.ComputeSession.get_or_create("python", client_token=token)
    marker = f"bai-{secrets.token_hex(6)}"
    kern.execute(
        None, "", mode="batch", opts={"exec": f"python -c 'import time; time.sleep(120)' {marker}"}
    )
    wait_until(lambda: host_processes_with(marker), 30, "the process running")
    kern.destroy()
    assert kern.status == "TERMINATED"
    wait_until(lambda: not host_processes_with(marker), 15, "the process gone with its box")
    with pytest.raises(BackendAPIError) as caught:
        kern.execute(None, "print(1)", mode="query")
    assert caught.value.status == 404
    assert "destroyed" in str(caught.value)
    kern.destroy()  # idempotent
    fresh = session.ComputeSession.get_or_create("python", client_token=token)
    try:
        assert fresh.created
        assert fresh.id != kern.id
    finally:
        fresh.destroy()


def test_a_memory_bomb_ends_its_session_which_get_or_create_replaces(session: Session) -> None:
    token = f"bomb-{secrets.token_hex(4)}"
    kern = session.ComputeSession.get_or_create(
        "python", client_token=token, resources={"mem": "256m", "cpu": 1}
    )
    bomb = "chunks = []\nwhile True:\n    chunks.append(bytearray(8 << 20))"
    results = drive(kern, f"print('filling', flush=True)\n{bomb}")
    assert results[-1]["status"] == "finished"
    assert results[-1]["exitCode"] == 137
    assert text(results) == "filling\n"
    assert "memory limit" in text(results, "stderr")
    with pytest.raises(BackendAPIError) as caught:
        kern.execute(None, "print(1)", mode="query")
    assert caught.value.status == 404
    assert "memory_limit" in str(caught.value)
    again = session.ComputeSession.get_or_create(
        "python", client_token=token, resources={"mem": "256m"}
    )
    try:
        assert again.created
        assert again.id != kern.id
        assert text(drive(again, "print('alive')")) == "alive\n"
    finally:
        again.destroy()


def test_a_memory_bomb_in_a_batch_program_kills_only_the_program(session: Session) -> None:
    kern = session.ComputeSession.get_or_create("python", resources={"mem": "256m"})
    try:
        drive(kern, "kept = 'state'")
        bomb = "chunks = []\nwhile True:\n    chunks.append(bytearray(8 << 20))"
        child = drive(kern, "", "batch", {"exec": f"python -c '{bomb}'"})
        assert child[-1]["exitCode"] == 137
        assert "memory limit" in text(child, "stderr")
        assert text(drive(kern, "print(kept)")) == "state\n"  # the kernel lives on
    finally:
        kern.destroy()


def test_get_info_and_restart(session: Session) -> None:
    kern = session.ComputeSession.get_or_create("python:3.11-ubuntu22.04")
    try:
        drive(kern, "lost = 1\nopen('kept.txt', 'w').write('on disk')")
        info = kern.get_info()
        assert info["sessionId"] == kern.id
        assert info["status"] == "RUNNING"
        assert info["image"] == "python:3.11-ubuntu22.04"
        kern.restart()
        after = drive(kern, "print('lost' in dir(), open('kept.txt').read())")
        assert text(after) == "False on disk\n"
        assert text(drive(kern, "", "batch", {"exec": "python -c 'print(7)'"})) == "7\n"
        assert text(drive(kern, "import shutil\nprint(shutil.which('python'))")) == (
            "/tmp/.backendai/bin/python\n"
        )
    finally:
        kern.destroy()


def test_resources_and_envs_reach_the_box(session: Session) -> None:
    kern = session.ComputeSession.get_or_create(
        "python", resources={"cpu": 0.5, "mem": "300m", "cuda.shares": 0}, envs={"GREETING": "hi"}
    )
    try:
        code = (
            "import os\nprint(os.environ['GREETING'])\n"
            "print(open('/sys/fs/cgroup/memory.max').read().strip()"
            " if os.path.exists('/sys/fs/cgroup/memory.max') else 'no-cgroup-v2')"
        )
        lines = text(drive(kern, code)).splitlines()
        assert lines[0] == "hi"
        assert lines[1] in (str(300 << 20), "no-cgroup-v2")
    finally:
        kern.destroy()


# -- Lua --------------------------------------------------------------------------------------


def test_lua_queries_and_batch(session: Session) -> None:
    lua = session.Kernel.get_or_create("lua")
    try:
        hello = drive(lua, 'print("hello world")\nfor i = 1, 3 do io.write(i, " ") end\nprint()')
        assert hello[-1]["exitCode"] == 0
        assert text(hello) == "hello world\n1 2 3 \n"
        failed = drive(lua, 'print("before")\nerror("boom")')
        assert failed[-1]["exitCode"] == 1
        assert text(failed) == "before\n"
        stderr = text(failed, "stderr")
        assert stderr.startswith("lua: .query-")
        assert "boom" in stderr
        assert "xpcall" not in stderr
        stateless = drive(lua, "print(x)")  # each query is its own process, as in Backend.AI
        assert text(stateless) == "nil\n"
        batch = drive(
            lua, "", "batch", {"build": "printf 'print(#arg, arg[1])' > main.lua", "exec": "*"}
        )
        assert text(batch) == "0\tnil\n"
        assert batch[-1]["exitCode"] == 0
        args = drive(lua, "", "batch", {"exec": "lua main.lua a b"})
        assert text(args) == "2\ta\n"
    finally:
        lua.destroy()


# -- bad input --------------------------------------------------------------------------------


def test_bad_input_is_refused_clearly(session: Session, kern: ComputeSession) -> None:
    with pytest.raises(BackendClientError, match="Invalid execution mode: 'compile'"):
        kern.execute(None, "1", mode="compile")
    with pytest.raises(BackendClientError, match="valid string"):
        kern.execute(None, None, mode="query")
    with pytest.raises(BackendClientError, match="command string"):
        kern.execute(None, "", mode="batch", opts={"exec": ["python", "x.py"]})
    with pytest.raises(BackendAPIError) as caught:
        session.ComputeSession.get_or_create("r-base:4.0")
    assert caught.value.status == 404
    assert "Python images" in str(caught.value)
    assert caught.value.data["type"].endswith("image-not-found")
    with pytest.raises(BackendClientError, match="4 to 64 characters"):
        session.ComputeSession.get_or_create("python", client_token="abc")
    with pytest.raises(BackendClientError, match="unknown slot 'gpu'"):
        session.ComputeSession.get_or_create("python", resources={"gpu": 1})
    with pytest.raises(BackendClientError, match="accelerators"):
        session.ComputeSession.get_or_create("python", resources={"cuda.device": 1})
    with pytest.raises(BackendClientError, match="memory"):
        session.ComputeSession.get_or_create("python", resources={"mem": "lots"})
    with pytest.raises(BackendClientError, match="mounts"):
        session.ComputeSession.get_or_create("python", mounts=["data"])
    with pytest.raises(BackendClientError, match="image"):
        session.ComputeSession.get_or_create()
    with pytest.raises(BackendClientError, match="no option 'frobnicate'"):
        session.ComputeSession.get_or_create("python", frobnicate=True)
    with pytest.raises(BackendClientError, match="AsyncSession"):
        kern.stream_execute("print(1)")
    for error in (BackendClientError("x"), BackendAPIError(400, "Bad Request", {})):
        assert isinstance(error, BackendError)
        assert isinstance(error, ExecboxError)


def test_a_session_must_be_open() -> None:
    closed = Session()
    with pytest.raises(BackendClientError, match="not open"):
        closed.ComputeSession.get_or_create("python")
    with pytest.raises(BackendClientError, match="client session"):
        ComputeSession.get_or_create("python")
    with Session() as opened:
        pass
    with pytest.raises(BackendClientError, match="closed"):
        opened.ComputeSession.get_or_create("python")
    with pytest.raises(BackendClientError, match="Cannot reuse"):
        opened.open()
    with pytest.raises(BackendClientError, match="flush_timeout"):
        Session(flush_timeout=0)


def test_exec_timeout_ends_a_cell_with_124_and_keeps_the_session(transport: str) -> None:
    with Session(flush_timeout=SLICE, exec_timeout=1) as timed:
        kern = timed.ComputeSession.get_or_create("python")
        drive(kern, "kept = 1")
        results = drive(kern, "import time\ntime.sleep(30)")
        assert results[-1]["exitCode"] == 124
        assert "timeout" in text(results, "stderr")
        assert text(drive(kern, "print(kept)")) == "1\n"


def test_configuration_is_accepted_and_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKEND_ENDPOINT", "https://api.example.org")
    monkeypatch.setenv("BACKEND_ACCESS_KEY", "AKIAEXAMPLE")
    config = APIConfig(secret_key="s", vfolder_mounts=["data"])
    assert config.endpoint == "https://api.example.org"
    assert config.access_key == "AKIAEXAMPLE"
    assert config.vfolder_mounts == ["data"]
    with Session(config=config) as configured:
        assert configured.config is config
        with pytest.raises(BackendClientError, match="mounts"):
            configured.ComputeSession.get_or_create("python")


# -- the async session ------------------------------------------------------------------------


def test_stream_execute_streams_and_takes_the_input_answer(transport: str) -> None:
    async def body() -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        async with AsyncSession() as session:
            kern = await session.ComputeSession.get_or_create("python", client_token="stream-1")
            same = await session.ComputeSession.get_or_create("python", client_token="stream-1")
            assert same.id == kern.id
            assert not same.created
            code = (
                "import time\nprint('one', flush=True)\ntime.sleep(0.6)\n"
                "who = input('who? ')\nprint('hi', who)"
            )
            async with kern.stream_execute(code) as stream:
                async for message in stream:
                    assert message.type == 1  # aiohttp.WSMsgType.TEXT
                    result = json.loads(message.data)
                    messages.append(result)
                    if result["status"] == "waiting-input":
                        with pytest.raises(BackendClientError, match="send_text"):
                            await stream.__anext__()
                        await stream.send_text("Bob")
            assert stream.closed
            result = await kern.execute(None, "print('after')", mode="query")
            assert result["console"] == [["stdout", "after\n"]]
            await kern.destroy()
        return messages

    messages = run_async(body)
    assert [m["status"] for m in messages][-2:] == ["waiting-input", "finished"]
    assert all(m["console"] for m in messages[:-1])  # no empty 'continued' messages
    stdout = "".join(rec[1] for m in messages for rec in m["console"] if rec[0] == "stdout")
    assert stdout == "one\nwho? hi Bob\n"
    assert messages[-1]["exitCode"] == 0
    assert set(messages[-1]) == {
        "status",
        "console",
        "exitCode",
        "options",
    }


def test_stream_execute_batch_and_leaving_early_interrupts(transport: str) -> None:
    async def body() -> tuple[list[str], list[dict[str, Any]]]:
        async with AsyncSession(flush_timeout=SLICE) as session:
            kern = await session.ComputeSession.get_or_create("python")
            statuses_seen = []
            async with kern.stream_execute(
                mode="batch", opts={"build": "echo b", "exec": "echo e"}
            ) as stream:
                async for message in stream:
                    statuses_seen.append(message.json()["status"])
            async with kern.stream_execute(
                "import time\nprint('x', flush=True)\ntime.sleep(60)"
            ) as stream:
                first = await stream.receive_json()
                assert first["console"] == [["stdout", "x\n"]]
            # leaving interrupted the sleep: the kernel answers the next query soon
            after = [await kern.execute(None, "print('free')", mode="query")]
            while after[-1]["status"] != "finished":
                after.append(await kern.execute(after[-1]["runId"], "", mode="continue"))
                assert len(after) < 30 / SLICE
            with pytest.raises(BackendClientError, match="Invalid stream-execution mode"):
                kern.stream_execute("", mode="continue")
            return statuses_seen, after

    seen, after = run_async(body)
    assert seen == ["build-finished", "finished"]
    assert text(after) == "free\n"
    assert after[-1]["exitCode"] == 0
