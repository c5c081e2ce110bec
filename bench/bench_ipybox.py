"""ipybox's usage examples through execbox.compat.ipybox, end to end, beside ipybox's figures.

    .venv/bin/python bench/bench_ipybox.py [--runs N] [--burst N] [--url URL | --serve]

Example rows: each script of ``examples/ipybox`` (ipybox's seven usage examples, only the import
changed), its ``main()`` run in this process and timed whole: container, client(s), every
execution, the example's own checks (a wrong result fails the run). Rounds are interleaved
(every row once per round, the order rotated each round) after one untimed warm-up round, so
noise falls on all rows alike. 03 sleeps 5 s by design; 04 and 05 ``!pip install`` from PyPI
(05 downloads matplotlib, numpy and pillow: ~40 MB), so they measure the network too.
The floor row, ``execbox SDK: client + session + print(1)``, is what the compat layer stands
on: ``execbox.AsyncClient()`` entered, a session with the same settings (network on), one
``print(1)``, all closed; "x floor" divides by it.

Component rows (ms), the ones PERFORMANCE.md gives for ipybox 0.6.7 in Docker:
  start -> first print(1)         ``ExecutionContainer`` + ``ExecutionClient`` entered, then
                                  ``execute("print(1)")`` returned (ipybox: 3.1 s)
  first streamed chunk            ``submit("print(1)")`` until ``stream()`` yields its chunk on
                                  a connected client (ipybox: 46 ms)
  execute('1+1') back to back     ``client.execute("1+1")``, ``--burst`` per round after one
                                  untimed (ipybox: 44.8 ms); its floor is the SDK's own
                                  ``session.execute("1+1")``, alternated with it
"x ipybox" is ipybox's published median over ours (how many times faster).

``--url URL`` runs everything against that ``execbox serve`` (``EXECBOX_URL``; the key from
``--api-key`` or ``EXECBOX_API_KEY``); ``--serve`` starts one itself (``--no-auth`` on
127.0.0.1, SQLite in a temporary directory) and stops it by its pid. Binds are host paths, so
06 runs embedded only and is left out through a server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import io
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples" / "ipybox").glob("0*.py"))
EXECBOX = str(Path(sys.executable).parent / "execbox")
TAG = "ghcr.io/gradion-ai/ipybox:0.6.7"
TIMEOUT = 300.0
"""Bound of every timed call: a stuck row fails the run instead of hanging it."""
SETTLE = 0.1
FLOOR = "execbox SDK: client + session + print(1)"
IPYBOX_MS = {
    "start -> first print(1)": 3100.0,
    "first streamed chunk": 46.0,
    "execute('1+1') back to back": 44.8,
}
"""ipybox 0.6.7 in Docker, measured on this project's machines (PERFORMANCE.md)."""
SDK_EXECUTE = "execbox SDK session.execute('1+1')"


def _percentile95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"ipybox_example_{path.stem}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def _timed(call: Callable[[], Awaitable[Any]]) -> float:
    """Seconds ``call`` took; its prints are swallowed; a failed check fails the run."""
    started = time.perf_counter()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            async with asyncio.timeout(TIMEOUT):
                await call()
    except SystemExit as exc:
        raise SystemExit(f"{getattr(call, '__module__', call)}: {exc}") from None
    return time.perf_counter() - started


# -- the floor and the component rows ---------------------------------------------------------


async def _sdk_print() -> None:
    import execbox

    async with execbox.AsyncClient() as client, client.session(network=True) as session:
        result = await session.execute("print(1)", timeout=TIMEOUT)
        assert result.text == "1\n", result


async def _start_to_print() -> float:
    from execbox.compat.ipybox import ExecutionClient, ExecutionContainer

    started = time.perf_counter()
    async with (
        ExecutionContainer(tag=TAG) as container,
        ExecutionClient(port=container.executor_port) as client,
    ):
        result = await client.execute("print(1)", timeout=TIMEOUT)
        elapsed = (time.perf_counter() - started) * 1000
    assert result.text == "1", result
    return elapsed


async def _first_chunk(client: Any) -> float:
    started = time.perf_counter()
    execution = await client.submit("print(1)")
    first: float | None = None
    async for chunk in execution.stream(timeout=TIMEOUT):
        if first is None:
            first = (time.perf_counter() - started) * 1000
            assert chunk == "1\n", chunk
    assert first is not None
    return first


async def _execute(client: Any) -> float:
    started = time.perf_counter()
    result = await client.execute("1+1", timeout=TIMEOUT)
    elapsed = (time.perf_counter() - started) * 1000
    assert result.text == "2", result
    return elapsed


async def _sdk_execute(session: Any) -> float:
    started = time.perf_counter()
    result = await session.execute("1+1", timeout=TIMEOUT)
    elapsed = (time.perf_counter() - started) * 1000
    assert result.text == "2\n", result
    return elapsed


# -- the run ----------------------------------------------------------------------------------


