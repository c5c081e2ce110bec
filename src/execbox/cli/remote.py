"""``execbox jobs`` and ``execbox sessions``: what a server has run and holds open.

They read the server's records (``--url`` or ``EXECBOX_URL``, with ``--api-key`` or
``EXECBOX_API_KEY``), so they show jobs and sessions of every client of the key's tenant, also
those of earlier server processes. ``--json`` prints the API's own answer for scripts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

import anyio

from ..client.remote import AsyncRemoteTransport
from ..client.targets import API_KEY_VARIABLE, URL_VARIABLE
from ..errors import InvalidSpec

__all__ = ["add_connection_options", "add_remote_commands", "jobs", "server_target", "sessions"]


def add_connection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url", help=f"an execbox server, e.g. http://host:8000 (default: ${URL_VARIABLE})"
    )
    parser.add_argument(
        "--api-key",
        help=f"its API key (default: ${API_KEY_VARIABLE}, which keeps it out of `ps`)",
    )


def add_remote_commands(commands: Any) -> None:
    connection = argparse.ArgumentParser(add_help=False)
    add_connection_options(connection)
    connection.add_argument("--json", action="store_true", help="print the API's JSON")

    jobs = commands.add_parser("jobs", help="jobs a server ran: list, show, logs, kill")
    actions = jobs.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", parents=[connection], help="newest first")
    listing.add_argument("--status", action="append", help="only this status (repeatable)")
    listing.add_argument("--limit", type=int, default=20)
    show = actions.add_parser("show", parents=[connection], help="a job's record and history")
    show.add_argument("job_id")
    logs = actions.add_parser("logs", parents=[connection], help="a job's stdout and stderr")
    logs.add_argument("job_id")
    logs.add_argument(
        "-f", "--follow", action="store_true", help="stream until the job ends, as produced"
    )
    kill = actions.add_parser("kill", parents=[connection], help="stop a job at once")
    kill.add_argument("job_id")

    sessions = commands.add_parser("sessions", help="a server's kernel sessions: list, kill")
    actions = sessions.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", parents=[connection], help="open ones, newest first")
    listing.add_argument("--all", action="store_true", help="closed ones too")
    listing.add_argument("--limit", type=int, default=20)
    kill = actions.add_parser("kill", parents=[connection], help="close a session, end its box")
    kill.add_argument("session_id")


def server_target(options: argparse.Namespace) -> tuple[str | None, str | None]:
    """The server URL and key the options or the environment name (URL None: embedded)."""
    url = options.url or os.environ.get(URL_VARIABLE) or None
    key = options.api_key or os.environ.get(API_KEY_VARIABLE) or None
    return url, key


def _transport(options: argparse.Namespace) -> AsyncRemoteTransport:
    url, key = server_target(options)
    if url is None:
        raise InvalidSpec(f"this command reads a server's records: give --url or ${URL_VARIABLE}")
    return AsyncRemoteTransport(url, key)


def _when(value: str | None) -> str:
    if not value:
        return "-"
    return datetime.fromisoformat(value).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))


def jobs(options: argparse.Namespace) -> int:
    async def act() -> int:
        async with _transport(options) as server:
            if options.action == "logs":
                return await _logs(server, options.job_id, options.follow)
            if options.action == "list":
                params = [("limit", str(options.limit))]
                params += [("status", status) for status in options.status or ()]
                data = await server.api("GET", "/v1/jobs", params=params)
                if options.json:
                    _print_json(data)
                elif data["jobs"]:
                    _table(
                        [("ID", "STATUS", "CREATED", "EXIT", "SECONDS")]
                        + [
                            (
                                job["id"],
                                job["status"],
                                _when(job["created_at"]),
                                "-" if job["exit_code"] is None else str(job["exit_code"]),
                                f"{job['usage']['wall_seconds']:.2f}",
                            )
                            for job in data["jobs"]
                        ]
                    )
                return 0
            path = f"/v1/jobs/{quote(options.job_id, safe='')}"
            if options.action == "kill":
                data = await server.api("POST", f"{path}/kill")
            else:
                data = await server.api("GET", path)
            if options.json:
                _print_json(data)
            elif options.action == "kill":
                print(f"{data['id']} {data['status']}")
            else:
                _show_job(data)
            return 0

    return anyio.run(act)


def _show_job(job: dict[str, Any]) -> None:
    spec = job.get("spec") or {}
    limits = spec.get("limits") or {}
    lines = [
        ("id", job["id"]),
        ("status", job["status"] + (f" ({job['reason']})" if job.get("reason") else "")),
        ("exit code", "-" if job["exit_code"] is None else str(job["exit_code"])),
        ("entrypoint", f"{spec.get('entrypoint')} {' '.join(spec.get('args') or [])}".strip()),
        ("limits", ", ".join(f"{k} {v}" for k, v in limits.items())),
        ("network", "on" if spec.get("network") else "off"),
        ("usage", "{wall_seconds:.2f} s wall, {cpu_seconds:.2f} s cpu, "
                  "{peak_memory_bytes} bytes peak".format(**job["usage"])),
    ]  # fmt: skip
    if job.get("message"):
        lines.append(("message", job["message"]))
    for name, value in lines:
        print(f"{name + ':':<12}{value}")
    for change in job.get("history") or ():
        why = f" ({change['reason']})" if change.get("reason") else ""
        print(f"  {_when(change['at'])}  {change['status']}{why}")


async def _logs(server: AsyncRemoteTransport, job_id: str, follow: bool) -> int:
    """Both streams to ours; ``follow`` streams chunks as produced until the job ends."""
    sinks = {"stdout": sys.stdout.buffer, "stderr": sys.stderr.buffer}
    if follow:
        async for event in server.job_events(job_id):
            data = getattr(event, "data", None)
            if data is not None:
                sink = sinks[event.stream]  # type: ignore[union-attr]
                sink.write(data)
                sink.flush()
        return 0
    for stream, sink in sinks.items():
        sink.write(await server.download(f"/v1/jobs/{quote(job_id, safe='')}/{stream}"))
        sink.flush()
    return 0


def sessions(options: argparse.Namespace) -> int:
    async def act() -> int:
        async with _transport(options) as server:
            if options.action == "kill":
                path = f"/v1/sessions/{quote(options.session_id, safe='')}"
                data = await server.api("DELETE", path)
                if options.json:
                    _print_json(data)
                else:
                    print(f"{data['id']} {data['status']} ({data.get('reason') or 'closed'})")
                return 0
            params = [("limit", str(options.limit))]
            if not options.all:
                params.append(("status", "open"))
            data = await server.api("GET", "/v1/sessions", params=params)
            if options.json:
                _print_json(data)
            elif data["sessions"]:
                _table(
                    [("ID", "STATUS", "KERNEL", "CREATED", "LAST ACTIVITY", "EXECUTIONS")]
                    + [
                        (
                            row["id"],
                            row["status"] + (f" ({row['reason']})" if row.get("reason") else ""),
                            (row.get("spec") or {}).get("kernel", "-"),
                            _when(row["created_at"]),
                            _when(row.get("last_activity") or row.get("closed_at")),
                            str(row.get("execution_count", "-")),
                        )
                        for row in data["sessions"]
                    ]
                )
            return 0

    return anyio.run(act)
