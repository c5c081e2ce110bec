"""``PythonExecutorClient``: python-executor's client API, running its jobs on execbox."""

from __future__ import annotations

import contextlib
import math
import os
import threading
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from ...client import Client, Job
from ...engine.files import FilesInput, collect_files
from ...errors import ExecboxTimeout, InvalidFiles, InvalidSpec, InvalidState, NoEntrypoint
from ...models import JobResult
from .evaluation import eval_program, split_result
from .mapping import check_python_version, execution_result, job_options, live_result
from .types import ExecutionConfig, ExecutionResult, Metadata

__all__ = ["PythonExecutorClient"]

KILL_GRACE = 10.0
"""How long ``kill`` waits for the run to be gone before it returns."""

_METADATA_FIELDS = ("docker_image", "requirements_txt", "pre_commands", "stdin")
_EXTRA_FIELDS = ("env_vars", "script_args")
_CONFIG_FIELDS = tuple(ExecutionConfig.__dataclass_fields__)

FilesArgument = Mapping[str, str | bytes] | os.PathLike[str] | str | None


def _seconds(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidSpec(f"{name} must be a number of seconds, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise InvalidSpec(f"{name} must be > 0 seconds, got {value!r}")
    return float(value)


def _detect_entrypoint(files: FilesInput) -> str:
    """main.py, else __main__.py, else the first .py file, as python-executor picks it."""
    scripts = [
        entry.name
        for entry in collect_files(files)
        if entry.kind == "file" and entry.name.endswith(".py")
    ]
    for preferred in ("main.py", "__main__.py"):
        if preferred in scripts:
            return preferred
    if not scripts:
        raise NoEntrypoint("no Python files found among the files: pass entrypoint=")
    return scripts[0]


class PythonExecutorClient:
    """python-executor's client on execbox: same methods, arguments and result objects.

    Runs go to ``execbox.Client()``: embedded (boxes on this machine, no server) unless
    ``EXECBOX_URL`` (and ``EXECBOX_API_KEY``) name an execbox server. ``base_url`` is kept
    (as ``self.base_url``) but not contacted: see the package docstring for why. Pass
    ``client=`` to run on an ``execbox.Client`` of your own (e.g. ``Client(url, api_key=...)``);
    it is then yours to close. ``timeout`` bounds how long a call blocks, as the HTTP timeout
    did (``execute_sync`` past it raises ``execbox.ExecboxTimeout``, a ``TimeoutError``).
    """

    def __init__(self, base_url: str, timeout: int = 300, *, client: Client | None = None) -> None:
        if not isinstance(base_url, str):
            raise InvalidSpec(f"base_url must be a string, got {type(base_url).__name__}")
        self.base_url = base_url.rstrip("/")
        self.timeout = _seconds(timeout, "timeout")
        self._client = client
        self._owns_client = client is None
        self._closed = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        state = "closed" if self._closed else repr(self._client or "execbox.Client()")
        return f"<PythonExecutorClient {self.base_url!r} on {state}>"

    def __enter__(self) -> PythonExecutorClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop what still runs and release the engine (an own client only; also at exit).
        The client cannot be used afterwards."""
        with self._lock:
            client, self._client, self._closed = self._client, None, True
        if client is not None and self._owns_client:
            client.close()

    def _execbox(self) -> Client:
        with self._lock:
            if self._closed:
                raise InvalidState("this PythonExecutorClient was closed")
            if self._client is None:
                self._client = Client()
            return self._client

    # -- python-executor's API ----------------------------------------------------------------

    def execute_sync(
        self,
        files: FilesArgument = None,
        tar_data: bytes | None = None,
        metadata: Metadata | None = None,
        **kwargs: Any,
    ) -> ExecutionResult:
        """Run the files to their end and return the result.

        ``files``: ``{name: content}``, or a ``Path`` or string path to a file or directory;
        ``tar_data``: the bytes of a tar archive instead. ``metadata`` or keyword fields
        (``entrypoint``, ``docker_image``, ``requirements_txt``, ``pre_commands``, ``stdin``,
        ``env_vars``, ``script_args``, ``timeout_seconds``, ``network_disabled``,
        ``memory_mb``, ``disk_mb``, ``cpu_shares``), not both. Bad input raises a
        ``ValueError`` (``execbox.InvalidSpec``) before anything runs."""
        job = self._submit(files, tar_data, metadata, kwargs)
        return execution_result(job.wait(self.timeout))

    def execute_async(
        self,
        files: FilesArgument = None,
        tar_data: bytes | None = None,
        metadata: Metadata | None = None,
        **kwargs: Any,
    ) -> str:
        """Start the run and return its execution id at once (arguments as ``execute_sync``)."""
        return self._submit(files, tar_data, metadata, kwargs).id

    def get_execution(self, execution_id: str) -> ExecutionResult:
        """The run's state; outputs and exit code once it has finished.
        ``execbox.JobNotFound`` (a ``LookupError``) for an unknown id."""
        job = self._execbox().job(execution_id)
        if job.status.terminal:
            return execution_result(job.wait())
        return live_result(job.id, job.status)

    def kill(self, execution_id: str) -> None:
        """Stop the run's whole process tree at once and wait (up to 10 s) until it is gone;
        a finished run is left as it is."""
        job = self._execbox().job(execution_id)
        if job.status.terminal:
            return
        job.kill()
        with contextlib.suppress(ExecboxTimeout):  # still under way: ``killed`` once done
            job.wait(KILL_GRACE)

    def wait_for_completion(
        self, execution_id: str, poll_interval: float = 2.0, max_wait: float | None = None
    ) -> ExecutionResult:
        """The result once the run has finished; ``TimeoutError`` after ``max_wait`` seconds.

        No polling happens: the result arrives as soon as the run ends, so ``poll_interval``
        (checked, for compatibility) changes nothing."""
        _seconds(poll_interval, "poll_interval")
        limit = None if max_wait is None else _seconds(max_wait, "max_wait")
        job = self._execbox().job(execution_id)
        try:
            result = job.wait(limit)
        except ExecboxTimeout:
            raise ExecboxTimeout(
                f"execution {execution_id} did not complete within {max_wait} s"
            ) from None
        return execution_result(result)

    def eval(
        self,
        code: str,
        *,
        files: list[dict[str, str]] | None = None,
        entrypoint: str | None = None,
        stdin: str | None = None,
        python_version: str | None = None,
        timeout_seconds: int | None = None,
        eval_last_expr: bool = True,
    ) -> ExecutionResult:
        """Run ``code`` (or ``files``, ``[{"name": ..., "content": ...}]``) and, with
        ``eval_last_expr``, return the repr of its last expression as ``result``."""
        check_python_version(python_version)
        program = eval_program(code, files, entrypoint, bool(eval_last_expr))
        metadata = Metadata(
            entrypoint=program.entrypoint,
            stdin=stdin,
            script_args=list(program.args),
            config=ExecutionConfig(timeout_seconds=timeout_seconds or 0),
        )
        job = self._start(program.files, metadata)
        return _evaluated(job.wait(self.timeout), bool(eval_last_expr))

    # -- helpers ------------------------------------------------------------------------------

    def _submit(
        self,
        files: FilesArgument,
        tar_data: bytes | None,
        metadata: Metadata | None,
        fields: dict[str, Any],
    ) -> Job:
        source: FilesInput
        if tar_data is not None:
            if not isinstance(tar_data, bytes | bytearray):
                raise InvalidFiles(f"tar_data must be bytes, not {type(tar_data).__name__}")
            source = bytes(tar_data)
        elif files is None:
            raise InvalidFiles("either files or tar_data must be provided")
        else:
            source = files
        if metadata is None:
            metadata = _metadata(source, fields)
        elif fields:
            raise InvalidSpec(
                f"pass either metadata or keyword fields, not both (got {', '.join(fields)})"
            )
        return self._start(source, metadata)

    def _start(self, files: FilesInput, metadata: Metadata) -> Job:
        options = job_options(metadata)
        return self._execbox().submit(
            files,
            entrypoint=options.entrypoint,
            args=options.args,
            requirements=options.requirements,
            pre_commands=options.pre_commands,
            stdin=options.stdin,
            env=options.env,
            timeout=options.timeout,
            limits=options.limits(),
            network=options.network,
        )


def _metadata(files: FilesInput, fields: dict[str, Any]) -> Metadata:
    """Metadata from keyword fields, as python-executor's client builds it."""
    known = {"entrypoint", *_METADATA_FIELDS, *_EXTRA_FIELDS, *_CONFIG_FIELDS}
    for name in fields:
        if name not in known:
            choices = ", ".join(sorted(known))
            raise TypeError(f"unexpected keyword argument {name!r}; known: {choices}")
    entrypoint = fields.get("entrypoint") or _detect_entrypoint(files)
    config = {name: fields[name] for name in _CONFIG_FIELDS if name in fields}
    return Metadata(
        entrypoint=entrypoint,
        config=ExecutionConfig(**config) if config else None,
        **{name: fields.get(name) for name in (*_METADATA_FIELDS, *_EXTRA_FIELDS)},
    )


def _evaluated(job_result: JobResult, eval_last_expr: bool) -> ExecutionResult:
    result = execution_result(job_result)
    if eval_last_expr and result.exit_code == 0 and result.stdout is not None:
        result.stdout, result.result = split_result(result.stdout)
    return result
