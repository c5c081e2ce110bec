"""A kernel as Jupyter clients see it: an execbox session, spoken to in Jupyter messages.

A ``KernelBridge`` exists while at least one WebSocket is connected to a session (or while
work it accepted is still running). Its worker takes ``execute_request``s one at a time, in
the order they arrived from all connections, and runs each as an execution of the session,
exactly as the native API does (recorded, counted, limited, clamped to the tenant). iopub goes
to every connection of the kernel; shell, control and stdin answers go to the connection that
asked, as with a kernel's ZMQ sockets. Requests that need no kernel (``kernel_info``,
``is_complete``, ``history``...) are answered at once, even while a cell runs; completion and
inspection are the kernel's own, which runs no cell for them and answers between cells.

What the engine cannot do per request is emulated here: ``silent`` hides the input and the
result, ``stop_on_error`` aborts what was queued behind a failed cell, ``allow_stdin: false``
interrupts a cell that asks for input. The engine's kernel runs every cell with
``store_history``, so every execution gets a count and a record.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.abc

from ...errors import ExecboxError, InvalidSpec, QuotaExceeded, SessionClosed
from ...models import EndEvent, ErrorEvent, ExecutionResult, InputRequestEvent, SessionStatus
from ..routes.sessions import submit_execution
from ..services import Services
from . import replies
from .connections import Connection, Frame
from .messages import (
    NOTED,
    BadMessage,
    Request,
    error_content,
    execute_reply_content,
    iopub_of_event,
    make_message,
    parse_request,
    utc_stamp,
    without_status,
)
from .specs import kernel_info

__all__ = ["Gateway", "KernelBridge"]

log = logging.getLogger("execbox.server.jupyter")

MAX_QUEUED = 100
MAX_QUERIES = 4
"""Completions and inspections a kernel is asked at once; more are answered "nothing found"."""
"""execute_requests a kernel holds waiting; more are answered with an error, not buffered."""
START_POLL = 0.001
"""First wait between looks at whether a submitted cell has begun; it doubles up to 0.25 s."""
SETTLE = 10.0
"""How long a shutdown or restart waits for the running cell's last messages."""
NO_STDIN = "input() needs stdin, which this client did not allow: the cell was interrupted\n"
GONE = "input() was asked of a client that has disconnected: the cell was interrupted\n"


@dataclass(frozen=True, slots=True)
class _Queued:
    request: Request
    origin: Connection


