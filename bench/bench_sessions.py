"""Session latency and memory, side by side with a host kernel, in one run: median, p95, ratios.

    .venv/bin/python bench/bench_sessions.py [--runs N] [--burst N] [--sessions K]

Latency rows, measured in interleaved rounds so that noise falls on all of them alike (each row
once per round, except the execute rows: a burst of ``--burst`` back-to-back executions per
round, after one untimed execution, so they have runs x burst samples):
  host kernel start -> print(1)   floor: a plain ipykernel on the host, no box, started with
                                  jupyter_client's ``start_new_async_kernel`` until the first
                                  ``print(1)`` stream message arrives on iopub. Reported as
                                  measured: it includes ``wait_for_ready``'s fixed ~0.2 s final
                                  iopub drain, the debugger import and ZMQ's default 100 ms
                                  reconnect interval (PERFORMANCE.md's 240 ms floor has none)
  session cold -> print(1)        ``client.session()`` entered with no warm box, until the first
                                  StreamEvent of ``print(1)`` arrives
  session warm pool, enter        entering the session context, claiming a warm box+kernel
                                  (the pool refills in the background: 1 s of sleep between
                                  rounds, outside the clock, and a check that it refilled)
  session warm pool -> print(1)   (information) the same claim until the first StreamEvent;
                                  the pool's refill starts at the claim and shares the CPU
  host kernel execute 1+1         ``client.execute`` on a plain host kernel, then its shell
                                  execute_reply and iopub ``status: idle`` read directly
  host kernel execute, no history floor: the same on a host kernel started with
                                  ``--HistoryManager.enabled=False``, as execbox starts its
                                  kernels (history's SQLite write: ~1 ms an execution, ~3 loaded)
  session execute 1+1, sync/async ``session.execute("1+1")`` through the embedded SDK, sync
                                  ``Client`` and ``AsyncClient``
The ratio column divides by the floor of its kind: starts by the host kernel start, executions
by the no-history host kernel.
Memory rows: K idle sessions (``--sessions``) started, 2 s to settle, then PSS (smaps_rollup)
summed over every process of their boxes (processes of this benchmark under the leased box uids
2100000..2165535 that appeared with these sessions), against one idle host kernel's PSS. The
caller-side row is this process's own PSS growth per session (the engine, its ZMQ clients).
Targets (PERFORMANCE.md): session cold -> print(1) <= 300 ms median; warm pool enter <= 20 ms
median; warm execute 1+1 embedded <= 5 ms median, <= 10 ms p95; >= 25 idle sessions per GiB.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import queue
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jupyter_client.asynchronous import AsyncKernelClient
    from jupyter_client.manager import AsyncKernelManager

    import execbox

UID_BASE, UID_COUNT = 2_100_000, 65_536
SETTLE = 0.1
POOL_REFILL = 1.0
MEMORY_SETTLE = 2.0
TIMEOUT = 60.0
"""Bound of every wait on a kernel or a pool: a stuck row fails the run instead of hanging it."""
GIB_KB = 1024 * 1024


def _percentile95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]


# -- host kernel (the floor) ------------------------------------------------------------------


async def _until(
    get: Callable[..., Awaitable[dict[str, Any]]],
    wanted: Callable[[dict[str, Any]], bool],
    deadline: float,
) -> dict[str, Any]:
    """The first message from ``get`` that is ``wanted``; TimeoutError past ``deadline``."""
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            message = await get(timeout=remaining)
        except queue.Empty:
            break
        if wanted(message):
            return message
    raise TimeoutError("the host kernel did not answer in time")


def _parent_is(msg_id: str, msg_type: str, state: str | None = None) -> Callable[..., bool]:
    def wanted(message: dict[str, Any]) -> bool:
        return (
            message["parent_header"].get("msg_id") == msg_id
            and message["msg_type"] == msg_type
            and (state is None or message["content"].get("execution_state") == state)
        )

    return wanted


async def _host_kernel(*, history: bool = True) -> tuple[AsyncKernelManager, AsyncKernelClient]:
    from jupyter_client.manager import start_new_async_kernel

    # stderr: ipykernel 7 warns at every start that TCP is not encrypted (loopback here).
    return await start_new_async_kernel(
        kernel_name="python3",
        startup_timeout=TIMEOUT,
        stderr=subprocess.DEVNULL,
        extra_arguments=[] if history else ["--HistoryManager.enabled=False"],
    )


async def _host_stop(manager: AsyncKernelManager, kernel: AsyncKernelClient) -> None:
    kernel.stop_channels()
    await manager.shutdown_kernel(now=True)


async def _host_start_to_print() -> float:
    started = time.perf_counter()
    manager, kernel = await _host_kernel()
    try:
        msg_id = kernel.execute("print(1)")
        deadline = time.monotonic() + TIMEOUT
        message = await _until(kernel.get_iopub_msg, _parent_is(msg_id, "stream"), deadline)
        elapsed = (time.perf_counter() - started) * 1000
        assert message["content"]["text"] == "1\n", message
    finally:
        await _host_stop(manager, kernel)
    return elapsed


async def _host_execute(kernel: AsyncKernelClient) -> float:
    """``1+1`` until both its execute_reply and its ``status: idle`` have arrived."""
    started = time.perf_counter()
    msg_id = kernel.execute("1+1")
    deadline = time.monotonic() + TIMEOUT
    reply = await _until(kernel.get_shell_msg, _parent_is(msg_id, "execute_reply"), deadline)
    await _until(kernel.get_iopub_msg, _parent_is(msg_id, "status", "idle"), deadline)
    elapsed = (time.perf_counter() - started) * 1000
    assert reply["content"]["status"] == "ok", reply
    return elapsed


# -- execbox sessions -------------------------------------------------------------------------


def _first_print(session: execbox.Session, started: float) -> float:
    """Run ``print(1)``; ms from ``started`` to its first StreamEvent (all events consumed)."""
    import execbox

    first: float | None = None
    text = ""
    for event in session.submit("print(1)", timeout=TIMEOUT).stream():
        if isinstance(event, execbox.StreamEvent):
            if first is None:
                first = (time.perf_counter() - started) * 1000
            text += event.text
    assert first is not None, text
    assert text == "1\n", text
    return first


def _session_cold(client: execbox.Client) -> float:
    started = time.perf_counter()
    with client.session() as session:
        return _first_print(session, started)


def _warm_ready(client: execbox.Client) -> int | None:
    """How many warm kernels wait in the client's pool (engine internals; None if unknown)."""
    try:
        return client._transport._async._engine.sessions.pool.ready()  # type: ignore[attr-defined]
    except AttributeError:
        return None


