"""The local backend: boxes made of bubblewrap namespaces, cgroups, seccomp and rlimits.

Life of a box: lease an unprivileged uid, record the box on disk (so a crashed service's boxes
can be reaped), create its cgroup, start bwrap as that uid with the agent as pid 1, wait for the
agent's hello, move bwrap and the agent into the cgroup (nothing else runs yet), then serve
requests. Destroying it freezes and kills the cgroup, kills the pid namespace's init, and removes
every trace.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import marshal
import os
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import anyio
import anyio.abc

from ...errors import BoxError, ExecboxError, InvalidFiles, IsolationUnavailable, PathNotFound
from ...models import Usage
from ...paths import state_dir
from ..base import WORKSPACE, BoxSpec, BoxStats, DirEntry, ExitInfo, FileEntry, Protection
from . import seccomp
from .bwrap import BoxLayout, bwrap_argv, write_runtime
from .cgroups import BoxCgroup
from .host import HostFacts, box_python, probe, system_site_packages
from .streams import FdReceiveStream, close_quietly, write_all
from .uids import UidLease, UidPool, kill_uid, uid_leases

__all__ = ["LocalBackend", "LocalBox", "LocalProcess"]

log = logging.getLogger("execbox.boxes.local")

READY_TIMEOUT = 15.0
SETPRIV = shutil.which("setpriv", path="/usr/bin:/bin:/usr/sbin:/sbin")
"""util-linux's setpriv, to start bwrap as a box's uid without a full fork of this process."""
LISTING_BYTES = 16 << 20
AS_SLACK = 1 << 30
DIR_KINDS = ("file", "dir", "symlink", "other")
BASE_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": WORKSPACE,
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "USER": "box",
    "TMPDIR": "/tmp",
}


def _process_start(pid: int) -> str | None:
    """Start time of a process (field 22 of /proc/PID/stat): a pid alone can be reused."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()[19]


@dataclass
class _Pending:
    done: anyio.Event = field(default_factory=anyio.Event)
    reply: dict[str, Any] = field(default_factory=dict)


class LocalProcess:
    def __init__(
        self,
        box: LocalBox,
        rid: int,
        stdout_fd: int,
        stderr_fd: int,
        stdin_fd: int | None,
    ) -> None:
        self._box = box
        self._rid = rid
        self._stdout = FdReceiveStream(stdout_fd)
        self._stderr = FdReceiveStream(stderr_fd)
        self._stdin_fd = stdin_fd
        if stdin_fd is not None:
            os.set_blocking(stdin_fd, False)
        self._started = time.monotonic()
        self._exit = _Pending()

    @property
    def stdout(self) -> anyio.abc.ByteReceiveStream:
        return self._stdout

    @property
    def stderr(self) -> anyio.abc.ByteReceiveStream:
        return self._stderr

    async def send_stdin(self, data: bytes) -> None:
        if self._stdin_fd is None:
            raise BoxError("this process was started without a stdin pipe")
        with contextlib.suppress(BrokenPipeError):  # it stopped reading: its choice
            await write_all(self._stdin_fd, data)

    async def close_stdin(self) -> None:
        if self._stdin_fd is not None:
            fd, self._stdin_fd = self._stdin_fd, None
            close_quietly(fd)

    def _exited(self, reply: dict[str, Any]) -> None:
        self._exit.reply = reply
        self._exit.done.set()

    async def wait(self) -> ExitInfo:
        await self._exit.done.wait()
        reply = self._exit.reply
        usage = Usage(
            wall_seconds=time.monotonic() - self._started,
            cpu_seconds=float(reply.get("cpu") or 0.0),
            peak_memory_bytes=int(reply.get("maxrss") or 0),
        )
        code, sig = reply.get("code"), reply.get("signal")
        return ExitInfo(
            exit_code=code if isinstance(code, int) else None,
            signal=sig if isinstance(sig, int) else (None if isinstance(code, int) else 9),
            usage=usage,
        )

    async def kill(self) -> None:
        await self.signal(signal.SIGKILL)

    async def signal(self, signum: int) -> None:
        await self._box._send({"op": "kill", "id": self._rid, "signal": int(signum)})

    async def aclose(self) -> None:
        await self.close_stdin()
        await self._stdout.aclose()
        await self._stderr.aclose()


