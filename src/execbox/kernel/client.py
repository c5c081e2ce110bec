"""A kernel in a box and the host's end of its channels.

The kernel binds ZMQ ipc sockets inside the box (in its own tmpfs, never a host directory it
could fill); the host reaches them through ``/proc/self/fd/N`` paths of ``O_PATH`` descriptors
that pin those very sockets, so a link planted by the box's code is never followed, even on a
reconnect. Readiness is one ``kernel_info`` round trip plus one iopub message, with a 5 ms
reconnect interval: none of jupyter_client's fixed waits. Message framing and signing are
``jupyter_client.session.Session``'s; every message from the box is untrusted and a bad one is
dropped.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import signal
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import anyio.abc
import zmq
import zmq.asyncio
from jupyter_client.session import Session

from ..boxes.base import Box, FileEntry, Process
from ..errors import BoxError, KernelError
from ..waits import first
from .outputs import ExecutionRecorder
from .runtime import KERNEL_DIR, KernelLaunch

__all__ = ["Kernel", "start_kernel"]

log = logging.getLogger("execbox.kernel")

CHANNELS = ("shell", "iopub", "stdin", "control")
PORTS = {"shell": 1, "iopub": 2, "stdin": 3, "control": 4, "hb": 5}
START_TIMEOUT = 30.0
RECONNECT_MS = 5
STDERR_TAIL = 8192

Handler = Callable[[str, dict[str, Any]], None]


class Kernel:
    """One kernel process in a box: send requests, route what comes back by parent id."""

    def __init__(self, box: Box, process: Process, name: str, key: bytes) -> None:
        self.box = box
        self.process = process
        self.name = name
        self.session = Session(key=key, signature_scheme="hmac-sha256", username="execbox")
        self._context = zmq.asyncio.Context.instance()  # one I/O thread for every kernel
        self._sockets: dict[str, zmq.asyncio.Socket] = {}
        self._pins: list[int] = []
        self._handlers: dict[str, Handler] = {}
        self._iopub_seen = anyio.Event()
        self.exited = anyio.Event()
        self.exit_code: int | None = None
        self.exit_signal: int | None = None
        self._stderr = bytearray()
        self._scope = anyio.CancelScope()
        self._stopped = anyio.Event()
        self._started = False
        self._readers: anyio.abc.TaskGroup

    # -- wiring --------------------------------------------------------------------------------

    def _connect(self, channel: str, pin: int) -> None:
        kind = {"shell": zmq.DEALER, "iopub": zmq.SUB, "stdin": zmq.DEALER, "control": zmq.DEALER}
        sock = self._context.socket(kind[channel])
        sock.linger = 0
        sock.setsockopt(zmq.RECONNECT_IVL, RECONNECT_MS)
        if channel in ("shell", "stdin"):
            sock.identity = self.session.bsession  # input requests are routed to the shell's id
        if channel == "iopub":
            sock.setsockopt(zmq.RCVHWM, 100_000)  # never drop output while the loop is busy
            sock.subscribe(b"")
        sock.connect(f"ipc:///proc/{os.getpid()}/fd/{pin}")
        self._sockets[channel] = sock

    async def _run(self, task_status: anyio.abc.TaskStatus[None]) -> None:
        try:
            with self._scope:
                async with anyio.create_task_group() as tg:
                    self._readers = tg
                    tg.start_soon(self._watch_process)
                    task_status.started()
        finally:
            self._stopped.set()

    def _listen(self, channel: str) -> None:
        if channel != "control":
            self._readers.start_soon(self._read, channel)

    async def _read(self, channel: str) -> None:
        sock = self._sockets[channel]
        while True:
            try:
                frames = await sock.recv_multipart(copy=False)
            except zmq.ZMQError:
                return
            try:
                _idents, parts = self.session.feed_identities(frames, copy=False)
                message = self.session.deserialize(parts, content=True, copy=False)
            except Exception:
                log.debug("dropped a malformed %s message from kernel in %s", channel, self.box.id)
                continue
            if channel == "iopub":
                self._iopub_seen.set()
            parent = message.get("parent_header")
            parent_id = parent.get("msg_id") if isinstance(parent, dict) else None
            handler = self._handlers.get(parent_id) if isinstance(parent_id, str) else None
            if handler is not None:
                handler(channel, message)

    async def _watch_process(self) -> None:
        async def drain(stream: anyio.abc.ByteReceiveStream, keep: bool) -> None:
            with contextlib.suppress(anyio.EndOfStream, anyio.ClosedResourceError, OSError):
                async for chunk in stream:
                    if keep:
                        self._stderr += chunk
                        del self._stderr[:-STDERR_TAIL]

        async with anyio.create_task_group() as tg:
            tg.start_soon(drain, self.process.stdout, False)
            tg.start_soon(drain, self.process.stderr, True)
            info = await self.process.wait()
            self.exit_code, self.exit_signal = info.exit_code, info.signal
            self.exited.set()
            for handler in list(self._handlers.values()):
                handler("exit", {})  # whoever waits on this kernel learns it is gone
            with anyio.move_on_after(0.5):  # the last words on stderr, for the error message
                await anyio.sleep(0.05)
            tg.cancel_scope.cancel()

    @property
    def stderr_tail(self) -> str:
        return self._stderr.decode(errors="replace").strip()[-2000:]

    # -- requests ------------------------------------------------------------------------------

    def send(
        self, channel: str, msg_type: str, content: Mapping[str, Any], handler: Handler | None
    ) -> str:
        """Send a request; ``handler`` gets every message whose parent it is, on any channel."""
        message = self.session.msg(msg_type, content=dict(content))
        msg_id: str = message["header"]["msg_id"]
        if handler is not None:
            self._handlers[msg_id] = handler
        self.session.send(self._sockets[channel], message)
        return msg_id

    async def ask(
        self, msg_type: str, content: Mapping[str, Any], *, timeout: float
    ) -> dict[str, Any] | None:
        """A shell request's reply content; None if none came within ``timeout`` (the kernel
        answers between cells) or the kernel died."""
        reply: dict[str, Any] | None = None
        answered = anyio.Event()

        def on_message(channel: str, message: dict[str, Any]) -> None:
            nonlocal reply
            if channel == "shell":
                content = message.get("content")
                reply = content if isinstance(content, dict) else {}
                answered.set()
            elif channel == "exit":
                answered.set()

        msg_id = self.send("shell", msg_type, content, on_message)
        try:
            with anyio.move_on_after(timeout):
                await answered.wait()
        finally:
            self.forget(msg_id)
        return reply

    async def run_silent(self, code: str, *, timeout: float) -> None:
        """Run set-up code that leaves no trace in history or output; KernelError if it fails."""
        recorder = ExecutionRecorder(output_limit=1 << 20)
        settled = anyio.Event()

        def on_message(channel: str, message: dict[str, Any]) -> None:
            recorder.feed(channel, message)
            if recorder.done or channel == "exit":
                settled.set()

        content = {"code": code, "silent": True, "store_history": False, "allow_stdin": False}
        msg_id = self.send("shell", "execute_request", content, on_message)
        try:
            with anyio.move_on_after(timeout):
                await settled.wait()
        finally:
            self.forget(msg_id)
        if not recorder.done:
            raise KernelError(f"the {self.name} kernel did not finish its set-up")
        if recorder.reply_status != "ok":
            raise KernelError(f"the {self.name} kernel's set-up failed: {recorder.error}")

    def forget(self, msg_id: str) -> None:
        self._handlers.pop(msg_id, None)

    def reply_input(self, value: str) -> None:
        self.session.send(self._sockets["stdin"], self.session.msg("input_reply", {"value": value}))

    async def interrupt(self) -> None:
        """SIGINT to the kernel's process group: the cell and the commands it started."""
        with contextlib.suppress(BoxError):
            await self.process.signal(signal.SIGINT)

    async def wait_ready(self, timeout: float) -> None:
        """One kernel_info reply and one iopub message: the kernel answers and we hear it."""
        with anyio.fail_after(timeout):
            while True:
                if self.exited.is_set():
                    raise KernelError(self._death_message())
                if await self.ask("kernel_info_request", {}, timeout=0.05) is not None:
                    with anyio.move_on_after(0.05):
                        await self._iopub_seen.wait()
                    if self._iopub_seen.is_set():
                        return

    def _death_message(self) -> str:
        how = f"signal {self.exit_signal}" if self.exit_signal else f"status {self.exit_code}"
        tail = self.stderr_tail
        return f"the {self.name} kernel exited ({how})" + (f": {tail}" if tail else "")

    async def stop(self) -> None:
        """Kill the kernel process and close our sockets; the box stays."""
        with anyio.CancelScope(shield=True):
            with contextlib.suppress(BoxError):
                await self.process.kill()
            # The watcher sets ``exited``, unless shutdown already cancelled it: then the
            # process's own exit is the news (either, so a shutdown does not wait 2 s for nothing).
            with anyio.move_on_after(2.0):
                await first(self.exited.wait, self._process_ended)
            await self.close()

    async def _process_ended(self) -> None:
        with contextlib.suppress(BoxError):
            await self.process.wait()

    async def close(self) -> None:
        """Stop listening and let go of the sockets (the readers first, then the sockets)."""
        with anyio.CancelScope(shield=True):
            self._scope.cancel()
            if self._started:
                await self._stopped.wait()
            for sock in self._sockets.values():
                sock.close(linger=0)
            self._sockets.clear()
            for pin in self._pins:
                with contextlib.suppress(OSError):
                    os.close(pin)
            self._pins.clear()
            self._handlers.clear()


