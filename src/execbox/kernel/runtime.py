"""What a kernel needs inside a box: packages, a launcher, ``pip``, and where each lives.

The default ``python3`` kernel runs the box's interpreter with a package set (ipykernel and the
usual data stack) that the host prepares once, offline-capable and wheels only, through the same
resolver as job requirements; boxes bind it read-only. ``pip`` inside the box is a shim over
``uv`` that installs into a writable directory already on the kernel's path, so ``%pip install``
is fast and the next cell imports the package. Other kernelspecs installed on the host can be
named; their interpreter prefix and resource directory are bound read-only at the same paths.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..boxes.base import Mount
from ..engine.requirements import (
    Requirements,
    RequirementsResolver,
    parse_requirements,
    uv_binary,
)
from ..errors import InvalidSpec
from ..paths import cache_dir, write_if_changed

__all__ = [
    "CONNECTION_FILE",
    "DEFAULT_KERNEL",
    "DEFAULT_PACKAGES",
    "KERNEL_DIR",
    "KernelLaunch",
    "KernelRuntime",
]

DEFAULT_KERNEL = "python3"
DEFAULT_PACKAGES = (
    "ipykernel>=6.29,<8",
    "matplotlib>=3.8,<4",
    "numpy>=1.26,<3",
    "pandas>=2.1,<3",
    "pillow>=10,<13",
)
KERNEL_DIR = "/tmp/.execbox"
"""The box's own scratch for the kernel: connection file, ipc sockets, pip installs, caches."""
CONNECTION_FILE = f"{KERNEL_DIR}/kernel.json"
PACKAGES_DIR = f"{KERNEL_DIR}/packages"
RUNTIME_MOUNT = "/opt/execbox/kernel"
PACKAGES_MOUNT = f"{RUNTIME_MOUNT}/site"
"""The default package set, at a fixed place so that caches built in one box fit every box."""
FONT_SEED = "matplotlib"

LAUNCHER = '''\
"""Starts an IPython kernel inside an execbox box."""
import os
import sys

# ipykernel exits at once inside a pid namespace when it believes a parent is watching.
os.environ.pop("JPY_PARENT_PID", None)
# The debugger (debugpy) costs about 80 ms at every start and is not offered by execbox.
sys.modules.setdefault("debugpy", None)
# The working directory, not this launcher's, is where imports start (as in Jupyter).
sys.path[0] = ""
# matplotlib's font list, built once per runtime: without it the first plot takes 0.5 s more.
SEED = "/opt/execbox/kernel/matplotlib"
TARGET = os.environ.get("MPLCONFIGDIR")
if TARGET and os.path.isdir(SEED):
    os.makedirs(TARGET, exist_ok=True)
    for name in os.listdir(SEED):
        with open(os.path.join(SEED, name), "rb") as source:
            with open(os.path.join(TARGET, name), "wb") as sink:
                sink.write(source.read())

import fcntl  # noqa: E402
import select  # noqa: E402
import termios  # noqa: E402
import time  # noqa: E402

from ipykernel.iostream import OutStream  # noqa: E402
from ipykernel.kernelapp import IPKernelApp  # noqa: E402

# ipykernel waits for its iopub thread at every flush (six per execution) and sleeps 0.5 ms
# after each execution so that output written straight to fd 1/2 gets read. Both are skipped
# when provably nothing is in flight: no unread bytes in the fd pipe, none being moved, none
# buffered. Anything else takes ipykernel's own path.
_PATCHABLE = all(hasattr(OutStream, name) for name in ("_watch_pipe_fd", "flush", "_flush"))


def _unread(fd):
    try:
        return int.from_bytes(fcntl.ioctl(fd, termios.FIONREAD, bytes(4)), "little")
    except OSError:
        return 1


def _watch_pipe_fd(self):
    fid = self._fid
    if fid is None:
        return
    self._execbox_moving = False
    try:
        while self._should_watch:
            select.select([fid], [], [])
            self._execbox_moving = True
            data = os.read(fid, 1 << 16)
            if not data:
                break
            self.write(data.decode(errors="replace"))
            os.write(self._original_stdstream_copy, data)
            self._execbox_moving = False
    except Exception:
        self._exc = sys.exc_info()
    finally:
        self._execbox_moving = False


def _idle(self):
    fid = getattr(self, "_fid", None)
    if fid is not None and (getattr(self, "_execbox_moving", True) or _unread(fid)):
        return False
    buffers = getattr(self, "_buffers", None)
    return buffers is not None and not buffers and not self._flush_pending


def _flush(self, _original=OutStream.flush):
    if _idle(self):
        return
    for _ in range(200):  # fd output still moving: let the watcher catch up, then flush
        fid = getattr(self, "_fid", None)
        if fid is None or not (self._execbox_moving or _unread(fid)):
            break
        time.sleep(0.0002)
    _original(self)


execute_sleep = "0.0005"
if _PATCHABLE and os.environ.get("EXECBOX_STOCK_FLUSH") != "1":
    OutStream._watch_pipe_fd = _watch_pipe_fd
    OutStream.flush = _flush
    execute_sleep = "0"
IPKernelApp.launch_instance(
    argv=[
        "-f", sys.argv[1], "--HistoryManager.enabled=False", "--IPKernelApp.quiet=True",
        f"--IPythonKernel._execute_sleep={execute_sleep}",
    ]
)
'''