def _wait_refill(client: execbox.Client) -> bool:
    """Sleep POOL_REFILL s, then up to TIMEOUT more until a warm kernel waits; True if one did."""
    time.sleep(POOL_REFILL)
    deadline = time.monotonic() + TIMEOUT
    while (ready := _warm_ready(client)) is not None and ready < 1:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _session_warm(client: execbox.Client) -> tuple[float, float, bool]:
    """ms to enter a session from the pool, ms to its first print(1), whether it was warm."""
    warm = _warm_ready(client) != 0
    started = time.perf_counter()
    session = client.session()
    session.__enter__()
    try:
        entered = (time.perf_counter() - started) * 1000
        printed = _first_print(session, started)
    finally:
        session.close()
    return entered, printed, warm


def _wait_for_dir(path: Path, bound: float) -> None:
    """Until ``path`` is a directory, at most ``bound`` s (blocks: nothing else runs then)."""
    deadline = time.monotonic() + bound
    while not path.is_dir() and time.monotonic() < deadline:
        time.sleep(0.1)


def _execute_sync(session: execbox.Session) -> float:
    started = time.perf_counter()
    result = session.execute("1+1", timeout=TIMEOUT)
    elapsed = (time.perf_counter() - started) * 1000
    assert result.status == "ok", result
    assert result.text.strip() == "2", result
    return elapsed


async def _execute_async(session: execbox.AsyncSession) -> float:
    started = time.perf_counter()
    result = await session.execute("1+1", timeout=TIMEOUT)
    elapsed = (time.perf_counter() - started) * 1000
    assert result.status == "ok", result
    assert result.text.strip() == "2", result
    return elapsed


# -- memory -----------------------------------------------------------------------------------


