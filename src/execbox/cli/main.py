"""The ``execbox`` command.

Exit codes of ``execbox run``: the program's own exit status (128 + N when signal N ended it);
124 when the job ran past its timeout; 137 when it hit its memory limit; 125 when execbox itself
could not run it (bad input, unresolvable requirements, no isolation on this host). Every error
is one line on stderr.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import anyio

from .. import errors
from ..models import JobResult, JobStatus, Limits, OutputEvent, StatusEvent
from .remote import add_connection_options, add_remote_commands, jobs, server_target, sessions
from .repl import add_repl_command, repl
from .server import add_server_commands, keys, serve

__all__ = ["EXIT_ERROR", "EXIT_MEMORY", "EXIT_TIMEOUT", "main"]

EXIT_TIMEOUT = 124
EXIT_ERROR = 125
EXIT_MEMORY = 137
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_ERROR, f"execbox: {message} (see `{self.prog} --help`)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="execbox", description="Run untrusted Python in isolated boxes.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = commands.add_parser("run", help="run a program once in a fresh box, streaming its output")
    run.add_argument("path", help="a .py file, a directory, or - to read the program from stdin")
    run.add_argument(
        "--entrypoint", help="file to run (default: main.py, __main__.py, the only .py)"
    )
    run.add_argument(
        "--requirements", metavar="FILE", help="a requirements.txt to install (wheels)"
    )
    run.add_argument(
        "--pre",
        action="append",
        default=[],
        metavar="CMD",
        help="shell command run in the box before the program (repeatable)",
    )
    run.add_argument("--stdin", metavar="FILE", help="file fed to the program's stdin")
    run.add_argument("--timeout", type=float, metavar="S", help="wall-clock limit in seconds")
    run.add_argument("--memory", metavar="SIZE", help="memory limit, e.g. 256M")
    run.add_argument("--cpus", type=float, metavar="N", help="cpu quota in cores")
    run.add_argument("--pids", type=int, metavar="N", help="maximum number of processes")
    run.add_argument("--disk", metavar="SIZE", help="size of the workspace and /tmp")
    run.add_argument("--network", action="store_true", help="give the box the host's network")
    run.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="K=V",
        help="environment variable for the program (repeatable)",
    )
    add_connection_options(run)
    run.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the program, after --")

    commands.add_parser("doctor", help="list which protections hold on this host")
    add_repl_command(commands)
    add_remote_commands(commands)
    add_server_commands(commands)
    return parser


def _files(path: str) -> tuple[dict[str, bytes] | Path, str | None]:
    if path == "-":
        return {"main.py": sys.stdin.buffer.read()}, "main.py"
    target = Path(path)
    if target.is_file():
        return {target.name: target.read_bytes()}, target.name
    if target.is_dir():
        return target, None
    raise errors.InvalidFiles(f"{path!r} is not a file or directory")


def _env(pairs: Sequence[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise errors.InvalidSpec(f"--env {pair!r}: expected KEY=VALUE")
        env[key] = value
    return env


def _limits(options: argparse.Namespace) -> Limits:
    changes = {
        "memory": options.memory,
        "cpus": options.cpus,
        "pids": options.pids,
        "disk": options.disk,
    }
    return Limits().merged(**changes)


async def _run(options: argparse.Namespace) -> int:
    from ..client import AsyncClient  # the engine is imported only when a job runs

    files, entrypoint, requirements, stdin = options.inputs
    args = options.args[1:] if options.args[:1] == ["--"] else options.args
    url, key = server_target(options)
    async with AsyncClient(url, api_key=key) if url else AsyncClient() as client:
        job = await client.submit(
            files,
            entrypoint=options.entrypoint or entrypoint,
            args=args,
            requirements=requirements,
            pre_commands=options.pre,
            stdin=stdin,
            env=_env(options.env),
            timeout=options.timeout,
            limits=_limits(options),
            network=options.network,
        )
        result: JobResult | None = None
        try:
            async for event in job.events():
                if isinstance(event, OutputEvent):
                    sink = sys.stdout.buffer if event.stream == "stdout" else sys.stderr.buffer
                    sink.write(event.data)
                    sink.flush()
                elif isinstance(event, StatusEvent) and event.result is not None:
                    result = event.result
        finally:
            if result is None:
                with anyio.CancelScope(shield=True):
                    await job.kill()
        if result is None:
            result = await job.wait()
        return _report(result)


def _report(result: JobResult) -> int:
    def say(line: str) -> None:
        print(f"execbox: {line}", file=sys.stderr)

    if result.stdout_truncated or result.stderr_truncated:
        say("output was truncated at the output limit")
    if result.status is JobStatus.TIMEOUT:
        say(result.message or "timeout")
        return EXIT_TIMEOUT
    if result.status is JobStatus.MEMORY_LIMIT:
        say("memory limit reached: the program was stopped")
        return EXIT_MEMORY
    if result.status is JobStatus.ERROR:
        say(f"error: {result.message}")
        return EXIT_ERROR
    if result.status is JobStatus.KILLED:
        say("killed")
        return EXIT_MEMORY
    if result.reason == "pre_command_failed" and result.message:
        say(result.message)
    return result.exit_code if result.exit_code is not None else EXIT_ERROR


def _doctor() -> int:
    from ..boxes.local.host import probe

    facts = probe()
    rows = facts.protections()
    width = max(len(row.name) for row in rows)
    for row in rows:
        mark = "active " if row.active else "MISSING"
        print(f"{row.name:<{width}}  {mark}  {row.detail}")
    if facts.usable:
        missing = [row.name for row in rows if not row.active]
        verdict = "boxes can run here" + (
            f"; without {', '.join(missing)} (see above)" if missing else " with every protection"
        )
        print(f"\n{verdict}")
        return 0
    print("\nboxes cannot run here: install bubblewrap (apt-get install bubblewrap)")
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    options = _parser().parse_args(argv)
    try:
        if options.command == "doctor":
            return _doctor()
        if options.command == "serve":
            return serve(options)
        if options.command == "keys":
            return keys(options)
        if options.command == "jobs":
            return jobs(options)
        if options.command == "sessions":
            return sessions(options)
        if options.command == "repl":
            return repl(options)
        options.inputs = (
            *_files(options.path),
            Path(options.requirements).read_text() if options.requirements else None,
            Path(options.stdin).read_bytes() if options.stdin else None,
        )
        return anyio.run(_run, options)
    except KeyboardInterrupt:
        print("execbox: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except errors.ExecboxError as exc:
        print(f"execbox: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:
        print(f"execbox: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
