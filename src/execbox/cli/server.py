"""``execbox serve`` and ``execbox keys``: the server and its API keys."""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
from typing import Any

import anyio

from ..errors import ExecboxError
from ..sizes import parse_size

__all__ = ["add_server_commands", "keys", "serve"]

_EXTRA_HINT = "the server needs its extra: pip install 'execbox[server]'"


def add_server_commands(commands: Any) -> None:
    serve = commands.add_parser("serve", help="run the execbox server (REST + WebSocket API)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--db", metavar="URL", help="database URL (default: SQLite in the state dir)"
    )
    serve.add_argument("--backend", default="local", help="box backend: local or module:Class")
    serve.add_argument(
        "--no-auth", action="store_true", help="serve without keys (local development only!)"
    )
    serve.add_argument("--max-body", default="32M", metavar="SIZE", help="largest request body")
    serve.add_argument("--max-message", default="4M", metavar="SIZE", help="largest WS message")
    serve.add_argument("--pool-size", type=int, default=2, help="warm boxes for jobs")
    serve.add_argument("--session-pool-size", type=int, default=1, help="warm kernels")
    serve.add_argument("--log-level", default="info")

    keys = commands.add_parser("keys", help="create, list and revoke API keys")
    database = argparse.ArgumentParser(add_help=False)
    database.add_argument("--db", metavar="URL", help="database URL (default: the server's)")
    actions = keys.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", parents=[database], help="create a key, printed once")
    create.add_argument("--tenant", required=True, help="tenant name (created if new)")
    create.add_argument("--name", default="", help="a label for the key")
    create.add_argument("--admin", action="store_true", help="may read /metrics")
    create.add_argument("--max-sessions", type=int, default=16, help="live sessions per key")
    create.add_argument("--max-jobs", type=int, default=16, help="live jobs per key")
    create.add_argument("--max-memory", metavar="SIZE", help="tenant's largest memory limit")
    create.add_argument("--max-cpus", type=float, help="tenant's largest cpu limit")
    create.add_argument("--max-timeout", type=float, metavar="S", help="tenant's longest timeout")
    create.add_argument(
        "--allow-network", action="store_true", help="the tenant's boxes may have network"
    )
    actions.add_parser("list", parents=[database], help="list keys (never their secrets)")
    revoke = actions.add_parser("revoke", parents=[database], help="revoke a key by its id")
    revoke.add_argument("key_id")


def serve(options: argparse.Namespace) -> int:
    try:
        import uvicorn

        from ..server import ServerSettings, create_app
        from ..server.logs import configure_logging
    except ImportError:
        raise ExecboxError(_EXTRA_HINT) from None
    settings = ServerSettings(
        database_url=options.db,
        backend=options.backend,
        no_auth=options.no_auth,
        max_body=parse_size(options.max_body, name="--max-body"),
        max_message=parse_size(options.max_message, name="--max-message"),
        pool_size=options.pool_size,
        session_pool_size=options.session_pool_size,
    )
    configure_logging(options.log_level)
    if settings.no_auth:
        print(
            "execbox: WARNING: --no-auth: anyone who can reach "
            f"{options.host}:{options.port} runs code here without a key",
            file=sys.stderr,
        )
    # uvicorn re-raises the SIGTERM it shut down on, under the handler found at start: a no-op
    # one makes a graceful shutdown exit with status 0.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: None)
    uvicorn.run(
        create_app(settings),
        host=options.host,
        port=options.port,
        ws_max_size=settings.max_message,
        ws_per_message_deflate=False,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(settings.shutdown_grace),
    )
    return 0


def keys(options: argparse.Namespace) -> int:
    try:
        from ..store import Store
        from ..store.accounts import TenantLimits
    except ImportError:
        raise ExecboxError(_EXTRA_HINT) from None

    async def act() -> int:
        async with Store(options.db) as store:
            if options.action == "create":
                asked = {
                    "max_memory": options.max_memory
                    and parse_size(options.max_memory, name="--max-memory"),
                    "max_cpus": options.max_cpus,
                    "max_timeout": options.max_timeout,
                    "allow_network": options.allow_network or None,
                }
                chosen = {name: value for name, value in asked.items() if value is not None}
                limits = dataclasses.replace(TenantLimits(), **chosen) if chosen else None
                key = await store.create_key(
                    options.tenant,
                    name=options.name,
                    admin=options.admin,
                    max_sessions=options.max_sessions,
                    max_jobs=options.max_jobs,
                    limits=limits,
                )
                print(key.token)
                print(
                    f"key {key.id} for tenant {options.tenant}: shown once, stored hashed",
                    file=sys.stderr,
                )
            elif options.action == "list":
                for info in await store.list_keys():
                    state = (
                        f"revoked {info.revoked_at:%Y-%m-%d %H:%M}" if info.revoked_at else "active"
                    )
                    admin = " admin" if info.admin else ""
                    print(f"{info.id}  {info.tenant:<20}  {state:<24}{admin}  {info.name}")
            elif not await store.revoke_key(options.key_id):
                raise ExecboxError(f"no active key {options.key_id!r}")
            else:
                print(f"key {options.key_id} revoked", file=sys.stderr)
        return 0

    return anyio.run(act)