PIP_SHIM = '''\
"""pip inside an execbox box: uv underneath, installing where the kernel already looks."""
import os
import sys

UV = "/opt/execbox/kernel/bin/uv"
COMMANDS = {"install", "uninstall", "list", "freeze", "show"}


def networked():
    import socket

    try:
        return any(name != "lo" for _, name in socket.if_nameindex())
    except OSError:
        return True


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print("usage: pip install|uninstall|list|freeze|show ... (uv pip underneath)")
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"pip {command}: not available in this box (uv pip underneath)", file=sys.stderr)
        return 2
    if command == "install" and not networked():
        print(
            "pip: this session has no network; create it with network=True, or give "
            "requirements=[...] when creating it (installed from wheels, offline)",
            file=sys.stderr,
        )
        return 1
    target = os.environ.get("EXECBOX_PACKAGES", "/tmp/.execbox/packages")
    if command == "install":
        rest = ["--python", sys.executable, *rest]
    os.environ["NO_COLOR"] = "1"  # cell output is read as text, not by a terminal
    os.execv(UV, [UV, "pip", command, "--target", target, *rest])
'''

PIP_MAIN = """\
import sys

from pip import main

sys.exit(main())
"""


@dataclass(frozen=True)
class KernelLaunch:
    """How to start one kind of kernel in a box."""

    name: str
    argv: tuple[str, ...]
    mounts: tuple[Mount, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    language: str = "python"


class KernelRuntime:
    """Prepares kernels for boxes; the default package set is resolved on first use."""

    def __init__(
        self,
        resolver: RequirementsResolver,
        *,
        python: str,
        packages: Sequence[str] = DEFAULT_PACKAGES,
        root: Path | None = None,
    ) -> None:
        self._resolver = resolver
        self._python = python
        self._packages = parse_requirements(list(packages))
        self._root = root or cache_dir()
        self._files: Path | None = None
        self._uv = ""

    def _write_files(self) -> Path:
        """The launcher and the pip shim, in a directory the box binds read-only."""
        if self._files is not None:
            return self._files
        directory = self._root / "kernel-runtime"
        contents = {
            "launch.py": LAUNCHER,
            "shim/pip/__init__.py": PIP_SHIM,
            "shim/pip/__main__.py": PIP_MAIN,
            "bin/pip": f'#!/bin/sh\nexec {self._python} -m pip "$@"\n',
            "bin/pip3": f'#!/bin/sh\nexec {self._python} -m pip "$@"\n',
            "bin/uv": "",  # mount points: the host's uv binary, the default packages
            "site/.mountpoint": "",
        }
        for relative, text in contents.items():
            mode = 0o755 if relative.startswith("bin/") else 0o644
            write_if_changed(directory / relative, text.encode(), mode)
        self._uv = os.path.realpath(uv_binary())  # looked up once, not per session
        self._files = directory
        return directory

    async def prepare(
        self, name: str = DEFAULT_KERNEL, requirements: Requirements | None = None
    ) -> KernelLaunch:
        """The launch of kernel ``name``, with ``requirements`` on its path ahead of its own."""
        user_envs = await self._resolver.prepare(requirements or Requirements())
        if name != DEFAULT_KERNEL:
            return self._installed_kernelspec(name, user_envs)
        (kernel_env,) = await self._resolver.prepare(self._packages)
        files = self._write_files()
        user_site = self._resolver.environment(user_envs).get("PYTHONPATH")
        site = ":".join(filter(None, [PACKAGES_DIR, user_site, PACKAGES_MOUNT]))
        mounts = [
            *self._resolver.mounts(user_envs),
            Mount(str(files), RUNTIME_MOUNT),
            Mount(kernel_env, PACKAGES_MOUNT),
            Mount(self._uv, f"{RUNTIME_MOUNT}/bin/uv"),
        ]
        env = {
            **_kernel_env(),
            "PYTHONPATH": f"{RUNTIME_MOUNT}/shim:{site}",
            "PATH": f"{RUNTIME_MOUNT}/bin:/usr/local/bin:/usr/bin:/bin",
            "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        }
        argv = (self._python, f"{RUNTIME_MOUNT}/launch.py", CONNECTION_FILE)
        return KernelLaunch(DEFAULT_KERNEL, argv, tuple(mounts), env)

    @property
    def font_cache_missing(self) -> bool:
        return self._files is not None and not (self._files / FONT_SEED).is_dir()

    def store_font_cache(self, files: Mapping[str, bytes]) -> None:
        """Keep matplotlib's font list, built in a box, for every later box to start with."""
        if self._files is None or not files:
            return
        staging = self._files / f".{FONT_SEED}.tmp{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(mode=0o755)
        for name, data in files.items():
            if "/" in name or not name.endswith(".json"):
                continue
            (staging / name).write_bytes(data)
            (staging / name).chmod(0o644)
        try:
            staging.rename(self._files / FONT_SEED)
        except OSError:  # another engine got there first
            shutil.rmtree(staging, ignore_errors=True)

    def _installed_kernelspec(self, name: str, user_envs: Sequence[str]) -> KernelLaunch:
        try:
            from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
        except ImportError:  # pragma: no cover - jupyter_client is a dependency of sessions
            raise InvalidSpec(f"kernel {name!r}: jupyter_client is not installed") from None
        try:
            spec = KernelSpecManager().get_kernel_spec(name)
        except NoSuchKernel:
            known = sorted(KernelSpecManager().find_kernel_specs())
            raise InvalidSpec(
                f"no kernel named {name!r}; known: {', '.join([DEFAULT_KERNEL, *known])}"
            ) from None
        argv = [
            part.replace("{connection_file}", CONNECTION_FILE).replace(
                "{resource_dir}", spec.resource_dir
            )
            for part in spec.argv
        ]
        mounts = [Mount(spec.resource_dir, spec.resource_dir)]
        executable = shutil.which(argv[0]) if not os.path.isabs(argv[0]) else argv[0]
        if executable:
            argv[0] = executable
            prefix = Path(executable).parent.parent
            if not str(prefix).startswith("/usr"):
                mounts.append(Mount(str(prefix), str(prefix)))
        mounts += self._resolver.mounts(user_envs)
        env = {**_kernel_env(), **self._resolver.environment(user_envs), **spec.env}
        return KernelLaunch(name, tuple(argv), tuple(mounts), env, spec.language)


def _kernel_env() -> dict[str, str]:
    """Scratch places of IPython, Jupyter, matplotlib and uv, out of the user's workspace."""
    return {
        "EXECBOX_PACKAGES": PACKAGES_DIR,
        "IPYTHONDIR": f"{KERNEL_DIR}/ipython",
        "JUPYTER_RUNTIME_DIR": f"{KERNEL_DIR}/jupyter",
        "JUPYTER_DATA_DIR": f"{KERNEL_DIR}/jupyter",
        "MPLCONFIGDIR": f"{KERNEL_DIR}/matplotlib",
        "UV_CACHE_DIR": f"{KERNEL_DIR}/uv-cache",
        "UV_NO_CONFIG": "1",
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_SYSTEM_CERTS": "1",
        "UV_NO_PROGRESS": "1",
        "PYTHONUNBUFFERED": "1",
        "MALLOC_ARENA_MAX": "2",  # a kernel's dozen threads need not reserve an arena each
    }
