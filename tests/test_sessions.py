"""Sessions: stateful IPython kernels in boxes, driven for real (no mocks).

Most tests share one module-scoped client and one session; tests whose effect would disturb
others (restarts, closes, limits, env, mounts) start sessions of their own.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

import execbox
from execbox import (
    ClearOutputEvent,
    DisplayEvent,
    EndEvent,
    ErrorEvent,
    ExecutionStatus,
    InputRequestEvent,
    ResultEvent,
    StreamEvent,
)
from execbox.paths import cache_dir
from helpers import leftovers
from server_support import ServerProcess

OK = ExecutionStatus.OK


# -- helpers ----------------------------------------------------------------------------------


def new_leftovers(baseline: dict[str, list[object]]) -> dict[str, list[object]]:
    """What of this run's boxes exists now that did not exist in ``baseline``."""
    found = {}
    for kind, items in leftovers().items():
        fresh = [item for item in items if item not in baseline.get(kind, [])]
        if fresh:
            found[kind] = fresh
    return found


def wait_gone(baseline: dict[str, list[object]], timeout: float = 2.0) -> dict[str, list[object]]:
    """Poll up to ``timeout`` s until no box part newer than ``baseline`` remains."""
    deadline = time.monotonic() + timeout
    remaining = new_leftovers(baseline)
    while remaining and time.monotonic() < deadline:
        time.sleep(0.02)
        remaining = new_leftovers(baseline)
    return remaining


def ok(session: execbox.Session, code: str, **kwargs: float) -> execbox.ExecutionResult:
    """Execute and insist that the cell ended ok."""
    result = session.execute(code, **kwargs)
    assert result.status is OK, (result, result.message, result.error, result.stderr)
    return result


def error_name(result: execbox.ExecutionResult) -> str | None:
    return result.error.ename if result.error is not None else None


def wait_warm(client: execbox.Client, count: int = 1, timeout: float = 30.0) -> None:
    """Wait until the session pool holds ``count`` ready kernels (``ready()`` is for tests)."""
    pool = client._transport._async.engine.sessions.pool  # type: ignore[attr-defined]
    deadline = time.monotonic() + timeout
    while pool.ready() < count:
        assert time.monotonic() < deadline, "the warm pool never filled"
        time.sleep(0.02)


def host_dir(mode: int) -> Path:
    """A temp host dir that the box's unprivileged uid can reach (pytest's tmp_path cannot)."""
    path = Path(tempfile.mkdtemp(prefix="execbox-mount-"))
    path.chmod(mode)
    return path


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared(sdk_options: dict[str, object]) -> Iterator[tuple[execbox.Client, execbox.Session]]:
    """One client without warm pools and one session, both for the whole module; every test
    that takes them runs embedded and against a server (one API, one behaviour)."""
    with (
        execbox.Client(**sdk_options) as client,  # type: ignore[arg-type]
        client.session() as session,
    ):
        # The first session of a fresh cache builds matplotlib's font list in a box of its own,
        # in the background: let it finish so that it never counts as a leftover.
        seed = cache_dir() / "kernel-runtime" / "matplotlib"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (
            seed.is_dir() and len(leftovers().get("records", [])) <= 1
        ):
            time.sleep(0.05)
        yield client, session


@pytest.fixture(scope="module")
def box_client(shared: tuple[execbox.Client, execbox.Session]) -> execbox.Client:
    return shared[0]


@pytest.fixture(scope="module")
def session(shared: tuple[execbox.Client, execbox.Session]) -> execbox.Session:
    return shared[1]


@pytest.fixture
def fresh(box_client: execbox.Client) -> Iterator[execbox.Session]:
    """A session of its own, closed after the test."""
    with box_client.session() as own:
        yield own


# -- 1. state ---------------------------------------------------------------------------------


def test_state_kept_and_execution_count_increments(session: execbox.Session) -> None:
    """Variables survive between cells, counts go up by one, text holds stdout then the value."""
    first = ok(session, "state_x = 1")
    second = ok(session, "print(state_x)\nstate_x + 1")
    assert second.execution_count == first.execution_count + 1
    assert second.stdout == "1\n"
    assert second.stderr == ""
    assert second.text == "1\n2\n"
    assert [(o.kind, o.data["text/plain"]) for o in second.outputs] == [("result", "2")]
    assert session.info().execution_count == second.execution_count


# -- 2. isolation -----------------------------------------------------------------------------

PROCESSES = """\
import os
def _procs():
    found = []
    for pid in os.listdir('/proc'):
        if pid.isdigit():
            try:
                raw = open(f'/proc/{pid}/cmdline', 'rb').read()
            except OSError:
                continue
            found.append(raw.replace(b'\\0', b' ').decode().strip())
    return found
"""