class LocalBox:
    def __init__(self, backend: LocalBackend, spec: BoxSpec) -> None:
        self._backend = backend
        self.spec = spec
        self._id = f"box-{backend.tag}-{secrets.token_hex(8)}"
        self._lease: UidLease | None = None
        self._cgroup: BoxCgroup | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._init_pid: int | None = None
        self._init_start: str | None = None
        self._pending: dict[int, _Pending] = {}
        self._processes: dict[int, LocalProcess] = {}
        self._ids = itertools.count(1)
        self._ready = anyio.Event()
        self._scope = anyio.CancelScope()
        self._reader_done = anyio.Event()
        self._reader_started = False
        self._destroyed = False
        self._dead = False
        self._record = backend.records / f"{self._id}.json"

    @property
    def id(self) -> str:
        return self._id

    # -- start --------------------------------------------------------------------------------

    async def _start(self) -> None:
        backend, facts = self._backend, self._backend.facts
        assert facts.bwrap is not None
        if facts.root:
            self._lease = backend.uids.lease()
        self._write_record()
        if facts.cgroups is not None:
            self._cgroup = facts.cgroups.create(self._id, self.spec.limits)
        host_end, box_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        info_read, info_write = os.pipe2(os.O_CLOEXEC)
        seccomp_fd = seccomp.open_filter_fd() if facts.seccomp else None
        pass_fds = [box_end.fileno(), info_write] + ([seccomp_fd] if seccomp_fd is not None else [])
        config = marshal.dumps({"control_fd": box_end.fileno(), "rlimits": self._rlimits()}).hex()
        argv = bwrap_argv(
            facts.bwrap,
            backend.layout,
            self.spec,
            seccomp_fd=seccomp_fd,
            info_fd=info_write,
            agent_config=config,
        )
        uid = self._lease.uid if self._lease else None
        identity: dict[str, Any] = {}
        if uid is not None and SETPRIV:
            # setpriv drops to the box's uid after the exec: Popen's own user= forces a full
            # fork() of this process, ~7 ms of a blocked event loop for a 100 MB server.
            argv = [SETPRIV, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--", *argv]
        elif uid is not None:
            identity = {"user": uid, "group": uid, "extra_groups": []}
        try:
            # Popen, not asyncio's subprocess machinery: 1.5 ms less per box; exit via a pidfd.
            self._proc = subprocess.Popen(  # noqa: ASYNC220 - vfork: 0.15 ms, never blocks long
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env=BASE_ENV,
                cwd="/",
                pass_fds=pass_fds,
                # Its own session: a terminal's Ctrl-C reaches the program driving the box (which
                # interrupts the kernel or kills the job), never the box's processes directly.
                start_new_session=True,
                **identity,
            )
        finally:
            box_end.close()
            os.close(info_write)
            if seccomp_fd is not None:
                os.close(seccomp_fd)
        if self._cgroup is not None:
            # At once, before bwrap forks: what it forks is born in the cgroup, where kill_all
            # reaches it whatever happens to the start.
            with contextlib.suppress(ProcessLookupError, OSError):
                self._cgroup.attach(self._proc.pid)
        assert self._proc.stderr is not None
        os.set_blocking(self._proc.stderr.fileno(), False)
        host_end.setblocking(False)
        self._sock = host_end
        try:
            # Shielded: bwrap's inner child waits for its parent before it re-arms its
            # parent-death signal, so a kill in that window (a cancelled start) would leave it
            # waiting for ever. Once bwrap names it, destroy() can kill it by its pid.
            with anyio.fail_after(READY_TIMEOUT, shield=True):
                info = await self._read_info(info_read)
            self._init_pid = int(info["child-pid"])
            self._init_start = _process_start(self._init_pid)
            with anyio.fail_after(READY_TIMEOUT):
                hello = await self._receive()
            if hello.get("ev") != "ready":
                raise BoxError(f"box agent said {hello!r} instead of hello")
        except (TimeoutError, OSError, KeyError, ValueError, anyio.EndOfStream) as exc:
            detail = await self._bwrap_stderr()
            raise BoxError(f"box did not start: {detail or exc!r}") from None
        finally:
            close_quietly(info_read)
        if self._cgroup is not None:  # the init again, in case bwrap forked before the attach
            with contextlib.suppress(ProcessLookupError, OSError):
                self._cgroup.attach(self._init_pid)
        self._write_record()
        backend.task_group.start_soon(self._read_loop)
        self._reader_started = True

    def _rlimits(self) -> dict[str, int]:
        limits, groups = self.spec.limits, self._backend.facts.cgroups
        controllers = groups.controllers if groups else frozenset()
        rlimits = {"core": 0, "nofile": 4096, "fsize": limits.disk_bytes}
        if "memory" not in controllers:
            # Address space, not memory: a kernel's threads reserve ~600 MiB they never touch.
            rlimits["as"] = limits.memory_bytes + AS_SLACK
        if "pids" not in controllers:
            # Counted per uid *per user namespace* (kernel 5.14+): the box's own namespace makes
            # it a per-box count even when every box runs as the same host uid.
            rlimits["nproc"] = limits.pids
        return rlimits

    def _write_record(self) -> None:
        record = {
            "id": self._id,
            "owner_pid": os.getpid(),
            "owner_start": _process_start(os.getpid()),
            "init_pid": self._init_pid,
            "init_start": self._init_start,
            "label": self.spec.label,
        }
        temporary = self._record.with_suffix(".tmp")
        temporary.write_text(json.dumps(record))
        temporary.replace(self._record)

    async def _read_info(self, fd: int) -> dict[str, Any]:
        buffer = b""
        while True:
            await anyio.wait_readable(fd)
            chunk = os.read(fd, 4096)
            buffer += chunk
            with contextlib.suppress(ValueError):
                parsed: dict[str, Any] = json.loads(buffer)
                return parsed
            if not chunk:
                raise BoxError(f"bwrap gave no child pid ({buffer!r})")

    async def _bwrap_stderr(self) -> str:
        if self._proc is None or self._proc.stderr is None:
            return ""
        await self._wait_bwrap(1.0)
        try:
            data = os.read(self._proc.stderr.fileno(), 4096)
        except OSError:
            return ""
        return data.decode(errors="replace").strip()

    async def _wait_bwrap(self, timeout: float) -> bool:
        """Wait for the bwrap process to end, without a thread: its pidfd becomes readable."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return True
        try:
            pidfd = os.pidfd_open(proc.pid)
        except OSError:
            return proc.poll() is not None
        try:
            with anyio.move_on_after(timeout):
                await anyio.wait_readable(pidfd)
        finally:
            os.close(pidfd)
        return proc.poll() is not None

    # -- the control channel ------------------------------------------------------------------

    async def _receive(self) -> dict[str, Any]:
        assert self._sock is not None
        while True:
            try:
                data = self._sock.recv(1 << 20)
            except BlockingIOError:
                await anyio.wait_readable(self._sock)
                continue
            if not data:
                raise anyio.EndOfStream
            message = json.loads(data)
            if not isinstance(message, dict):
                raise BoxError("box agent sent a malformed message")
            return message

    async def _read_loop(self) -> None:
        try:
            with self._scope:
                while True:
                    message = await self._receive()
                    self._dispatch(message)
        except (anyio.EndOfStream, OSError, ValueError, BoxError):
            pass
        finally:
            self._on_agent_gone()
            self._reader_done.set()

    def _dispatch(self, message: dict[str, Any]) -> None:
        rid = message.get("id")
        if not isinstance(rid, int):
            return
        if message.get("ev") == "exit":
            process = self._processes.pop(rid, None)
            if process is not None:
                process._exited(message)
            return
        pending = self._pending.pop(rid, None)
        if pending is not None:
            pending.reply = message
            pending.done.set()

    def _on_agent_gone(self) -> None:
        self._dead = True
        for pending in self._pending.values():
            pending.reply = {"ev": "error", "error": "the box is gone"}
            pending.done.set()
        self._pending.clear()
        for process in self._processes.values():
            process._exited({"code": None, "signal": int(signal.SIGKILL)})
        self._processes.clear()

    async def _send(self, message: dict[str, Any], fds: Sequence[int] = ()) -> None:
        if self._sock is None or self._dead:
            raise BoxError(f"box {self._id} is not running")
        payload = marshal.dumps(message)
        while True:
            try:
                socket.send_fds(self._sock, [payload], list(fds))
                return
            except BlockingIOError:
                await anyio.wait_writable(self._sock)
            except OSError as exc:
                raise BoxError(f"box {self._id} is not running ({exc})") from None

    async def _call(self, message: dict[str, Any], fds: Sequence[int] = ()) -> dict[str, Any]:
        rid = next(self._ids)
        pending = self._pending[rid] = _Pending()
        try:
            await self._send({**message, "id": rid}, fds)
        except BaseException:
            self._pending.pop(rid, None)
            raise
        await pending.done.wait()
        if pending.reply.get("ev") == "error":
            raise _agent_error(str(pending.reply.get("error")))
        return pending.reply

    # -- the Box protocol ---------------------------------------------------------------------

    async def exec(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str = WORKSPACE,
        stdin: Literal["pipe", "null"] = "null",
    ) -> LocalProcess:
        if not argv:
            raise BoxError("nothing to run: empty argv")
        stdout_read, stdout_write = os.pipe2(os.O_CLOEXEC)
        stderr_read, stderr_write = os.pipe2(os.O_CLOEXEC)
        stdin_read, stdin_write = os.pipe2(os.O_CLOEXEC)
        if stdin == "null":
            close_quietly(stdin_write)
            stdin_write = -1
        rid = next(self._ids)
        process = LocalProcess(
            self, rid, stdout_read, stderr_read, stdin_write if stdin_write >= 0 else None
        )
        full_env = {**BASE_ENV, **self.spec.env, **(env or {})}
        pending = self._pending[rid] = _Pending()
        self._processes[rid] = process
        try:
            await self._send(
                {"op": "spawn", "id": rid, "argv": list(argv), "env": full_env, "cwd": cwd},
                [stdin_read, stdout_write, stderr_write],
            )
        except BaseException:
            self._pending.pop(rid, None)
            self._processes.pop(rid, None)
            await process.aclose()
            raise
        finally:
            for fd in (stdin_read, stdout_write, stderr_write):
                close_quietly(fd)
        await pending.done.wait()
        if pending.reply.get("ev") == "error":
            self._processes.pop(rid, None)
            await process.aclose()
            raise BoxError(str(pending.reply.get("error")))
        return process

    async def put_files(
        self, entries: Sequence[FileEntry], path: str = WORKSPACE, *, replace: bool = False
    ) -> None:
        fd = os.memfd_create("execbox-upload", os.MFD_CLOEXEC)
        try:
            await write_all(fd, marshal.dumps([entry.as_tuple() for entry in entries]))
            os.lseek(fd, 0, os.SEEK_SET)
            await self._call({"op": "put", "path": path, "replace": replace}, [fd])
        finally:
            close_quietly(fd)

    async def get_file(self, path: str, *, max_bytes: int = 64 << 20) -> bytes:
        fd = os.memfd_create("execbox-download", os.MFD_CLOEXEC)
        try:
            await self._call({"op": "get", "path": path, "max": max_bytes}, [fd])
            os.lseek(fd, 0, os.SEEK_SET)
            return os.read(fd, max_bytes)  # never more than asked, whatever the box claims
        finally:
            close_quietly(fd)

    async def list_dir(self, path: str = WORKSPACE) -> list[DirEntry]:
        fd = os.memfd_create("execbox-listing", os.MFD_CLOEXEC)
        try:
            await self._call({"op": "list", "path": path}, [fd])
            os.lseek(fd, 0, os.SEEK_SET)
            raw = os.read(fd, LISTING_BYTES)
        finally:
            close_quietly(fd)
        try:
            return [
                DirEntry(
                    name=str(item["name"]),
                    kind=item["kind"] if item["kind"] in DIR_KINDS else "other",
                    size=int(item["size"]),
                    modified=float(item["mtime"]),
                )
                for item in json.loads(raw)
            ]
        except (ValueError, TypeError, KeyError) as exc:  # the agent shares the box's uid
            raise BoxError(f"box {self._id} sent a malformed listing") from exc

    async def remove(self, path: str) -> None:
        await self._call({"op": "rm", "path": path})

    async def open_unix_socket(self, path: str) -> int:
        if not self._init_pid or _process_start(self._init_pid) != self._init_start:
            raise BoxError(f"box {self._id} is not running")
        parts = [part for part in path.split("/") if part]
        if not path.startswith("/") or not parts or ".." in parts:
            raise BoxError(f"not an absolute box path: {path!r}")
        # /proc/PID/root is the box's root; from there, no component may be a link.
        fd = os.open(f"/proc/{self._init_pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for index, part in enumerate(parts):
                last = index == len(parts) - 1
                flags = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC | (0 if last else os.O_DIRECTORY)
                following = os.open(part, flags, dir_fd=fd)
                os.close(fd)
                fd = following
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                raise BoxError(f"{path!r} in box {self._id} is not a unix socket")
        except FileNotFoundError:
            close_quietly(fd)
            raise
        except OSError as exc:
            close_quietly(fd)
            raise BoxError(f"cannot reach {path!r} in box {self._id}: {exc.strerror}") from None
        except BaseException:
            close_quietly(fd)
            raise
        return fd

    async def stats(self, *, reset_peak: bool = False) -> BoxStats:
        if self._cgroup is None:
            return BoxStats(usage=Usage())
        cgroup, groups = self._cgroup, self._backend.facts.cgroups
        stats = BoxStats(
            usage=cgroup.usage(),
            oom_kills=cgroup.oom_kills(),
            pids_refusals=cgroup.pids_refusals(),
            memory_counted=groups is not None and "memory" in groups.controllers,
        )
        if reset_peak:
            cgroup.reset_peak()
        return stats

    async def destroy(self) -> None:
        if self._destroyed:
            return
        self._destroyed = True
        with anyio.CancelScope(shield=True):
            # The box's init first: the kernel ends its whole pid namespace at once, and bwrap
            # (its parent) reaps it, so no dead agent is left to the host's init to collect.
            if self._init_pid and _process_start(self._init_pid) == self._init_start:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(self._init_pid, signal.SIGKILL)
            if self._sock is not None:
                # The reader must let go of the fd before it is closed: its number is reused.
                self._scope.cancel()
                if self._reader_started:
                    await self._reader_done.wait()
                self._sock.close()
            if self._proc is not None:
                if not await self._wait_bwrap(2.0):
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        self._proc.kill()
                    await self._wait_bwrap(2.0)
                if self._proc.stderr is not None:
                    self._proc.stderr.close()
            # Then freeze, kill and thaw whatever the cgroup still holds.
            if self._cgroup is not None:
                await anyio.to_thread.run_sync(self._cgroup.kill_all)
            if self._lease is not None and not self._reader_started:
                # A start that failed (bwrap never named its child in time) may have left a
                # process outside the cgroup: the uid is this box's alone, so whatever still
                # runs as it is the box's.
                await anyio.to_thread.run_sync(kill_uid, self._lease.uid)
            self._on_agent_gone()
            if self._cgroup is not None:
                await anyio.to_thread.run_sync(self._cgroup.remove)
            if self._lease is not None:
                self._lease.release()
            self._record.unlink(missing_ok=True)
            self._backend._forget(self)

    async def __aenter__(self) -> LocalBox:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.destroy()


class LocalBackend:
    """Boxes on this host. Use as an async context manager: it owns the boxes' reader tasks."""

    name = "local"

    def __init__(self, *, state: Path | None = None, require_cgroups: bool = False) -> None:
        self.facts: HostFacts = probe()
        self._require_cgroups = require_cgroups
        root = state or state_dir()
        # Engines with other state directories may share our cgroup parent: their boxes carry
        # another tag, so reaping never touches them.
        self.tag = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:6]
        python, prefix = box_python()
        self.layout = BoxLayout(
            write_runtime(root / "runtime"), python, prefix, system_site_packages(python)
        )
        self.records = root / "boxes"
        self.records.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.uids = UidPool(uid_leases(root))
        self._boxes: set[LocalBox] = set()
        self._exit_stack: contextlib.AsyncExitStack | None = None
        self.task_group: anyio.abc.TaskGroup

    def protections(self) -> list[Protection]:
        return self.facts.protections()

    def _check_host(self) -> None:
        if not self.facts.usable:
            raise IsolationUnavailable(
                "cannot isolate code on this host: "
                + (self.facts.namespaces_detail or "bubblewrap (bwrap) is not installed")
                + "; run `execbox doctor`"
            )
        if self._require_cgroups and self.facts.cgroups is None:
            raise IsolationUnavailable(
                "cgroups are required but not writable here: "
                + "; ".join(self.facts.cgroup_problems)
            )

    async def __aenter__(self) -> LocalBackend:
        self._check_host()
        if self.facts.cgroups is None:
            log.warning(
                "cgroups are not writable here; boxes are limited by rlimits only (%s)",
                "; ".join(self.facts.cgroup_problems) or "see `execbox doctor`",
            )
        stack = contextlib.AsyncExitStack()
        self.task_group = await stack.enter_async_context(anyio.create_task_group())
        self._exit_stack = stack
        await self.reap()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for box in list(self._boxes):
            await box.destroy()
        if self._exit_stack is not None:
            stack, self._exit_stack = self._exit_stack, None
            self.task_group.cancel_scope.cancel()
            await stack.aclose()

    async def create(self, spec: BoxSpec) -> LocalBox:
        if self._exit_stack is None:
            raise BoxError("the local backend is not open: use `async with LocalBackend()`")
        for mount in spec.mounts:
            if not os.path.isabs(mount.target) or not Path(mount.source).exists():  # noqa: ASYNC240
                raise BoxError(f"cannot mount {mount.source!r} at {mount.target!r}")
        box = LocalBox(self, spec)
        self._boxes.add(box)
        try:
            await box._start()
        except BaseException:
            await box.destroy()
            raise
        return box

    def live_boxes(self) -> int:
        return len(self._boxes)

    def _forget(self, box: LocalBox) -> None:
        self._boxes.discard(box)

    async def reap(self) -> int:
        """Destroy boxes whose owning process is gone (a crash, a kill -9)."""
        return await anyio.to_thread.run_sync(self._reap_sync)

    def _reap_sync(self) -> int:
        reaped = 0
        live = {box.id for box in self._boxes}
        known: set[str] = set()
        for record_path in self.records.glob("box-*.json"):
            try:
                record = json.loads(record_path.read_text())
            except (OSError, ValueError):
                continue
            box_id = record.get("id", record_path.stem)
            known.add(box_id)
            owner = record.get("owner_pid")
            if box_id in live or (owner and _process_start(owner) == record.get("owner_start")):
                continue
            init_pid = record.get("init_pid")
            if init_pid and _process_start(init_pid) == record.get("init_start"):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(init_pid, signal.SIGKILL)
            self._remove_cgroup(box_id)
            record_path.unlink(missing_ok=True)
            reaped += 1
        groups = self.facts.cgroups
        if groups is not None:
            for name in groups.leftovers():
                if name.startswith(f"box-{self.tag}-") and name not in known and name not in live:
                    self._remove_cgroup(name)
                    reaped += 1
        return reaped

    def _remove_cgroup(self, name: str) -> None:
        if self.facts.cgroups is None:
            return
        cgroup = self.facts.cgroups.open(name)
        with contextlib.suppress(OSError):
            cgroup.kill_all()
        cgroup.remove()


def _agent_error(text: str) -> ExecboxError:
    """What the agent refused, as the caller's mistake where it is one."""
    kind, _, detail = text.partition(": ")
    if kind == "FileNotFoundError":
        return PathNotFound(detail or text)
    if kind in ("IsADirectoryError", "NotADirectoryError", "FileExistsError") or (
        "Directory not empty" in text
    ):
        return InvalidFiles(detail or text)
    return BoxError(text)