class KernelBridge:
    def __init__(self, gateway: Gateway, session_id: str, kernel: str, count: int) -> None:
        self.gateway = gateway
        self.services = gateway.services
        self.session_id = session_id
        self.kernel = kernel
        self.identity = uuid.uuid4().hex
        """The ``session`` of every header this kernel sends."""
        self.connections: list[Connection] = []
        self.execution_count = count
        self.running: _Queued | None = None
        self._execution_id: str | None = None
        self._settled = anyio.Event()
        self._settled.set()
        self._started = anyio.Event()
        self._started.set()
        self._queue, self._inbox = anyio.create_memory_object_stream[_Queued](MAX_QUEUED)
        self.scope = anyio.CancelScope()
        self._queries = 0

    # -- sending ------------------------------------------------------------------------------

    def _message(
        self, channel: str, msg_type: str, content: dict[str, Any], parent: dict[str, Any] | None
    ) -> dict[str, Any]:
        return make_message(channel, msg_type, content, parent, session=self.identity)

    def publish(
        self, msg_type: str, content: dict[str, Any], parent: dict[str, Any] | None
    ) -> None:
        """An iopub message, to every connection of the kernel."""
        message = self._message("iopub", msg_type, content, parent)
        for connection in self.connections:
            connection.deliver(message)

    def _status(self, state: str, parent: dict[str, Any] | None) -> None:
        self.publish("status", {"execution_state": state}, parent)

    def _reply(
        self, connection: Connection, request: Request, msg_type: str, content: dict[str, Any]
    ) -> None:
        connection.deliver(self._message(request.channel, msg_type, content, request.header))

    def _answer(
        self, connection: Connection, request: Request, msg_type: str, content: dict[str, Any]
    ) -> None:
        """A reply framed by busy and idle, as a kernel gives it (but not inside a running
        cell's busy, which would tell clients the kernel is idle while it is not)."""
        quiet = self.running is None
        if quiet:
            self._status("busy", request.header)
        self._reply(connection, request, msg_type, content)
        if quiet:
            self._status("idle", request.header)

    def _refuse(
        self, connection: Connection, channel: str, parent: dict[str, Any], text: str
    ) -> None:
        content = {"ename": "BadMessage", "evalue": text, "traceback": []}
        connection.deliver(self._message(channel, "error", content, parent))

    # -- frames from clients ------------------------------------------------------------------

    async def on_frame(self, connection: Connection, frame: Frame) -> None:
        """Carry out one client frame; anything wrong with it is answered, never raised."""
        if isinstance(frame, bytes):
            text = "binary frames (buffers, the v1 WebSocket protocol) are not supported here"
            self._refuse(connection, "shell", {}, text)
            return
        try:
            request = parse_request(frame)
        except BadMessage as exc:
            self._refuse(connection, "shell", exc.header, str(exc))
            return
        try:
            await self._dispatch(connection, request)
        except ExecboxError as exc:
            reply = request.msg_type.removesuffix("_request") + "_reply"
            if request.msg_type.endswith("_request"):
                self._answer(connection, request, reply, error_content(exc))
            else:
                self._refuse(connection, request.channel, request.header, str(exc))

    async def _dispatch(self, connection: Connection, request: Request) -> None:
        kind, content = request.msg_type, request.content
        if request.channel == "stdin":
            if kind != "input_reply":
                raise BadMessage(f"{kind!r} is not a stdin message: send input_reply")
            await self._input(content)
        elif kind == "execute_request" and request.channel == "shell":
            try:
                self._queue.send_nowait(_Queued(request, connection))
            except anyio.WouldBlock:
                raise QuotaExceeded(
                    f"this kernel already has {MAX_QUEUED} cells waiting; wait for some to finish"
                ) from None
        elif kind == "kernel_info_request":
            info = await kernel_info(self.services, self.kernel)
            self._answer(connection, request, "kernel_info_reply", info)
        elif kind == "interrupt_request":
            await self.interrupt()
            self._answer(connection, request, "interrupt_reply", {"status": "ok"})
        elif kind == "shutdown_request":
            restart = content.get("restart") is True
            if restart:
                await self.restart()
            self._answer(
                connection, request, "shutdown_reply", {"status": "ok", "restart": restart}
            )
            if not restart:
                await self.terminate()
        elif kind == "is_complete_request":
            judged = await anyio.to_thread.run_sync(replies.is_complete, content.get("code"))
            self._answer(connection, request, "is_complete_reply", judged)
        elif kind in ("complete_request", "inspect_request"):
            if self._queries >= MAX_QUERIES:  # a flood must not pile up tasks or kernel work
                answer = replies.nothing_found(kind, content)
                self._answer(connection, request, kind.removesuffix("_request") + "_reply", answer)
            else:
                self._queries += 1
                self.gateway.task_group.start_soon(self._query, connection, request)
        elif kind == "comm_info_request":
            self._answer(connection, request, "comm_info_reply", replies.comm_info(content))
        elif kind == "history_request":
            rows = await self.services.store.list_executions(
                connection.principal.tenant_id, self.session_id, limit=replies.MAX_HISTORY
            )
            self._answer(connection, request, "history_reply", replies.history(content, rows))
        elif kind == "comm_open":  # no comm targets here: closed at once, as ipykernel does
            self.publish(
                "comm_close", {"comm_id": content.get("comm_id"), "data": {}}, request.header
            )
        elif kind in ("comm_msg", "comm_close"):
            pass  # no comm is ever open
        elif kind.endswith("_request"):
            raise BadMessage(f"unknown message type {kind!r} on the {request.channel} channel")
        else:
            raise BadMessage(f"{kind!r} is not a request a kernel takes")

    async def _query(self, connection: Connection, request: Request) -> None:
        """Completion and inspection, answered by the kernel (between cells, so in a task of
        their own: the connection's other frames, an interrupt say, are not held up)."""
        kind = request.msg_type
        reply_type = kind.removesuffix("_request") + "_reply"
        try:
            answer = await self.services.engine.sessions.query(
                self.session_id, kind, request.content
            )
        except ExecboxError as exc:
            self._answer(connection, request, reply_type, error_content(exc))
            return
        finally:
            self._queries -= 1
        if answer is None:  # a long cell is running, or the kernel is restarting
            answer = replies.nothing_found(kind, request.content)
        self._answer(connection, request, reply_type, answer)

    async def _input(self, content: dict[str, Any]) -> None:
        value = content.get("value")
        if not isinstance(value, str):
            raise BadMessage("input_reply needs content.value, a string")
        if self._execution_id is None:
            raise BadMessage("no cell is waiting for input")
        self.services.engine.sessions.send_input(self.session_id, self._execution_id, value)

    # -- the worker ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Run queued cells one at a time until the bridge is no longer needed."""
        with self.scope:
            async with self._inbox:
                async for queued in self._inbox:
                    self.running, self._settled = queued, anyio.Event()
                    self._started = anyio.Event()
                    try:
                        await self._execute(queued)
                    except Exception:
                        log.exception("kernel %s: a cell could not be carried out", self.session_id)
                        error = ExecboxError("internal error; see the server log")
                        self._reply(
                            queued.origin, queued.request, "execute_reply", error_content(error)
                        )
                        self._status("idle", queued.request.header)
                    finally:
                        self.running = None
                        self._execution_id = None
                        self._started.set()
                        self._settled.set()
                    if self.unattended():
                        self.gateway.forget(self)
                        break

    def unattended(self) -> bool:
        return (
            not self.connections
            and self.running is None
            and self._inbox.statistics().current_buffer_used == 0
        )

    async def _execute(self, queued: _Queued) -> None:
        request, origin = queued.request, queued.origin
        content, parent = request.content, request.header
        silent = content.get("silent") is True
        self._status("busy", parent)
        code = content.get("code")
        try:
            if not isinstance(code, str):
                raise InvalidSpec("execute_request needs content.code, a string")
            execution_id = await submit_execution(
                self.services, origin.principal, self.session_id, code, None
            )
            events = self.services.engine.sessions.events(self.session_id, execution_id)
        except ExecboxError as exc:
            reply = {**error_content(exc), "execution_count": self.execution_count}
            self.publish("error", without_status(reply), parent)
            self._finish(queued, reply)
            if isinstance(exc, SessionClosed):
                self._status("dead", None)
            return
        self._execution_id = execution_id
        await self._until_running(origin, execution_id)
        self._started.set()
        predicted = self.execution_count + 1
        if not silent:
            self.publish("execute_input", {"code": code, "execution_count": predicted}, parent)
        raised = False
        result: ExecutionResult | None = None
        async for event in events:
            if isinstance(event, EndEvent):
                result = event.result
                break
            if isinstance(event, InputRequestEvent):
                await self._input_request(queued, event)
                continue
            mapped = iopub_of_event(event, silent=silent)
            if mapped is not None:
                raised = raised or isinstance(event, ErrorEvent)
                self.publish(*mapped, parent)
        assert result is not None
        if result.execution_count is not None:
            self.execution_count = result.execution_count
        reply = execute_reply_content(result, content, predicted)
        if reply["status"] == "error":
            if not raised:
                self.publish("error", without_status(reply), parent)
            elif result.status in NOTED and result.message:
                self.publish("stream", {"name": "stderr", "text": result.message + "\n"}, parent)
        self._finish(queued, reply, result)
        if self._closed():
            self._status("dead", None)

    async def _until_running(self, origin: Connection, execution_id: str) -> None:
        """Until the engine has begun the cell (its record says so) or ended it: a kernel's
        execute_input means the cell has begun, and an interrupt can only reach a begun cell."""
        delay = START_POLL
        while True:
            row = await self.services.store.get_execution(
                origin.principal.tenant_id, self.session_id, execution_id
            )
            if row is None or row["status"] != "queued":
                return
            await anyio.sleep(delay)
            delay = min(delay * 2, 0.25)

    async def interrupt(self) -> None:
        """Interrupt the running cell, once it has begun (a signal before that is lost)."""
        if self.running is not None:
            with anyio.move_on_after(SETTLE):
                await self._started.wait()
        await self.services.engine.sessions.interrupt(self.session_id)

    async def _input_request(self, queued: _Queued, event: InputRequestEvent) -> None:
        request = queued.request
        allowed = request.content.get("allow_stdin", True) is not False
        if allowed and queued.origin.open:
            content = {"prompt": event.prompt, "password": event.password}
            queued.origin.deliver(self._message("stdin", "input_request", content, request.header))
            return
        note = NO_STDIN if not allowed else GONE
        self.publish("stream", {"name": "stderr", "text": note}, request.header)
        await self.services.engine.sessions.interrupt(self.session_id)

    def _finish(
        self, queued: _Queued, reply: dict[str, Any], result: ExecutionResult | None = None
    ) -> None:
        """The reply to the asker, idle to all, and what was queued behind a failure aborted."""
        request = queued.request
        metadata = {
            "status": reply["status"],
            "started": utc_stamp(result.started_at if result else None),
        }
        message = self._message("shell", "execute_reply", reply, request.header)
        message["metadata"] = metadata
        queued.origin.deliver(message)
        self._status("idle", request.header)
        if reply["status"] != "ok" and request.content.get("stop_on_error", True) is not False:
            self._abort_queued()

    def _abort_queued(self) -> None:
        """Answer every waiting cell ``aborted``, as a kernel does after an error."""
        while True:
            try:
                queued = self._inbox.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                return
            self._status("busy", queued.request.header)
            reply = {"status": "aborted", "execution_count": None}
            self._reply(queued.origin, queued.request, "execute_reply", reply)
            self._status("idle", queued.request.header)

    def _closed(self) -> bool:
        try:
            info = self.services.engine.sessions.info(self.session_id)
        except ExecboxError:
            return True
        return info.status is SessionStatus.CLOSED

    # -- lifecycle ----------------------------------------------------------------------------

    async def _settle(self) -> None:
        with anyio.move_on_after(SETTLE):
            await self._settled.wait()

    async def restart(self) -> None:
        """A fresh kernel in the same box: waiting cells are aborted, the running one ends."""
        self._abort_queued()
        self._status("restarting", None)
        await self.services.engine.sessions.restart(self.session_id)
        await self._settle()
        self.execution_count = 0
        self._status("starting", None)

    async def terminate(self) -> None:
        """Close the session, answer what was pending, then close every connection."""
        self._abort_queued()
        try:
            await self.services.engine.sessions.close(self.session_id)
        finally:
            await self._settle()
            self._abort_queued()
            self._status("dead", None)
            for connection in list(self.connections):
                connection.close()
            self.scope.cancel()
            self.gateway.forget(self)