def test_two_sessions_are_isolated(box_client: execbox.Client) -> None:
    """A variable, a workspace file and a background process of one session are unseen by another."""
    baseline = leftovers()
    with box_client.session() as a, box_client.session() as b:
        ok(a, "secret_a = 123\nopen('only_a.txt', 'w').write('a')")
        ok(a, "import subprocess\nsleeper = subprocess.Popen(['sleep', '60'])")
        for s in (a, b):
            ok(s, PROCESSES)
        assert "sleep 60" in ok(a, "print(_procs())").stdout  # the control: A sees its own

        assert error_name(b.execute("secret_a")) == "NameError"
        assert ok(b, "print(os.path.exists('only_a.txt'))").stdout == "False\n"
        assert "only_a.txt" not in [entry.name for entry in b.files.list("")]
        assert "only_a.txt" in [entry.name for entry in a.files.list("")]
        assert "sleep 60" not in ok(b, "print(_procs())").stdout
    assert wait_gone(baseline) == {}, "the background process or its box outlived the session"


# -- 3. streaming -----------------------------------------------------------------------------


def test_stream_events_arrive_as_produced(session: execbox.Session) -> None:
    """The first printed line is streamed long before the cell ends; a second stream replays all."""
    code = "import time\nfor i in range(4):\n    print(i, flush=True)\n    time.sleep(0.3)"
    started = time.monotonic()
    execution = session.submit(code)
    first = None
    events = []
    for event in execution.stream():
        if first is None and isinstance(event, StreamEvent):
            first = time.monotonic() - started
        events.append(event)
    ended = time.monotonic() - started
    assert first is not None
    assert first < 1.0, first
    assert ended >= 1.2, ended
    assert isinstance(events[-1], EndEvent)
    assert events[-1].result.stdout == "0\n1\n2\n3\n"
    assert "".join(e.text for e in events if isinstance(e, StreamEvent)) == "0\n1\n2\n3\n"
    assert list(execution.stream()) == events


# -- 4. nothing lost --------------------------------------------------------------------------


def test_two_thousand_executions_lose_nothing(session: execbox.Session) -> None:
    """2,000 back-to-back cells of prints and results each come back exactly, in order."""
    # IPython itself warns on stderr once 1,000 results are cached: not what is tested here.
    ok(session, "import warnings\nwarnings.filterwarnings('ignore', 'Output cache limit')")
    previous = None
    for i in range(2000):
        if i % 3 == 0:
            code, out, value = f"print({i})", f"{i}\n", None
        elif i % 3 == 1:
            code, out, value = f"{i}", "", str(i)
        else:
            code, out, value = f"print({i}); {i} * 2", f"{i}\n", str(i * 2)
        result = session.execute(code)
        assert result.status is OK, (i, result)
        assert result.stdout == out, (i, result)
        assert result.stderr == "", (i, result)
        assert result.text == out + (f"{value}\n" if value else ""), (i, result)
        expected = [("result", value)] if value else []
        assert [(o.kind, o.data.get("text/plain")) for o in result.outputs] == expected, i
        if previous is not None:
            assert result.execution_count == previous + 1, (i, result.execution_count)
        previous = result.execution_count


def test_five_thousand_lines_all_arrive_in_order(session: execbox.Session) -> None:
    """Every line of a 5,000-line cell is in result.stdout and in the streamed events, in order."""
    expected = "".join(f"line {i}\n" for i in range(5000))
    execution = session.submit("for i in range(5000):\n    print(f'line {i}')")
    streamed = "".join(e.text for e in execution.stream() if isinstance(e, StreamEvent))
    result = execution.result()
    assert result.status is OK
    assert not result.truncated
    assert result.stdout == expected
    assert streamed == expected


# -- 5. errors --------------------------------------------------------------------------------


def test_error_is_a_result_and_session_survives(session: execbox.Session) -> None:
    """1/0 ends with status error, a ZeroDivisionError, an ErrorEvent; the next cell works."""
    execution = session.submit("1/0")
    events = list(execution.stream())
    result = execution.result()
    assert result.status is ExecutionStatus.ERROR
    assert result.error is not None
    assert result.error.ename == "ZeroDivisionError"
    assert "division by zero" in result.error.evalue
    assert any("ZeroDivisionError" in line for line in result.error.traceback)
    assert [e.ename for e in events if isinstance(e, ErrorEvent)] == ["ZeroDivisionError"]
    with pytest.raises(execbox.CellError) as raised:
        result.raise_for_error()
    assert raised.value.ename == "ZeroDivisionError"
    assert ok(session, "6 * 7").text == "42\n"


# -- 6. input ---------------------------------------------------------------------------------


def test_input_round_trip(session: execbox.Session) -> None:
    """input() asks through an InputRequestEvent and gets what send_input answers."""
    execution = session.submit("name = input('Name? ')\nprint('hi', name)", timeout=20)
    requests = []
    for event in execution.stream():
        if isinstance(event, InputRequestEvent):
            requests.append(event)
            execution.send_input("Bob")
    result = execution.result()
    assert requests == [InputRequestEvent("Name? ", password=False)]
    assert result.status is OK, result
    assert result.stdout == "hi Bob\n"
    assert ok(session, "name").text == "'Bob'\n"
    with pytest.raises(execbox.InvalidState):
        execution.send_input("again")  # answered, and over


