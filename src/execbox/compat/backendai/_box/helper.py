"""Runs one shell command in the kernel, for Backend.AI's batch mode and script queries.

Executed as a cell (``exec`` with ``ARGS`` in a namespace of its own, so nothing lands in the
user's): ``/bin/sh -c COMMAND`` in the workspace, stdin closed, its output going straight to the
kernel's stdout and stderr (so it streams), in a process group of its own that is killed when
the command ends or the cell is interrupted. The exit status comes back as a display of a
private MIME type. A Python program's ``input()`` and ``getpass()`` reach the kernel through a
pipe pair (see ``sitecustomize.py``) and become the kernel's own input requests, so batch mode
answers ``waiting-input`` as query mode does. With ``ARGS["setup"]`` it writes the shims.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import select
import signal
import subprocess
import sys
import types
from typing import Any

HOME = "/tmp/.backendai"
BIN = f"{HOME}/bin"
HOOK = f"{HOME}/hook"
EXIT_MIME = "application/x.execbox.backendai+json"
CHANNEL = "EXECBOX_BACKENDAI_INPUT"


def setup(files: dict[str, str]) -> None:
    """Write the shims, link ``python``, and put ``BIN`` first on the kernel's PATH."""
    for path, text in files.items():
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path + ".new", "w") as file:
            file.write(text.replace("#!python", "#!" + sys.executable, 1))
        os.chmod(path + ".new", 0o755)  # noqa: S103 - commands in the box run them
        os.replace(path + ".new", path)
    python = f"{BIN}/python"
    if not os.path.lexists(python):
        os.symlink(sys.executable, python)
    if not os.environ.get("PATH", "").startswith(BIN + ":"):
        os.environ["PATH"] = BIN + ":" + os.environ.get("PATH", "")


def failed_builds() -> set[str]:
    """Runs whose build failed, so that their exec is skipped: kept for the kernel's life."""
    module = sys.modules.get("_execbox_backendai")
    if module is None:
        module = types.ModuleType("_execbox_backendai")
        module.failed_builds = set()  # type: ignore[attr-defined]
        sys.modules["_execbox_backendai"] = module
    builds: set[str] = module.failed_builds
    return builds


def answer_requests(process: subprocess.Popen[bytes], requests: int, answers: int) -> int:
    """Wait for the process; meanwhile turn each input request into the kernel's own."""
    try:
        exited: int | None = os.pidfd_open(process.pid)
    except OSError:
        exited = None  # no pidfd: poll
    pending = b""
    try:
        while process.poll() is None:
            watched = [requests] if exited is None else [requests, exited]
            ready, _, _ = select.select(watched, [], [], 0.05 if exited is None else None)
            if requests not in ready:
                continue
            chunk = os.read(requests, 65536)
            if not chunk:  # nobody can ask any more
                break
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                request = json.loads(line)
                ask = getpass.getpass if request["password"] else input
                reply = ask(request["prompt"])
                with contextlib.suppress(BrokenPipeError):
                    os.write(answers, json.dumps(reply).encode() + b"\n")
        return process.wait()
    finally:
        if exited is not None:
            os.close(exited)


def run(command: str) -> int:
    sys.stdout.flush()
    sys.stderr.flush()
    requests, child_requests = os.pipe()
    child_answers, answers = os.pipe()
    env = dict(os.environ)
    env[CHANNEL] = f"{child_requests},{child_answers}"
    env["PYTHONPATH"] = HOOK + ":" + env.get("PYTHONPATH", "")
    if not env.get("PATH", "").startswith(BIN + ":"):  # a restarted kernel lost setup's PATH
        env["PATH"] = BIN + ":" + env.get("PATH", "")
    try:
        process = subprocess.Popen(
            ["/bin/sh", "-c", command],
            stdin=subprocess.DEVNULL,
            env=env,
            pass_fds=(child_requests, child_answers),
            start_new_session=True,
        )
    except OSError as exc:
        print(f"cannot run the command: {exc}", file=sys.stderr)
        return 127
    finally:
        os.close(child_requests)
        os.close(child_answers)
    try:
        code = answer_requests(process, requests, answers)
    except KeyboardInterrupt:
        code = 130
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # what it left running, or all of it
        process.wait()
        os.close(requests)
        os.close(answers)
    return 128 - code if code < 0 else code


def main(args: dict[str, Any]) -> None:
    if "setup" in args:
        setup(args["setup"])
        return
    builds = failed_builds()
    script = args.get("script")
    if args.get("needs") in builds:
        builds.discard(args["needs"])
        code = 127
    elif script is not None:
        with open(script[0], "w") as file:
            file.write(script[1])
        try:
            code = run(args["command"])
        finally:
            os.unlink(script[0])
    else:
        code = run(args["command"])
    if args.get("build_of") is not None and code != 0:
        builds.add(args["build_of"])
    display: Any = __import__("IPython.display", fromlist=["display"]).display
    sys.stdout.flush()
    sys.stderr.flush()
    display({EXIT_MIME: {"exitCode": code}}, raw=True)


if "ARGS" in globals():
    main(globals()["ARGS"])