class Gateway:
    """The bridges of this process, one per connected kernel, their workers in one task group."""

    def __init__(self, services: Services, task_group: anyio.abc.TaskGroup) -> None:
        self.services = services
        self.task_group = task_group
        self._bridges: dict[str, KernelBridge] = {}

    # REST calls on a kernel: through its bridge while sockets are connected (so they see the
    # kernel's status and replies), straight to the engine otherwise.

    async def interrupt(self, session_id: str) -> None:
        bridge = self._bridges.get(session_id)
        if bridge is not None:
            await bridge.interrupt()
        else:
            await self.services.engine.sessions.interrupt(session_id)

    async def restart(self, session_id: str) -> None:
        bridge = self._bridges.get(session_id)
        if bridge is not None:
            await bridge.restart()
        else:
            await self.services.engine.sessions.restart(session_id)

    async def shut_down(self, session_id: str) -> None:
        bridge = self._bridges.get(session_id)
        if bridge is not None:
            await bridge.terminate()
        else:
            await self.services.engine.sessions.close(session_id)

    def connections(self, session_id: str) -> int:
        bridge = self._bridges.get(session_id)
        return len(bridge.connections) if bridge else 0

    def attach(self, session_id: str, connection: Connection) -> KernelBridge:
        bridge = self._bridges.get(session_id)
        if bridge is None:
            info = self.services.engine.sessions.info(session_id)
            bridge = KernelBridge(self, session_id, info.kernel, info.execution_count)
            self._bridges[session_id] = bridge
            self.task_group.start_soon(bridge.run)
        bridge.connections.append(connection)
        return bridge

    def detach(self, bridge: KernelBridge, connection: Connection) -> None:
        if connection in bridge.connections:
            bridge.connections.remove(connection)
        if bridge.unattended():
            bridge.scope.cancel()
            self.forget(bridge)

    def forget(self, bridge: KernelBridge) -> None:
        if self._bridges.get(bridge.session_id) is bridge:
            del self._bridges[bridge.session_id]