def test_getpass_is_a_password_request(session: execbox.Session) -> None:
    """getpass() is an input request with password=True."""
    execution = session.submit(
        "import getpass\npw = getpass.getpass('PW: ')\nprint(len(pw))", timeout=20
    )
    requests = []
    for event in execution.stream():
        if isinstance(event, InputRequestEvent):
            requests.append(event)
            execution.send_input("s3cret!")
    assert requests == [InputRequestEvent("PW: ", password=True)]
    result = execution.result()
    assert result.status is OK, result
    assert result.stdout == "7\n"


def test_send_input_when_nothing_asks_is_invalid_state(session: execbox.Session) -> None:
    """send_input to a running cell that asks nothing, or to an ended one, raises InvalidState."""
    execution = session.submit("import time\ntime.sleep(0.5)\n'done'")
    with pytest.raises(execbox.InvalidState):
        execution.send_input("nobody asked")
    assert execution.result().text == "'done'\n"
    with pytest.raises(execbox.InvalidState):
        execution.send_input("too late")


def test_unanswered_input_times_out_and_keeps_state(session: execbox.Session) -> None:
    """An input() nobody answers ends at the timeout, says so, and the state survives."""
    ok(session, "kept_before_input = 7")
    started = time.monotonic()
    result = session.execute("input('never answered? ')", timeout=1)
    assert result.status is ExecutionStatus.TIMEOUT, result
    assert "waiting for input" in (result.message or ""), result.message
    assert not result.restarted
    assert 1.0 <= time.monotonic() - started < 5.0
    assert ok(session, "kept_before_input").text == "7\n"


# -- 7. timeouts ------------------------------------------------------------------------------

IGNORES_INTERRUPT = """\
import time
while True:
    try:
        time.sleep(1)
    except KeyboardInterrupt:
        pass
"""


def test_timeout_interrupts_and_keeps_state_unless_ignored(fresh: execbox.Session) -> None:
    """A timed-out sleep keeps state; a loop ignoring the interrupt restarts the kernel."""
    ok(fresh, "x = 41")
    started = time.monotonic()
    result = fresh.execute("import time\ntime.sleep(30)", timeout=1)
    assert result.status is ExecutionStatus.TIMEOUT, result
    assert not result.restarted
    assert time.monotonic() - started < 5.0
    assert ok(fresh, "x + 1").text == "42\n"

    started = time.monotonic()
    stubborn = fresh.execute(IGNORES_INTERRUPT, timeout=1)
    assert stubborn.status is ExecutionStatus.TIMEOUT, stubborn
    assert stubborn.restarted
    assert time.monotonic() - started < 10.0
    after = fresh.execute("x")
    assert after.status is ExecutionStatus.ERROR
    assert error_name(after) == "NameError"


# -- 8. interrupt -----------------------------------------------------------------------------


def test_interrupt_from_another_thread(session: execbox.Session) -> None:
    """session.interrupt() from a second thread stops a running sleep: status interrupted."""
    ok(session, "kept_before_interrupt = 'still here'")
    execution = session.submit("import time\nprint('started', flush=True)\ntime.sleep(30)")
    for event in execution.stream():
        if isinstance(event, StreamEvent):
            break  # the cell runs
    started = time.monotonic()
    threading.Timer(0.2, session.interrupt).start()
    result = execution.result(timeout=15)
    assert result.status is ExecutionStatus.INTERRUPTED, result
    assert time.monotonic() - started < 5.0
    assert not result.restarted
    assert ok(session, "kept_before_interrupt").text == "'still here'\n"


def test_interrupt_as_the_cell_starts_is_not_lost(fresh: execbox.Session) -> None:
    """An interrupt the moment the session turns busy, before the kernel began the cell (when
    ipykernel still ignores SIGINT), still interrupts it: no restart, state kept."""
    ok(fresh, "kept = 'yes'")
    for _ in range(3):
        execution = fresh.submit("import time\ntime.sleep(30)")
        deadline = time.monotonic() + 10
        while fresh.info().status is not execbox.SessionStatus.BUSY:
            assert time.monotonic() < deadline, "the session never turned busy"
        fresh.interrupt()
        result = execution.result(timeout=15)
        assert result.status is ExecutionStatus.INTERRUPTED, result
        assert not result.restarted
    assert ok(fresh, "kept").text == "'yes'\n"


# -- 9. restart -------------------------------------------------------------------------------


def test_restart_loses_variables_keeps_files(fresh: execbox.Session) -> None:
    """After restart() a variable is gone while files written before are still there."""
    ok(fresh, "lost = 5\nopen('by_kernel.txt', 'w').write('kernel')")
    fresh.files.write("by_api.txt", "api")
    fresh.restart()
    gone = fresh.execute("lost")
    assert gone.status is ExecutionStatus.ERROR
    assert error_name(gone) == "NameError"
    assert ok(fresh, "open('by_kernel.txt').read()").text == "'kernel'\n"
    assert ok(fresh, "open('by_api.txt').read()").text == "'api'\n"
    assert fresh.files.read_text("by_kernel.txt") == "kernel"


# -- 10. files --------------------------------------------------------------------------------


