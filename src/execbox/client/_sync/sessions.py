# Generated from ../_async by scripts/unasync: do not edit.
"""The SDK for sessions. Written async here; ``scripts/unasync`` derives ``_sync/sessions.py``."""

from __future__ import annotations

from collections.abc import Iterator
from types import TracebackType

from ...engine.specs import SessionSpec
from ...errors import ExecboxError
from ...models import DirEntry, ExecutionEvent, ExecutionResult, SessionInfo
from ..transports import SyncTransport

__all__ = ["Execution", "Files", "Session"]


class Execution:
    """Code submitted to a session: its events as they come, then its result."""

    def __init__(self, transport: SyncTransport, session_id: str, execution_id: str) -> None:
        self._transport = transport
        self.session_id = session_id
        self.id = execution_id

    def __repr__(self) -> str:
        return f"<Execution {self.id} in {self.session_id}>"

    def stream(self) -> Iterator[ExecutionEvent]:
        """Every event from the start, as it arrives; the last is an ``EndEvent``."""
        for event in self._transport.execution_events(self.session_id, self.id):
            yield event

    def result(self, timeout: float | None = None) -> ExecutionResult:
        """The result once both the kernel's reply and its idle arrived; ExecboxTimeout after
        ``timeout`` s of waiting (the execution's own timeout is set at submit)."""
        return self._transport.execution_result(self.session_id, self.id, timeout)

    def send_input(self, text: str) -> None:
        """Answer the ``input()`` or ``getpass()`` this execution waits in."""
        self._transport.send_input(self.session_id, self.id, text)

    def interrupt(self) -> None:
        self._transport.interrupt_session(self.session_id)


class Files:
    """Files in a session's workspace. Paths are relative to it (or absolute inside it)."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def write(self, path: str, data: bytes | str) -> None:
        """Create or replace a file (parents created); a link planted there is replaced, not
        followed."""
        payload = data.encode() if isinstance(data, str) else data
        self._session._transport.write_file(self._session.id, path, payload)

    def read(self, path: str) -> bytes:
        return self._session._transport.read_file(self._session.id, path)

    def read_text(self, path: str, encoding: str = "utf-8") -> str:
        return (self.read(path)).decode(encoding)

    def list(self, path: str = "") -> list[DirEntry]:
        return self._session._transport.list_files(self._session.id, path)

    def delete(self, path: str) -> None:
        """Delete a file, a link or a whole directory."""
        self._session._transport.delete_file(self._session.id, path)


class Session:
    """A stateful kernel in a box of its own. Use as a context manager: leaving closes it."""

    def __init__(
        self,
        transport: SyncTransport,
        spec: SessionSpec | None,
        session_id: str = "",
        *,
        client_token: str | None = None,
    ) -> None:
        self._transport = transport
        self._spec = spec
        self._id = session_id
        self._client_token = client_token
        self.files = Files(self)

    def __repr__(self) -> str:
        return f"<Session {self._id or '(not started)'}>"

    @property
    def id(self) -> str:
        if not self._id:
            raise ExecboxError("the session is not started: use it as a context manager")
        return self._id

    def start(self) -> Session:
        """Start the kernel (from the warm pool when possible); idempotent."""
        if not self._id:
            assert self._spec is not None
            self._id = self._transport.create_session(self._spec, self._client_token)
        return self

    def __enter__(self) -> Session:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def info(self) -> SessionInfo:
        return self._transport.session_info(self.id)

    def submit(self, code: str, *, timeout: float | None = None) -> Execution:
        """Queue code and return at once; executions run one at a time, in order."""
        execution_id = self._transport.submit_execution(self.id, code, timeout)
        return Execution(self._transport, self.id, execution_id)

    def execute(self, code: str, *, timeout: float | None = None) -> ExecutionResult:
        """Run code to its end. Past ``timeout`` the kernel is interrupted (restarted if it
        will not stop) and the result says so; errors in the code are a result, not raised
        (``raise_for_error()`` raises them)."""
        return self._transport.execute(self.id, code, timeout)

    def interrupt(self) -> None:
        self._transport.interrupt_session(self.id)

    def restart(self) -> None:
        """A fresh kernel in the same box: variables are lost, files stay."""
        self._transport.restart_session(self.id)

    def close(self) -> None:
        """Destroy the session's box and everything in it; idempotent."""
        if self._id:
            self._transport.close_session(self._id)