async def _bench(options: argparse.Namespace, remote: bool) -> None:
    import execbox
    from execbox.compat.ipybox import ExecutionClient, ExecutionContainer

    examples = [p for p in EXAMPLES if not (remote and p.stem.startswith("06_"))]
    modules = {path.stem: _load(path) for path in examples}
    rows: dict[str, list[float]] = {name: [] for name in modules}
    rows[FLOOR] = []
    parts: dict[str, list[float]] = {name: [] for name in [*IPYBOX_MS, SDK_EXECUTE]}
    calls: dict[str, Callable[[], Awaitable[Any]]] = {n: m.main for n, m in modules.items()}
    calls[FLOOR] = _sdk_print

    started = time.perf_counter()
    for call in calls.values():  # warm-up: kernel packages, font cache, uv's cache
        await _timed(call)
    await _start_to_print()
    print(f"warm-up: {time.perf_counter() - started:.1f} s")

    names = list(calls)
    for round_ in range(options.runs):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            rows[name].append(await _timed(calls[name]))
            await asyncio.sleep(SETTLE)
        parts["start -> first print(1)"].append(await _start_to_print())
        await asyncio.sleep(SETTLE)

    async with contextlib.AsyncExitStack() as stack:
        container = await stack.enter_async_context(ExecutionContainer(tag=TAG))
        client = await stack.enter_async_context(ExecutionClient(port=container.executor_port))
        sdk = await stack.enter_async_context(execbox.AsyncClient())
        session = await stack.enter_async_context(sdk.session(network=True))
        for _ in range(options.runs):
            await _first_chunk(client)
            parts["first streamed chunk"].append(await _first_chunk(client))
            await asyncio.sleep(SETTLE)
            await _execute(client)
            await _sdk_execute(session)
            for _ in range(options.burst):  # alternated, so that load falls on both alike
                parts["execute('1+1') back to back"].append(await _execute(client))
                parts[SDK_EXECUTE].append(await _sdk_execute(session))
            await asyncio.sleep(SETTLE)

    _report(rows, parts, remote)


def _report(rows: dict[str, list[float]], parts: dict[str, list[float]], remote: bool) -> None:
    floor = statistics.median(rows[FLOOR])
    where = "through execbox serve" if remote else "embedded"
    print(f"\nipybox usage examples end to end, {where} (seconds)")
    print(f"{'example':<48} {'n':>3} {'median s':>9} {'p95 s':>7} {'x floor':>8}")
    for name, values in rows.items():
        median = statistics.median(values)
        label = f"{name} (floor)" if name == FLOOR else name
        print(
            f"{label:<48} {len(values):>3} {median:>9.2f} {_percentile95(values):>7.2f} "
            f"{median / floor:>8.2f}"
        )
    print(
        "ipybox: every example starts a Docker container first: start -> first print(1) "
        f"alone is {IPYBOX_MS['start -> first print(1)'] / 1000:.1f} s (PERFORMANCE.md)"
    )

    header = f"{'n':>4} {'median':>8} {'p95':>8} {'ipybox':>8} {'x ipybox':>9}"
    print(f"\n{'component (ms)':<48} {header}")
    for name, values in parts.items():
        median = statistics.median(values)
        peer = IPYBOX_MS.get(name)
        peer_text = f"{peer:>8.1f} {peer / median:>9.1f}" if peer else f"{'':>8} {'(floor)':>9}"
        p95 = _percentile95(values)
        print(f"{name:<48} {len(values):>4} {median:>8.1f} {p95:>8.1f} {peer_text}")
    compat, sdk = (
        statistics.median(parts[k]) for k in ("execute('1+1') back to back", SDK_EXECUTE)
    )
    print(f"the compat layer's cost per execute: {compat - sdk:+.2f} ms ({compat / sdk:.2f}x)")


# -- a server of our own ----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def _server(root: Path) -> Any:
    """``execbox serve --no-auth`` on 127.0.0.1 for the run; SIGTERM to its pid at the end."""
    import httpx

    port = _free_port()
    log = (root / "serve.log").open("ab")
    argv = [
        EXECBOX, "serve", "--no-auth", "--host", "127.0.0.1", "--port", str(port),
        "--db", f"sqlite:///{root / 'execbox.db'}",
    ]  # fmt: skip
    process = subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(
                    f"execbox serve did not come up: {(root / 'serve.log').read_text()}"
                )
            with contextlib.suppress(httpx.HTTPError, ValueError):
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(10)
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5, help="rounds over every example")
    parser.add_argument("--burst", type=int, default=20, help="executions per round per row")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--url", help="an execbox server to run through (EXECBOX_URL)")
    where.add_argument("--serve", action="store_true", help="start an execbox serve to use")
    parser.add_argument("--api-key", help="its key (default: EXECBOX_API_KEY)")
    options = parser.parse_args()
    if options.runs < 1 or options.burst < 1:
        parser.error("--runs and --burst must be at least 1")
    # A state directory of our own (box uids must traverse it); the shared package cache stays.
    state = tempfile.mkdtemp(prefix="execbox-bench-state-")
    os.chmod(state, 0o755)  # noqa: S103 - box uids bind files from it
    os.environ["EXECBOX_STATE_DIR"] = state
    if options.url:
        os.environ["EXECBOX_URL"] = options.url
    if options.api_key:
        os.environ["EXECBOX_API_KEY"] = options.api_key
    started, load = time.perf_counter(), os.getloadavg()[0]
    try:
        with contextlib.ExitStack() as stack:
            if options.serve:
                os.environ["EXECBOX_URL"] = stack.enter_context(_server(Path(state)))
            remote = bool(os.environ.get("EXECBOX_URL"))
            asyncio.run(_bench(options, remote))
    finally:
        shutil.rmtree(state, ignore_errors=True)
    elapsed = time.perf_counter() - started
    # The machines are shared: a high load average means other work shared the 2 cores.
    print(f"run time: {elapsed:.1f} s; 1-min load average {load:.2f} before, ", end="")
    print(f"{os.getloadavg()[0]:.2f} after ({os.cpu_count()} cpus)")


if __name__ == "__main__":
    main()