def test_files_round_trip(session: execbox.Session) -> None:
    """write/read/list/delete work with nested dirs and binary data, both ways with the kernel."""
    blob = bytes(range(256)) * 4
    session.files.write("ft/dir/a.txt", "hello")
    session.files.write("ft/dir/sub/b.bin", blob)
    assert session.files.read("ft/dir/a.txt") == b"hello"
    assert session.files.read_text("/workspace/ft/dir/a.txt") == "hello"
    assert session.files.read("ft/dir/sub/b.bin") == blob
    listing = {e.name: (e.kind, e.size) for e in session.files.list("ft/dir")}
    assert listing["a.txt"] == ("file", 5)
    assert listing["sub"][0] == "dir"
    assert set(listing) == {"a.txt", "sub"}
    assert [(e.name, e.kind, e.size) for e in session.files.list("ft/dir/sub")] == [
        ("b.bin", "file", 1024)
    ]
    assert "ft" in [e.name for e in session.files.list("")]

    # The kernel sees the API's files, and the API sees the kernel's.
    assert ok(session, "open('ft/dir/sub/b.bin', 'rb').read() == bytes(range(256)) * 4").text == (
        "True\n"
    )
    ok(session, "open('ft/k.bin', 'wb').write(b'\\x00\\xff\\n')")
    assert session.files.read("ft/k.bin") == b"\x00\xff\n"

    session.files.write("ft/dir/a.txt", b"replaced")
    assert ok(session, "open('ft/dir/a.txt').read()").text == "'replaced'\n"

    session.files.delete("ft/dir/a.txt")
    assert "a.txt" not in [e.name for e in session.files.list("ft/dir")]
    session.files.delete("ft/dir")
    assert [e.name for e in session.files.list("ft")] == ["k.bin"]
    assert ok(session, "import os\nos.path.exists('ft/dir')").text == "False\n"


@pytest.mark.parametrize(
    ("operation", "path"),
    [
        ("read", "../etc/passwd"),
        ("read", "/etc/passwd"),
        ("read", "/workspace/../etc/passwd"),
        ("write", "a/../../escape.txt"),
        ("write", "/tmp/escape.txt"),
        ("list", "/etc"),
        ("list", ".."),
        ("delete", "../workspace"),
        ("delete", ""),
    ],
)
def test_files_refuse_paths_outside_workspace(
    session: execbox.Session, operation: str, path: str
) -> None:
    """Paths with '..' or absolute paths outside /workspace raise InvalidFiles."""
    call = getattr(session.files, operation)
    with pytest.raises(execbox.InvalidFiles):
        call(path, b"x") if operation == "write" else call(path)


LINKS = """\
import os
os.makedirs('lt', exist_ok=True)
open('/tmp/target.txt', 'w').write('TARGET')
os.makedirs('/tmp/outside', exist_ok=True)
os.makedirs('lt/realdir', exist_ok=True)
open('lt/realdir/inner.txt', 'w').write('inner')
os.symlink('/etc/passwd', 'lt/passwd')
os.symlink('/tmp/target.txt', 'lt/tmplink')
os.symlink({secret!r}, 'lt/hostlink')
os.symlink('realdir', 'lt/dirlink')
os.symlink('/tmp/outside', 'lt/outlink')
"""


def test_files_never_follow_planted_symlinks(session: execbox.Session) -> None:
    """Links planted by code are not followed by read, are replaced by write, deleted alone."""
    secret = Path(os.environ["EXECBOX_STATE_DIR"]).parent / "server-secret"
    ok(session, LINKS.format(secret=str(secret)))
    kinds = {e.name: e.kind for e in session.files.list("lt")}
    assert kinds == {
        "passwd": "symlink",
        "tmplink": "symlink",
        "hostlink": "symlink",
        "dirlink": "symlink",
        "outlink": "symlink",
        "realdir": "dir",
    }

    for link in ("lt/passwd", "lt/tmplink", "lt/hostlink", "lt/dirlink/inner.txt"):
        with pytest.raises(execbox.ExecboxError):
            session.files.read(link)
    with pytest.raises(execbox.ExecboxError):
        session.files.list("lt/outlink")

    # Writing where a link is replaces the link, never the file it points at.
    session.files.write("lt/tmplink", b"replaced")
    assert session.files.read("lt/tmplink") == b"replaced"
    check = "import os\nos.path.islink('lt/tmplink'), open('/tmp/target.txt').read()"
    assert ok(session, check).text == "(False, 'TARGET')\n"

    # A link as a parent directory is not walked through either.
    with pytest.raises(execbox.ExecboxError):
        session.files.write("lt/outlink/evil.txt", b"evil")
    assert ok(session, "os.listdir('/tmp/outside')").text == "[]\n"

    # Deleting a link to a directory deletes the link only.
    session.files.delete("lt/dirlink")
    names = [e.name for e in session.files.list("lt")]
    assert "dirlink" not in names
    assert session.files.read("lt/realdir/inner.txt") == b"inner"
    session.files.delete("lt/outlink")
    assert ok(session, "os.path.isdir('/tmp/outside')").text == "True\n"


# -- 11. env, cwd, mounts ---------------------------------------------------------------------


