"""execbox.compat.ipybox against real boxes and kernels: each ipybox behaviour, for real.

State, isolation between two clients of one container, streaming chunk by chunk, ``!pip
install`` with the network, plots as PIL images, binds read and written on the host (as root:
through a per-client ACL, taken back afterwards, never following a link), env, errors with
their traceback, timeouts that interrupt and keep the state, hostile code, and the seven
ipybox usage examples run as scripts.
"""

from __future__ import annotations

import asyncio
import builtins
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

import execbox
from execbox.boxes.local.host import probe
from execbox.compat.ipybox import (
    ConnectionError,
    ExecutionClient,
    ExecutionContainer,
    ExecutionError,
    ExecutionResult,
)
from execbox.compat.ipybox.binds import acl_users
from helpers import FORK_BOMB

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples" / "ipybox").glob("0*.py"))
TAG = "ghcr.io/gradion-ai/ipybox:0.6.7"
BOUND = 120.0
"""Bound of every test body: a hang fails the test instead of the run."""


def run(body: Callable[[], Awaitable[Any]], bound: float = BOUND) -> Any:
    async def bounded() -> Any:
        async with asyncio.timeout(bound):
            return await body()

    return asyncio.run(bounded())


@pytest.fixture
def host_dir() -> Iterator[Path]:
    """A host directory owned by root, 0755: a box's uid may enter it but not write it."""
    path = Path(tempfile.mkdtemp(prefix="execbox-ipybox-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def _collect(chunks: AsyncIterator[str], into: list[str]) -> None:
    async for chunk in chunks:
        into.append(chunk)


def _modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.lstat().st_mode for p in [root, *root.rglob("*")]}


# -- state, isolation, result shapes ----------------------------------------------------------


def test_state_and_the_shapes_of_results() -> None:
    async def body() -> None:
        async with (
            ExecutionContainer(tag=TAG) as container,
            ExecutionClient(port=container.executor_port) as client,
        ):
            assert (await client.execute("x = 1")) == ExecutionResult(text=None, images=[])
            assert (await client.execute("print(x)")).text == "1"
            assert (await client.execute("x + 1")).text == "2"  # execute_result's text/plain
            assert (await client.execute("print('a'); x * 3")).text == "a\n3"
            assert (await client.execute("print()")).text == ""  # a chunk, only whitespace
            stderr = await client.execute("import sys; print('warn', file=sys.stderr)")
            assert stderr.text == "warn"
            indented = await client.execute("\n    y = x + 40\n    print(y)\n")
            assert indented.text == "41"  # ipybox's examples send indented code
            assert isinstance(client.kernel_id, str)
            assert client.kernel_id
            assert "/workspace" in (await client.execute("import sys; sys.path")).text

    run(body)


def test_two_clients_of_one_container_are_isolated() -> None:
    async def body() -> None:
        async with (
            ExecutionContainer(tag=TAG) as container,
            ExecutionClient(port=container.executor_port) as client_1,
            ExecutionClient(port=container.executor_port) as client_2,
        ):
            assert client_1.kernel_id != client_2.kernel_id
            await client_1.execute("x = 1\nopen('mine.txt', 'w').write('1')")
            with pytest.raises(ExecutionError) as caught:
                await client_2.execute("print(x)")
            assert caught.value.args[0] == "NameError: name 'x' is not defined"
            assert (await client_2.execute("import os; os.path.exists('mine.txt')")).text == (
                "False"
            )
            assert (await client_1.execute("print(x)")).text == "1"

    run(body)


def test_no_output_is_lost() -> None:
    """ipybox stops reading at the reply and loses late output; here the 2000th line is there."""

    async def body() -> None:
        async with (
            ExecutionContainer(tag=TAG) as container,
            ExecutionClient(port=container.executor_port) as client,
        ):
            for _ in range(3):
                result = await client.execute("for i in range(2000): print(i)")
                assert result.text == "\n".join(str(i) for i in range(2000))

    run(body)


# -- streaming --------------------------------------------------------------------------------


def test_stream_yields_each_chunk_before_the_cell_ends(host_dir: Path) -> None:
    """The cell waits for a file the test writes only after it has seen the first chunk: had
    the chunk been held back until the end, the cell would never end (and the test times out)."""

    async def body() -> None:
        binds = {str(host_dir): "ctl"}
        code = """
            import os, time
            print("first", flush=True)
            while not os.path.exists("ctl/go"):
                time.sleep(0.02)
            print("second")
        """
        async with (
            ExecutionContainer(tag=TAG, binds=binds) as container,
            ExecutionClient(port=container.executor_port) as client,
        ):
            execution = await client.submit(code)
            chunks = []
            async for chunk in execution.stream(timeout=60):
                chunks.append(chunk)
                if chunk == "first\n":
                    (host_dir / "go").write_text("")
            assert chunks == ["first\n", "second\n"]
            result = await execution.result()
            assert result.text == "first\nsecond"
            assert await execution.result() == result  # available again, without waiting

    run(body)


def test_images_are_not_streamed_but_in_the_result() -> None:
    async def body() -> None:
        code = """
            import matplotlib.pyplot as plt
            plt.plot([1, 3, 2])
            plt.title('three points')
            plt.show()
            print("done")
        """
        async with (
            ExecutionContainer(tag=TAG) as container,
            ExecutionClient(port=container.executor_port) as client,
        ):
            execution = await client.submit(code)
            chunks = [chunk async for chunk in execution.stream()]
            assert all(isinstance(c, str) for c in chunks)
            assert chunks[-1] == "done\n"
            assert chunks[0].startswith("<Figure size")  # the figure's text/plain, as in ipybox
            result = await execution.result()
            (image,) = result.images
            assert isinstance(image, Image.Image)
            assert image.format == "PNG"
            width, height = image.size
            assert width > height > 100
            colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
            assert colours is not None
            assert len(colours) > 2

    run(body)


# -- runtime install, env ---------------------------------------------------------------------


def test_pip_install_at_runtime_then_import() -> None:
    async def body() -> None:
        async with (
            ExecutionContainer(tag=TAG) as container,
            ExecutionClient(port=container.executor_port) as client,
        ):
            execution = await client.submit("!pip install tomli-w==1.0.0")
            streamed = "".join([chunk async for chunk in execution.stream(timeout=90)])
            assert "tomli-w==1.0.0" in streamed, streamed
            result = await client.execute("import tomli_w; print(tomli_w.dumps({'a': 1}))")
            assert result.text == "a = 1"

    run(body)


def test_pip_install_without_network_fails_clearly() -> None:
    async def body() -> None:
        async with (
            ExecutionContainer(tag=TAG, network=False) as container,
            ExecutionClient(port=container.executor_port) as client,
        ):
            result = await client.execute("!pip install tomli-w")
            assert result.text is not None
            assert "no network" in result.text
            with pytest.raises(ExecutionError, match="ModuleNotFoundError"):
                await client.execute("import tomli_w")

    run(body)


def test_env_reaches_code_and_shell() -> None:
    async def body() -> None:
        env = {"API_KEY": "secret-key-123", "DEBUG": "1"}
        async with (
            ExecutionContainer(tag=TAG, env=env) as container,
            ExecutionClient(port=container.executor_port) as client,
        ):
            result = await client.execute("import os; print(os.environ['API_KEY'])")
            assert result.text == "secret-key-123"
            assert (await client.execute("!echo debug=$DEBUG")).text == "debug=1"

    run(body)
    with pytest.raises(ValueError, match="env"):
        ExecutionContainer(tag=TAG, env={"A": 1})  # type: ignore[dict-item]


# -- binds ------------------------------------------------------------------------------------


def test_binds_are_read_and_written_on_the_host(host_dir: Path) -> None:
    data, output = host_dir / "data", host_dir / "output"
    data.mkdir(mode=0o755)
    (data / "input.txt").write_text("hello world")
    (data / "input.txt").chmod(0o600)  # not even world-readable: the grant makes it readable
    (data / "sub").mkdir(mode=0o700)
    (data / "sub" / "deep.txt").write_text("deep")
    output.mkdir(mode=0o755)  # root's, not world-writable: ipybox's user could write it
    (output / "old.txt").write_text("old")
    (output / "old.txt").chmod(0o644)
    before = _modes(host_dir)
    missing = host_dir / "created"

    async def body() -> None:
        binds = {str(data): "data", str(output): "output", str(missing): "created/here"}
        async with ExecutionContainer(tag=TAG, binds=binds) as container:
            assert missing.is_dir()  # ipybox creates a missing host path
            async with ExecutionClient(port=container.executor_port) as client:
                await client.execute("""
                    with open('data/input.txt') as f:
                        data = f.read()
                    with open('output/result.txt', 'w') as f:
                        f.write(data.upper() + open('data/sub/deep.txt').read())
                    open('output/old.txt', 'w').write('new')
                    import os
                    os.makedirs('output/made/inner')
                    open('output/made/inner/x.txt', 'w').write('x')
                    open('/workspace/created/here/y.txt', 'w').write('y')
                """)
                granted = acl_users(str(output))
                if os.geteuid() == 0:  # boxes run as a uid of their own: it has a grant
                    assert list(granted.values()) == [7], granted
                    box_uid = next(iter(granted))
                    assert box_uid not in (0, os.geteuid())
                    assert acl_users(str(data / "input.txt")) == {box_uid: 6}
                else:  # boxes run as this user, who owns the binds: nothing to grant
                    assert granted == {}
        assert (output / "result.txt").read_text() == "HELLO WORLDdeep"
        assert (output / "old.txt").read_text() == "new"
        assert (output / "made" / "inner" / "x.txt").read_text() == "x"
        assert (missing / "y.txt").read_text() == "y"

    run(body)
    after = _modes(host_dir)
    for name, mode in before.items():  # modes restored: the widened group bits are back
        assert after[name] == mode, (name, oct(after[name]), oct(mode))
    for path in [host_dir, *host_dir.rglob("*")]:
        assert acl_users(str(path)) == {}, path  # every grant taken back


def test_a_link_planted_in_a_bind_is_never_followed(host_dir: Path) -> None:
    """A box plants links to a host secret in its bind; the next client's grant walks the
    bind and must not give the box's uid the secret (nor change it)."""
    secret_dir = Path(tempfile.mkdtemp(prefix="execbox-ipybox-secret-"))
    secret_dir.chmod(0o755)
    secret = secret_dir / "secret.txt"
    secret.write_text("top secret")
    secret.chmod(0o600)
    bound = host_dir / "shared"
    bound.mkdir(mode=0o755)

    async def body() -> None:
        binds = {str(bound): "shared"}
        async with ExecutionContainer(tag=TAG, binds=binds) as container:
            async with ExecutionClient(port=container.executor_port) as client:
                await client.execute(
                    f"import os\nos.symlink({str(secret)!r}, 'shared/link')\n"
                    f"os.symlink({str(secret_dir)!r}, 'shared/dirlink')\n"
                    "os.mkfifo('shared/fifo')"
                )
            async with ExecutionClient(port=container.executor_port) as client:
                assert acl_users(str(secret)) == {}
                assert acl_users(str(secret_dir)) == {}
                for path in ("shared/link", "shared/dirlink/secret.txt"):
                    with pytest.raises(ExecutionError, match=r"No such file|Permission"):
                        await client.execute(f"print(open({path!r}).read())")

    try:
        run(body)
        assert secret.stat().st_mode & 0o777 == 0o600
        assert acl_users(str(secret)) == {}
    finally:
        shutil.rmtree(secret_dir, ignore_errors=True)


def test_bad_binds_are_refused_clearly(host_dir: Path) -> None:
    for container_path in ("", ".", "../escape", "/", "a/../../b"):
        with pytest.raises(ValueError, match="below /app"):
            run(lambda c=container_path: _start({str(host_dir): c}))
    if os.geteuid() == 0:
        private = Path(tempfile.mkdtemp(prefix="execbox-ipybox-private-"))  # 0700
        try:
            with pytest.raises(ValueError, match="chmod o\\+x"):
                run(lambda: _start({str(private / "inner"): "data"}))
        finally:
            shutil.rmtree(private, ignore_errors=True)


async def _start(binds: dict[str, str]) -> None:
    async with ExecutionContainer(tag=TAG, binds=binds):
        pass


# -- errors, timeouts, input ------------------------------------------------------------------


def test_an_error_raises_with_its_traceback_after_earlier_chunks() -> None:
    async def body() -> None:
        async with (
            ExecutionContainer(tag=TAG) as container,
            ExecutionClient(port=container.executor_port) as client,
        ):
            execution = await client.submit(
                "print('before')\ndef inner():\n    raise ValueError('boom')\ninner()"
            )
            chunks: list[str] = []
            with pytest.raises(ExecutionError) as caught:
                await _collect(execution.stream(), chunks)
            assert chunks == ["before\n"]
            assert caught.value.args[0] == "ValueError: boom"
            assert caught.value.trace is not None
            assert "inner()" in caught.value.trace
            assert "ValueError" in caught.value.trace
            with pytest.raises(ExecutionError, match="ValueError: boom"):
                await execution.result()
            assert (await client.execute("print('fine')")).text == "fine"

    run(body)


def test_a_timeout_interrupts_the_kernel_and_keeps_its_state() -> None:
    async def body() -> None:
        async with (
            ExecutionContainer(tag=TAG) as container,
            ExecutionClient(port=container.executor_port) as client,
        ):
            await client.execute("x = 41")
            started = time.monotonic()
            with pytest.raises(asyncio.TimeoutError):
                await client.execute("import time\nwhile True: time.sleep(0.05)", timeout=1)
            assert time.monotonic() - started < 15
            assert (await client.execute("x + 1", timeout=30)).text == "42"

            execution = await client.submit(
                "import time\nfor i in range(600):\n    print(i, flush=True); time.sleep(0.05)"
            )
            seen: list[str] = []
            with pytest.raises(TimeoutError):
                await _collect(execution.stream(timeout=2), seen)
            assert seen
            assert seen[0] == "0\n"
            partial = await execution.result()  # what arrived, as ipybox gives it
            assert partial.text is not None
            assert partial.text.startswith("0\n1")
            assert (await client.execute("x", timeout=30)).text == "41"

    run(body)


def test_a_kernel_ignoring_the_interrupt_is_replaced_and_the_client_works() -> None:
    async def body() -> None:
        async with (
            ExecutionContainer(tag=TAG) as container,
            ExecutionClient(port=container.executor_port) as client,
        ):
            stubborn = (
                "import time\nwhile True:\n    try:\n        time.sleep(0.05)\n"
                "    except KeyboardInterrupt:\n        pass"
            )
            with pytest.raises(TimeoutError):
                await client.execute(stubborn, timeout=1)
            assert (await client.execute("1 + 1", timeout=60)).text == "2"

    run(body)


def test_input_is_refused_as_ipybox_kernels_do() -> None:
    async def body() -> None:
        async with (
            ExecutionContainer(tag=TAG) as container,
            ExecutionClient(port=container.executor_port) as client,
        ):
            await client.execute("kept = 'yes'")
            with pytest.raises(ExecutionError, match=r"^StdinNotImplementedError"):
                await client.execute("input('name? ')", timeout=30)
            assert (await client.execute("kept", timeout=30)).text == "'yes'"

    run(body)


def test_a_fork_bomb_is_contained_and_the_client_goes_on() -> None:
    async def body() -> None:
        async with (
            ExecutionContainer(tag=TAG, limits=execbox.Limits(pids=64)) as container,
            ExecutionClient(port=container.executor_port) as bomber,
            ExecutionClient(port=container.executor_port) as neighbour,
        ):
            await neighbour.execute("state = 'kept'")
            first_kernel = bomber.kernel_id
            with pytest.raises(ExecutionError) as caught:
                await bomber.execute(FORK_BOMB, timeout=60)
            assert (await bomber.execute("print('after')", timeout=60)).text == "after"
            if probe().cgroups is not None:  # the pids cgroup ends the box: a fresh kernel
                assert caught.value.args[0].startswith("pids_limit: "), caught.value.args
                assert bomber.kernel_id != first_kernel
            else:  # RLIMIT_NPROC only: the forks fail, the bomb gives up, the kernel lives
                assert caught.value.args[0] == "SystemExit: 3", caught.value.args
                assert bomber.kernel_id == first_kernel
            assert (await neighbour.execute("state")).text == "'kept'"

    run(body)


# -- lifecycle, tags, connection errors -------------------------------------------------------


def test_tags_ipybox_images_accepted_others_refused() -> None:
    for tag in (TAG, "ghcr.io/gradion-ai/ipybox", "gradion-ai/ipybox:latest", "my-ipybox:v1"):
        assert ExecutionContainer(tag=tag).tag == tag
    for tag in ("ubuntu:22.04", "node:20", "python:3.12", ""):
        with pytest.raises(ValueError, match="tag"):
            ExecutionContainer(tag=tag)


def test_manual_lifecycle_ports_and_connection_errors() -> None:
    async def body() -> None:
        container = ExecutionContainer(tag=TAG, executor_port=47_001)
        assert container.executor_port == 47_001  # given: known before the start, as in ipybox
        with pytest.raises(RuntimeError, match="not running"):
            _ = ExecutionContainer(tag=TAG).executor_port
        await container.run()
        try:
            with pytest.raises(RuntimeError, match="already allocated"):
                await ExecutionContainer(tag=TAG, executor_port=47_001).run()
            client = ExecutionClient(port=47_001)
            with pytest.raises(ValueError, match="Not connected"):
                _ = client.kernel_id
            with pytest.raises(ConnectionError, match="Not connected"):
                await client.submit("1")
            await client.connect()
            assert (await client.execute("6 * 7")).text == "42"
        finally:
            await container.kill()
        with pytest.raises(ConnectionError, match="Not connected"):
            await client.execute("1")  # the container's end disconnected it
        started = time.monotonic()
        with pytest.raises(ConnectionError, match="port 47001"):
            await ExecutionClient(port=47_001).connect()
        assert time.monotonic() - started < 1  # an unknown port fails at once
        assert isinstance(ConnectionError("x"), builtins.ConnectionError)

    run(body)


def test_killing_the_container_ends_a_running_stream_clearly() -> None:
    async def body() -> None:
        container = ExecutionContainer(tag=TAG)
        await container.run()
        client = ExecutionClient(port=container.executor_port)
        await client.connect()
        execution = await client.submit("import time\nprint('up', flush=True)\ntime.sleep(300)")
        chunks = execution.stream(timeout=60)
        assert await anext(chunks) == "up\n"
        await container.kill()
        started = time.monotonic()
        with pytest.raises((ExecutionError, ConnectionError)) as caught:
            await anext(chunks)
        assert time.monotonic() - started < 10
        assert "closed" in str(caught.value) or "gone" in str(caught.value), caught.value
        with pytest.raises(ConnectionError, match="Not connected"):
            await client.submit("1")

    run(body)


# -- through a server -------------------------------------------------------------------------


def test_the_same_api_through_execbox_serve(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, host_dir: Path
) -> None:
    """With EXECBOX_URL set, containers and clients run on a real server (--no-auth here)."""
    from server_support import ServerProcess

    with ServerProcess(sqlite_url, "--no-auth") as server:
        monkeypatch.setenv("EXECBOX_URL", server.base)
        monkeypatch.delenv("EXECBOX_API_KEY", raising=False)

        async def body() -> None:
            async with (
                ExecutionContainer(tag=TAG, env={"K": "remote"}) as container,
                ExecutionClient(port=container.executor_port) as client_1,
                ExecutionClient(port=container.executor_port) as client_2,
            ):
                assert not container.embedded
                await client_1.execute("x = 1")
                assert (await client_1.execute("import os; print(x, os.environ['K'])")).text == (
                    "1 remote"
                )
                with pytest.raises(ExecutionError, match=r"^NameError"):
                    await client_2.execute("x")
                execution = await client_1.submit("print('a', flush=True)\nprint('b')")
                assert [chunk async for chunk in execution.stream()] == ["a\n", "b\n"]
                with pytest.raises(TimeoutError):
                    await client_1.execute("import time\nwhile True: time.sleep(0.05)", timeout=1)
                assert (await client_1.execute("x + 1", timeout=30)).text == "2"
                plot = await client_1.execute(
                    "import matplotlib.pyplot as plt; plt.plot([1, 2]); plt.show()"
                )
                assert plot.images[0].format == "PNG"
            with pytest.raises(ValueError, match="embedded"):
                await _start({str(host_dir): "data"})

        run(body)


def test_a_grant_a_dead_process_left_is_taken_back_before_its_uid_is_leased_again(
    tmp_path: Path,
) -> None:
    """The ledger beside a uid's lease outlives a crash; the next lease of the uid settles it,
    so no later box (of any client or server on this host) inherits access to a bind."""
    from execbox.boxes.local import acl
    from execbox.boxes.local.uids import UidPool

    uid = 2_190_001
    leases = tmp_path / "uids"
    pool = UidPool(leases, base=uid, count=1)
    bind = tmp_path / "bind"
    (bind / "sub").mkdir(parents=True)
    (bind / "sub" / "notes.txt").write_text("mine")
    acl.grant([str(bind)], uid, leases)  # then the granting process dies: no revoke
    assert acl_users(str(bind)) == {uid: 7}
    assert acl_users(str(bind / "sub" / "notes.txt")) == {uid: 6}
    lease = pool.lease()
    try:
        assert lease.uid == uid
        for path in (bind, bind / "sub", bind / "sub" / "notes.txt"):
            assert acl_users(str(path)) == {}, path
        assert not (leases / f"{uid}.grants").exists()
    finally:
        lease.release()