def _processes() -> dict[int, tuple[int, int]]:
    """pid -> (ppid, real uid) of every process still there when read."""
    found: dict[int, tuple[int, int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        ppid = uid = -1
        with contextlib.suppress(OSError):
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("PPid:"):
                    ppid = int(line.split()[1])
                elif line.startswith("Uid:"):
                    uid = int(line.split()[1])
                    break
        if ppid >= 0 and uid >= 0:
            found[int(entry.name)] = (ppid, uid)
    return found


def _descendants(root: int, processes: dict[int, tuple[int, int]]) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in processes.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _box_uids() -> dict[int, list[int]]:
    """Leased box uid -> its pids, over the boxes of this process only."""
    processes = _processes()
    boxes: dict[int, list[int]] = {}
    for pid in _descendants(os.getpid(), processes):
        uid = processes[pid][1]
        if UID_BASE <= uid < UID_BASE + UID_COUNT:
            boxes.setdefault(uid, []).append(pid)
    return boxes


def _pss_kb(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def _tree_pss_kb(pid: int) -> int:
    return sum(_pss_kb(p) for p in {pid, *_descendants(pid, _processes())})


def _sessions_memory(client: execbox.Client, count: int) -> tuple[float, float, int, int]:
    """PSS kB per idle session, caller-side kB per session, boxes and processes counted."""
    before = set(_box_uids())
    caller_before = _pss_kb(os.getpid())
    with contextlib.ExitStack() as stack:
        for _ in range(count):
            session = stack.enter_context(client.session())
            _execute_sync(session)
        time.sleep(MEMORY_SETTLE)
        boxes = {uid: pids for uid, pids in _box_uids().items() if uid not in before}
        pids = [pid for uid_pids in boxes.values() for pid in uid_pids]
        total = sum(_pss_kb(pid) for pid in pids)
        caller = _pss_kb(os.getpid()) - caller_before
    return total / count, caller / count, len(boxes), len(pids)


# -- the run ----------------------------------------------------------------------------------


async def _bench(options: argparse.Namespace) -> None:
    import execbox
    from execbox.paths import cache_dir

    runs, burst = options.runs, options.burst
    samples: dict[str, list[float]] = {
        name: []
        for name in (
            "host kernel start -> print(1)",
            "session cold -> print(1)",
            "session warm pool, enter",
            "session warm pool -> print(1)",
            "host kernel execute 1+1",
            "host kernel execute, no history",
            "session execute 1+1, sync",
            "session execute 1+1, async",
        )
    }
    cold_claims = 0
    async with contextlib.AsyncExitStack() as stack:
        cold = stack.enter_context(execbox.Client(pool_size=0, session_pool_size=0))
        warm = stack.enter_context(execbox.Client(pool_size=0, session_pool_size=1))
        aclient = await stack.enter_async_context(
            execbox.AsyncClient(pool_size=0, session_pool_size=0)
        )

        # Warm-up: the kernel package set (downloaded once into the cache), matplotlib's font
        # cache (built in the background after the first session), the pool's shelf, the host.
        started = time.perf_counter()
        _session_cold(cold)
        fonts = cache_dir() / "kernel-runtime" / "matplotlib"
        _wait_for_dir(fonts, 120)
        with warm.session() as session:
            _first_print(session, time.perf_counter())
        if not _wait_refill(warm):
            raise SystemExit("the warm pool did not refill within its bound")
        await _host_start_to_print()
        print(f"warm-up: {time.perf_counter() - started:.1f} s (fonts cached: {fonts.is_dir()})")

        session = stack.enter_context(cold.session())
        asession = await stack.enter_async_context(aclient.session())
        host_manager, host_kernel = await _host_kernel()
        stack.push_async_callback(_host_stop, host_manager, host_kernel)
        bare_manager, bare_kernel = await _host_kernel(history=False)
        stack.push_async_callback(_host_stop, bare_manager, bare_kernel)
        for _ in range(3):
            _execute_sync(session)
            await _execute_async(asession)
            await _host_execute(host_kernel)
            await _host_execute(bare_kernel)

        for _ in range(runs):
            samples["host kernel start -> print(1)"].append(await _host_start_to_print())
            await asyncio.sleep(SETTLE)
            samples["session cold -> print(1)"].append(_session_cold(cold))
            await asyncio.sleep(SETTLE)
            entered, printed, was_warm = _session_warm(warm)
            samples["session warm pool, enter"].append(entered)
            samples["session warm pool -> print(1)"].append(printed)
            cold_claims += not was_warm
            if not _wait_refill(warm):  # the refill must not land on the next row's clock
                raise SystemExit("the warm pool did not refill within its bound")
            await _host_execute(host_kernel)
            for _ in range(burst):
                samples["host kernel execute 1+1"].append(await _host_execute(host_kernel))
            await asyncio.sleep(SETTLE)
            await _host_execute(bare_kernel)
            for _ in range(burst):
                samples["host kernel execute, no history"].append(await _host_execute(bare_kernel))
            await asyncio.sleep(SETTLE)
            _execute_sync(session)
            for _ in range(burst):
                samples["session execute 1+1, sync"].append(_execute_sync(session))
            await asyncio.sleep(SETTLE)
            await _execute_async(asession)
            for _ in range(burst):
                samples["session execute 1+1, async"].append(await _execute_async(asession))
            await asyncio.sleep(SETTLE)

        await asyncio.sleep(MEMORY_SETTLE)
        host_pid = host_manager.provisioner.process.pid  # type: ignore[union-attr]
        host_kb = _tree_pss_kb(host_pid)
        session_kb, caller_kb, boxes, processes = _sessions_memory(cold, options.sessions)

    floors = {
        "host kernel start -> print(1)": "host kernel start -> print(1)",
        "session cold -> print(1)": "host kernel start -> print(1)",
        "session warm pool, enter": "host kernel start -> print(1)",
        "session warm pool -> print(1)": "host kernel start -> print(1)",
        "host kernel execute 1+1": "host kernel execute, no history",
        "host kernel execute, no history": "host kernel execute, no history",
        "session execute 1+1, sync": "host kernel execute, no history",
        "session execute 1+1, async": "host kernel execute, no history",
    }
    medians = {name: statistics.median(values) for name, values in samples.items()}
    p95s = {name: _percentile95(values) for name, values in samples.items()}
    print(f"\n{'measure':<40} {'n':>4} {'median ms':>10} {'p95 ms':>8} {'x host floor':>13}")
    for name, values in samples.items():
        label = f"{name} (floor)" if floors[name] == name else name
        ratio = medians[name] / medians[floors[name]]
        print(
            f"{label:<40} {len(values):>4} {medians[name]:>10.1f} {p95s[name]:>8.1f} {ratio:>13.2f}"
        )

    host_per_gib = GIB_KB / host_kb
    session_per_gib = GIB_KB / session_kb
    print(f"\n{'idle memory (PSS)':<40} {'MiB each':>9} {'per GiB':>8} {'x host floor':>13}")
    print(f"{'host kernel (floor)':<40} {host_kb / 1024:>9.1f} {host_per_gib:>8.1f} {1:>13.2f}")
    label = f"session ({boxes} boxes, {processes} procs)"
    ratio = session_per_gib / host_per_gib
    print(f"{label:<40} {session_kb / 1024:>9.1f} {session_per_gib:>8.1f} {ratio:>13.2f}")
    print(f"{'caller-side, per session (info)':<40} {caller_kb / 1024:>9.1f}")
    if boxes != options.sessions:
        print(f"warning: {boxes} new boxes counted for {options.sessions} sessions")
    if cold_claims:
        print(f"warning: {cold_claims} warm-pool claims found the pool empty")

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    cold_ms = medians["session cold -> print(1)"]
    cold_verdict = verdict(cold_ms <= 300)
    enter_ms = medians["session warm pool, enter"]
    print(f"\ntarget session cold -> print(1) <= 300 ms median: {cold_ms:.1f} {cold_verdict}")
    print(f"target warm pool enter <= 20 ms median: {enter_ms:.1f} {verdict(enter_ms <= 20)}")
    for api in ("sync", "async"):
        name = f"session execute 1+1, {api}"
        ok = medians[name] <= 5 and p95s[name] <= 10
        print(
            f"target execute 1+1 ({api}) <= 5 ms median, <= 10 ms p95: "
            f"{medians[name]:.1f} / {p95s[name]:.1f} {verdict(ok)}"
        )
    print(
        f"target idle sessions per GiB >= 25: {session_per_gib:.1f} "
        f"{verdict(session_per_gib >= 25)}"
    )
    print("peers: ipybox 3.1 s start -> print(1), 44.8 ms execute, 6 sessions per GiB")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--burst", type=int, default=10, help="executions per round per row")
    parser.add_argument("--sessions", type=int, default=8, help="idle sessions for memory")
    options = parser.parse_args()
    # A state directory of our own (box uids must traverse it); the shared package cache stays.
    state = tempfile.mkdtemp(prefix="execbox-bench-state-")
    os.chmod(state, 0o755)  # noqa: S103 - box uids bind files from it
    os.environ["EXECBOX_STATE_DIR"] = state
    started, load = time.perf_counter(), os.getloadavg()[0]
    try:
        asyncio.run(_bench(options))
    finally:
        shutil.rmtree(state, ignore_errors=True)
    elapsed = time.perf_counter() - started
    # The machines are shared: a high load average means other work shared the 2 cores.
    print(f"run time: {elapsed:.1f} s; 1-min load average {load:.2f} before, ", end="")
    print(f"{os.getloadavg()[0]:.2f} after ({os.cpu_count()} cpus)")


if __name__ == "__main__":
    main()