def test_env_and_cwd(box_client: execbox.Client) -> None:
    """env is in os.environ and in shell commands; cwd is where the kernel starts; no host env."""
    with box_client.session(env={"K": "V-123"}, cwd="/workspace/project") as s:
        assert ok(s, "import os\nos.environ['K']").text == "'V-123'\n"
        assert "V-123" in ok(s, "!echo K is $K").stdout
        assert ok(s, "os.getcwd()").text == "'/workspace/project'\n"
        assert ok(s, "'EXECBOX_TEST_CANARY' in os.environ").text == "False\n"
        ok(s, "open('here.txt', 'w').write('x')")
        assert s.files.read("project/here.txt") == b"x"


@pytest.fixture
def embedded_client() -> Iterator[execbox.Client]:
    """For what only an engine on this host can do: mounts, the host's kernelspecs."""
    with execbox.Client(pool_size=0, session_pool_size=0) as client:
        yield client


def test_read_only_and_writable_mounts(embedded_client: execbox.Client) -> None:
    """A read-only mount reads but refuses writes; a writable mount's new file reaches the host."""
    box_client = embedded_client
    readonly, writable = host_dir(0o755), host_dir(0o777)
    try:
        source = readonly / "in.txt"
        source.write_text("host data")
        source.chmod(0o644)
        mounts = [
            execbox.Mount(str(readonly), "/data"),
            execbox.Mount(str(writable), "/out", writable=True),
        ]
        with box_client.session(mounts=mounts) as s:
            assert ok(s, "open('/data/in.txt').read()").text == "'host data'\n"
            for code in ("open('/data/in.txt', 'w').write('changed')", "open('/data/new', 'w')"):
                refused = s.execute(code)
                assert refused.status is ExecutionStatus.ERROR, refused
                assert refused.error is not None
                assert refused.error.ename in ("OSError", "PermissionError"), refused.error
            ok(s, "open('/out/made.txt', 'w').write('from box')")
        assert source.read_text() == "host data"
        assert sorted(p.name for p in readonly.iterdir()) == ["in.txt"]
        assert (writable / "made.txt").read_text() == "from box"
    finally:
        shutil.rmtree(readonly, ignore_errors=True)
        shutil.rmtree(writable, ignore_errors=True)


def test_mounts_are_refused_through_a_server(sdk_server: ServerProcess) -> None:
    """Host paths mean nothing to a remote server: a clear InvalidSpec before any request."""
    with execbox.Client(sdk_server.base, api_key=sdk_server.key) as client:
        before = client.sessions()
        with pytest.raises(execbox.InvalidSpec, match="mounts"):
            client.session(mounts={str(Path.cwd()): "/data"}).start()
        assert [s.id for s in client.sessions()] == [s.id for s in before]


# -- 12. warm pool ----------------------------------------------------------------------------


def test_warm_pool_is_fast_personalised_and_never_shared() -> None:
    """Pooled sessions start in < 0.1 s, get their own env and cwd, and share nothing."""
    with execbox.Client(pool_size=0, session_pool_size=1) as client:
        started = time.monotonic()
        with client.session() as cold:
            cold_time = time.monotonic() - started
            ok(cold, "1")
        assert cold_time > 0.1, cold_time

        wait_warm(client)
        started = time.monotonic()
        with client.session() as first:
            warm_time = time.monotonic() - started
            assert warm_time < 0.1, warm_time
            assert (
                ok(first, "shared = 1\nopen('from_first.txt', 'w').write('1')").execution_count == 1
            )
            assert first.info().execution_count == 1

            wait_warm(client)
            with client.session(env={"A": "1"}, cwd="/workspace/sub") as personal:
                check = "import os\nos.environ.get('A'), os.getcwd(), 'shared' in globals()"
                result = ok(personal, check)
                assert result.text == "('1', '/workspace/sub', False)\n"
                assert result.execution_count == 1
                assert "from_first.txt" not in [e.name for e in personal.files.list("")]

            wait_warm(client)
            with client.session() as plain:
                check = "import os\nos.environ.get('A'), os.getcwd(), 'shared' in globals()"
                assert ok(plain, check).text == "(None, '/workspace', False)\n"
                assert ok(plain, "os.path.exists('from_first.txt')").text == "False\n"


# -- 13. lifecycle ----------------------------------------------------------------------------


def test_idle_timeout_counts_running_code_then_closes(box_client: execbox.Client) -> None:
    """A 2.5 s cell outlives idle_timeout=1; 2.5 s of idleness then closes the session."""
    baseline = leftovers()
    with box_client.session(idle_timeout=1) as s:
        assert ok(s, "import time\ntime.sleep(2.5)\n'slept'").text == "'slept'\n"
        assert s.info().status is not execbox.SessionStatus.CLOSED
        time.sleep(2.5)  # idle
        info = s.info()
        assert info.status is execbox.SessionStatus.CLOSED
        assert info.reason == "idle_timeout"
        with pytest.raises(execbox.SessionClosed) as closed:
            s.execute("1")
        assert closed.value.reason == "idle_timeout"
        assert wait_gone(baseline) == {}