async def start_kernel(
    box: Box,
    launch: KernelLaunch,
    task_group: anyio.abc.TaskGroup,
    *,
    generation: int = 0,
    cwd: str = "/workspace",
    env: Mapping[str, str] | None = None,
    timeout: float = START_TIMEOUT,
) -> Kernel:
    """Start ``launch`` in ``box`` and return it connected and ready.

    Each (re)start gets socket names of its own, unguessable, so a restart never meets the
    sockets of the kernel before it nor anything the box's code planted in advance.
    """
    key = secrets.token_hex(32)
    stem = f"{KERNEL_DIR}/k{generation}-{secrets.token_hex(4)}"
    connection = {
        "transport": "ipc",
        "ip": stem,
        **{f"{channel}_port": port for channel, port in PORTS.items()},
        "key": key,
        "signature_scheme": "hmac-sha256",
        "kernel_name": launch.name,
    }
    scratch = KERNEL_DIR.removeprefix("/tmp/")
    await box.put_files(
        [
            FileEntry(scratch, kind="dir", mode=0o700),
            FileEntry(f"{scratch}/packages", kind="dir", mode=0o755),
            FileEntry(f"{scratch}/kernel.json", data=json.dumps(connection).encode(), mode=0o600),
        ],
        "/tmp",
        replace=True,
    )
    process = await box.exec(launch.argv, env={**launch.env, **(env or {})}, cwd=cwd)
    kernel = Kernel(box, process, launch.name, key.encode())
    try:
        await task_group.start(kernel._run)
        kernel._started = True
        with anyio.fail_after(timeout):
            for channel in CHANNELS:
                pin = await _wait_for_socket(kernel, f"{stem}-{PORTS[channel]}")
                kernel._pins.append(pin)
                kernel._connect(channel, pin)
                kernel._listen(channel)
            await kernel.wait_ready(timeout)
    except TimeoutError:
        await kernel.stop()
        raise KernelError(
            f"the {launch.name} kernel did not start within {timeout:g} s"
            + (f": {kernel.stderr_tail}" if kernel.stderr_tail else "")
        ) from None
    except BaseException:
        await kernel.stop()
        raise
    return kernel


async def _wait_for_socket(kernel: Kernel, path: str) -> int:
    delay = 0.002
    while True:
        if kernel.exited.is_set():
            raise KernelError(kernel._death_message())
        try:
            return await kernel.box.open_unix_socket(path)
        except FileNotFoundError:
            await anyio.sleep(delay)
            delay = min(delay * 1.5, 0.02)
        except BoxError as exc:  # a link or a file where the kernel's socket should be
            message = f"the {kernel.name} kernel's channels were tampered with: {exc}"
            raise KernelError(message) from None