def test_ttl_closes_a_busy_session(box_client: execbox.Client) -> None:
    """ttl=2 closes the session while a cell runs, with reason 'ttl'; nothing of it is left."""
    baseline = leftovers()
    started = time.monotonic()
    with box_client.session(ttl=2) as s:
        s.submit("import time\ntime.sleep(30)")
        deadline = started + 10
        while s.info().status is not execbox.SessionStatus.CLOSED:
            assert time.monotonic() < deadline, "ttl=2 never closed the busy session"
            time.sleep(0.05)
        elapsed = time.monotonic() - started
        assert 1.9 <= elapsed < 6.0, elapsed
        assert s.info().reason == "ttl"
        with pytest.raises(execbox.SessionClosed) as closed:
            s.execute("1")
        assert closed.value.reason == "ttl"
        assert wait_gone(baseline) == {}


@pytest.mark.parametrize("how", ["ttl", "close"])
def test_closing_a_busy_session_ends_its_execution(box_client: execbox.Client, how: str) -> None:
    """A cell running when its session closes (ttl or close()) ends cancelled, with an EndEvent."""
    with box_client.session(ttl=2 if how == "ttl" else None) as s:
        execution = s.submit("import time\nprint('started', flush=True)\ntime.sleep(30)")
        for event in execution.stream():
            if isinstance(event, StreamEvent):
                break  # the cell runs
        if how == "close":
            s.close()
        result = execution.result(timeout=6 if how == "ttl" else 3)
        assert result.status is ExecutionStatus.CANCELLED, result
        assert isinstance(list(execution.stream())[-1], EndEvent)


# -- 14. rich output --------------------------------------------------------------------------


def test_matplotlib_figure_is_an_image(session: execbox.Session) -> None:
    """A plain matplotlib plot comes back as one PNG image."""
    result = ok(session, "import matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.show()")
    images = result.images
    assert len(images) == 1
    assert min(images[0].size) > 0, images[0].size


def test_display_html_and_json(session: execbox.Session) -> None:
    """display() of HTML and JSON objects streams DisplayEvents with those mime types."""
    code = (
        "from IPython.display import HTML, JSON, display\n"
        "display(HTML('<b>bold</b>'))\n"
        "display(JSON({'a': 1, 'b': [1, 2]}))"
    )
    execution = session.submit(code)
    displays = [e for e in execution.stream() if isinstance(e, DisplayEvent)]
    assert len(displays) == 2
    assert displays[0].data["text/html"] == "<b>bold</b>"
    assert displays[1].data["application/json"] == {"a": 1, "b": [1, 2]}
    result = execution.result()
    assert [o.kind for o in result.outputs] == ["display", "display"]


def test_clear_output(session: execbox.Session) -> None:
    """clear_output() drops what came before from the result and is streamed as an event."""
    execution = session.submit(
        "from IPython.display import clear_output\nprint('a')\nclear_output()\nprint('b')"
    )
    events = list(execution.stream())
    assert any(isinstance(e, ClearOutputEvent) for e in events)
    result = execution.result()
    assert result.stdout == "b\n"
    assert result.text == "b\n"


# -- 15. / 16. packages -----------------------------------------------------------------------


def test_requirements_work_with_network_off(
    box_client: execbox.Client, session: execbox.Session
) -> None:
    """requirements=['six'] is importable in a session without network; without it, it is not."""
    missing = session.execute("import six")
    assert error_name(missing) == "ModuleNotFoundError"
    with box_client.session(requirements=["six"], network=False) as s:
        assert ok(s, "import six\nsix.__name__").text == "'six'\n"


def test_runtime_pip_install_with_network(box_client: execbox.Client) -> None:
    """%pip install and !pip install make packages importable in the next cell."""
    with box_client.session(network=True) as s:
        for module in ("tomli_w", "iniconfig"):
            before = s.execute(f"import {module}")
            assert error_name(before) == "ModuleNotFoundError"
        ok(s, "%pip install --quiet tomli-w", timeout=120)
        assert ok(s, "import tomli_w\ntomli_w.dumps({'a': 1})").text == "'a = 1\\n'\n"
        ok(s, "!pip install --quiet iniconfig", timeout=120)
        assert ok(s, "import iniconfig\niniconfig.__name__").text == "'iniconfig'\n"


def test_runtime_pip_install_fails_clearly_without_network(box_client: execbox.Client) -> None:
    """With the network off, %pip install says it failed and the package stays missing."""
    with box_client.session(network=False) as s:
        result = s.execute("%pip install tomli-w", timeout=120)
        assert "this session has no network" in result.text, result.text
        assert "network=True" in result.text
        after = s.execute("import tomli_w")
        assert error_name(after) == "ModuleNotFoundError"


# -- 17. bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"limits": {"memory": "512M"}}, "limits must be execbox.Limits"),
        ({"cwd": "relative/dir"}, "cwd must be an absolute path"),
        ({"mounts": {"/tmp": "/usr"}}, "would hide a part of the box"),
        ({"mounts": {"/tmp": "/usr/local"}}, "would hide a part of the box"),
        ({"mounts": {"/nonexistent/execbox-source": "/data"}}, "does not exist"),
        ({"mounts": {"relative": "/data"}}, "both paths must be absolute"),
        ({"env": {"A=B": "1"}}, "invalid variable name"),
        ({"env": {"": "1"}}, "invalid variable name"),
        ({"idle_timeout": -1}, "idle_timeout"),
        ({"ttl": 0}, "ttl"),
        ({"kernel": "a/b"}, "kernelspec name"),
        ({"kernel": "no-such-kernel-execbox"}, "no kernel named"),
    ],
)
def test_bad_session_input_raises_before_any_box(
    box_client: execbox.Client, options: dict[str, object], reason: str
) -> None:
    """Each bad option raises InvalidSpec, for the right reason, and starts no box."""
    baseline = leftovers()
    with pytest.raises(execbox.InvalidSpec, match=reason), box_client.session(**options) as s:
        s.execute("1")
    assert new_leftovers(baseline) == {}


@pytest.mark.parametrize(
    "limits",
    [{"memory": "1K"}, {"memory": "lots"}, {"pids": 0}, {"cpus": -1}, {"output": 0}],
)
def test_bad_limits_raise_invalid_spec(limits: dict[str, object]) -> None:
    """Unreadable, zero or negative limits raise InvalidLimits, an InvalidSpec."""
    with pytest.raises(execbox.InvalidSpec):
        execbox.Limits(**limits)


def test_closed_session_raises_session_closed(box_client: execbox.Client) -> None:
    """Every use of a closed session raises SessionClosed with reason 'closed'; close is idempotent."""
    with box_client.session() as s:
        ok(s, "1")
    for use in (
        lambda: s.execute("1"),
        lambda: s.submit("1"),
        lambda: s.files.read("x"),
        lambda: s.files.write("x", "y"),
        s.restart,
        s.interrupt,
    ):
        with pytest.raises(execbox.SessionClosed) as closed:
            use()
        assert closed.value.reason == "closed"
    assert s.info().status is execbox.SessionStatus.CLOSED
    s.close()


def test_client_token_gives_the_open_session_of_the_token(box_client: execbox.Client) -> None:
    """The same token while its session is open: that session; once closed: a new one."""
    token = f"token-{os.getpid()}-{time.monotonic_ns()}"
    with box_client.session(client_token=token) as first:
        ok(first, "marker = 7")
        again = box_client.session(client_token=token).start()
        assert again.id == first.id
        assert ok(again, "marker").text == "7\n"
        with box_client.session(client_token=token + "-other") as other:
            assert other.id != first.id
    with box_client.session(client_token=token) as fresh:
        assert fresh.id != first.id
    with pytest.raises(execbox.InvalidSpec, match="client_token"):
        box_client.session(client_token="")


def test_attach_and_list(box_client: execbox.Client, session: execbox.Session) -> None:
    """attach() reaches a live session's state; unknown ids raise SessionNotFound."""
    ok(session, "attached_value = 'same kernel'")
    again = box_client.attach(session.id)
    assert ok(again, "attached_value").text == "'same kernel'\n"
    assert session.id in [s.id for s in box_client.sessions()]
    with pytest.raises(execbox.SessionNotFound):
        box_client.attach("ses_nope")


def test_result_wait_timeout_leaves_execution_running(session: execbox.Session) -> None:
    """result(timeout=0.2) on a 3 s cell raises ExecboxTimeout; the cell still completes."""
    execution = session.submit("import time\ntime.sleep(3)\n'finished'")
    with pytest.raises(execbox.ExecboxTimeout):
        execution.result(timeout=0.2)
    result = execution.result(timeout=30)
    assert result.status is OK
    assert result.text == "'finished'\n"
    assert result.usage.wall_seconds >= 3.0


# -- 18. async --------------------------------------------------------------------------------


def test_async_client() -> None:
    """AsyncClient: execute, stream events asynchronously, and use files."""

    async def main() -> None:
        async with (
            execbox.AsyncClient(pool_size=0, session_pool_size=0) as client,
            client.session() as s,
        ):
            assert (await s.execute("value = 20\nvalue + 1")).text == "21\n"
            execution = await s.submit("print('x', flush=True)\nvalue * 2")
            events = [event async for event in execution.stream()]
            assert [type(e) for e in events] == [StreamEvent, ResultEvent, EndEvent]
            assert events[0].text == "x\n"
            assert events[1].data["text/plain"] == "40"
            assert events[2].result.text == "x\n40\n"
            assert (await execution.result()).status is OK

            await s.files.write("async/a.txt", "async data")
            assert await s.files.read("async/a.txt") == b"async data"
            assert [e.name for e in await s.files.list("async")] == ["a.txt"]
            assert (await s.execute("open('async/a.txt').read()")).text == "'async data'\n"
            await s.files.delete("async")
            assert "async" not in [e.name for e in await s.files.list("")]

    anyio.run(main)


# -- 19. output cap ---------------------------------------------------------------------------


def test_output_limit_truncates_and_session_survives(box_client: execbox.Client) -> None:
    """1 MB of output under a 64K limit is cut to at most 64K and flagged; the session goes on."""
    expected = "".join(f"{i:07d} {'y' * 42}\n" for i in range(20_000))  # 1,000,000 bytes
    with box_client.session(limits=execbox.Limits(output="64K")) as s:
        result = s.execute("for i in range(20_000):\n    print(f'{i:07d} ' + 'y' * 42)")
        assert result.status is OK, result
        assert result.truncated
        assert len(result.stdout.encode()) <= 64 * 1024
        assert expected.startswith(result.stdout)
        after = ok(s, "print('after')")
        assert after.stdout == "after\n"
        assert not after.truncated


def test_output_limit_counts_bytes_not_characters(box_client: execbox.Client) -> None:
    """80,001 bytes of 4-byte characters under a 64K (65,536-byte) limit are truncated."""
    with box_client.session(limits=execbox.Limits(output="64K")) as s:
        result = ok(s, "print('\\N{GRINNING FACE}' * 20_000)")
        kept = len(result.stdout.encode())
        assert kept <= 64 * 1024, kept
        assert result.truncated


# -- 20. usage --------------------------------------------------------------------------------


def test_usage_peak_memory_and_cpu(fresh: execbox.Session) -> None:
    """Peak memory counts a 100 MB cell and is reset for the next; CPU time counts a busy loop."""
    big = ok(fresh, "b = bytearray(100_000_000)\ndel b")
    assert big.usage.peak_memory_bytes >= 100_000_000, big.usage
    small = ok(fresh, "1 + 1")
    assert 0 < small.usage.peak_memory_bytes < big.usage.peak_memory_bytes, small.usage
    assert small.usage.peak_memory_bytes < 100_000_000, small.usage

    busy = ok(
        fresh,
        "import time\nend = time.process_time() + 0.5\nwhile time.process_time() < end:\n    pass",
    )
    assert busy.usage.cpu_seconds > 0.3, busy.usage
    assert busy.usage.wall_seconds >= 0.5, busy.usage


def test_output_written_to_the_file_descriptors_arrives(session: execbox.Session) -> None:
    """Subprocesses and C code write to fd 1/2 directly: that output is the cell's too."""
    result = ok(
        session,
        "import os, subprocess, sys\n"
        "os.system('echo from-system')\n"
        "subprocess.run(['sh', '-c', 'echo from-sh-err >&2'])\n"
        "os.write(1, b'from-fd\\n')\n"
        "print('from-print')",
    )
    for marker in ("from-system", "from-fd", "from-print"):
        assert marker in result.stdout, result.stdout
    assert "from-sh-err" in result.stderr, result.stderr


def test_fd_output_at_the_very_end_of_a_cell_is_never_lost(session: execbox.Session) -> None:
    """The last thing a cell does is a raw write to fd 1: it arrives, 500 times out of 500."""
    ok(session, "import os")
    lost = []
    for i in range(500):
        result = session.execute(f"os.write(1, b'fd-{i}\\n');")
        if result.stdout != f"fd-{i}\n":
            lost.append((i, result.stdout))
    assert not lost, lost[:5]


def test_an_installed_kernelspec_can_be_named(
    embedded_client: execbox.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kernelspec of the host (here: this venv's own ipykernel) runs in a box by its name."""
    import json

    box_client = embedded_client
    import sys

    tmp_path = host_dir(0o755)  # box uids must reach the kernelspec's resource directory
    spec_dir = tmp_path / "kernels" / "venv-python"
    spec_dir.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec_dir / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "venv", "language": "python"})
    )
    for path in (tmp_path, tmp_path / "kernels", spec_dir, spec_dir / "kernel.json"):
        path.chmod(0o755)
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    with box_client.session(kernel="venv-python") as s:
        result = ok(s, "import sys, os\nprint(sys.prefix)\nos.getuid()")
        assert result.stdout.strip() == sys.prefix
        assert result.text.endswith("1000\n")  # the box's user, not the host's
        assert s.info().kernel == "venv-python"
    with pytest.raises(execbox.InvalidSpec, match="no kernel named"):
        box_client.session(kernel="no-such-kernel").start()


def test_waiting_executions_are_capped_not_buffered(session: execbox.Session) -> None:
    from execbox.engine.sessions import MAX_PENDING

    blocker = session.submit("import time; time.sleep(30)")
    queued = [session.submit("pass") for _ in range(MAX_PENDING - 1)]
    with pytest.raises(execbox.QuotaExceeded, match="waiting"):
        session.submit("1 + 1")
    blocker.interrupt()
    assert blocker.result(timeout=30).status == "interrupted"
    assert all(e.result(timeout=60).ok for e in queued)
    assert session.execute("1 + 1").text.strip() == "2"


def test_closing_right_after_a_session_does_not_wait_on_a_cancelled_watcher() -> None:
    """A kernel stopped during shutdown learns of its exit from the process itself, not from
    the engine's watcher task, which the shutdown already cancelled (it used to wait 2 s)."""

    async def main() -> float:
        async with execbox.AsyncClient(pool_size=0, session_pool_size=1) as client:
            async with client.session() as session:
                await session.execute("1")
            await anyio.sleep(0.08)  # the pool is starting the replacement kernel
            began = time.monotonic()
        return time.monotonic() - began

    assert anyio.run(main) < 1.0
