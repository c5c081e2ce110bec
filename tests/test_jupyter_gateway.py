"""The Jupyter kernel gateway API, proven with clients nobody here wrote, and raw.

1. ipybox 0.6.7's ``ExecutionClient`` against ``execbox serve --no-auth`` (it sends no key),
   with only host and port changed: state, streaming, errors, a plot, a timeout's interrupt,
   and its disconnect closing the session.
2. ``nbclient`` with jupyter_server's ``GatewayKernelManager``: straight at the server, and
   through a real ``jupyter server --gateway-url`` that sends our key as ``token`` (its own
   ``GatewayKernelClient`` opens its WebSocket without any header, so a direct connection
   cannot carry a key; Jupyter Server's gateway proxy does).
3. Raw WebSockets (the ``websockets`` package) against a real server with keys: the message
   order of a cell, stdin, interrupts, restarts, tenancy, the token forms, bad frames, a fork
   bomb, several connections.

Every server is a real ``execbox serve`` on 127.0.0.1, every kernel a real kernel in a box.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from server_support import VENV_BIN, Keys, ServerProcess, auth, free_port, make_keys, wait_until

WAIT = 90.0
"""Longest wait for any one message: the machine is shared and slow at times."""


# -- servers ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """``--no-auth`` on 127.0.0.1: what ipybox's client, which sends no key, can talk to."""
    url = f"sqlite:///{tmp_path_factory.mktemp('open') / 'execbox.db'}"
    with ServerProcess(url, "--no-auth", "--pool-size", "0") as server:
        yield server


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Keys]]:
    url = f"sqlite:///{tmp_path_factory.mktemp('keyed') / 'execbox.db'}"
    keys = make_keys(url)
    with ServerProcess(url, "--pool-size", "0") as server:
        yield server, keys


@pytest.fixture
def server(keyed: tuple[ServerProcess, Keys]) -> ServerProcess:
    return keyed[0]


@pytest.fixture
def keys(keyed: tuple[ServerProcess, Keys]) -> Keys:
    return keyed[1]


def token(key: str) -> dict[str, str]:
    return {"Authorization": f"token {key}"}


def session_of(kernel_id: str) -> str:
    return kernel_id.replace("-", "")


def start_kernel(server: ServerProcess, headers: dict[str, str], **body: Any) -> str:
    response = httpx.post(f"{server.base}/api/kernels", json=body, headers=headers, timeout=WAIT)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


# -- a raw Jupyter client ---------------------------------------------------------------------


class RawKernel:
    """One WebSocket to a kernel; every frame received is kept in ``seen``, in order."""

    def __init__(self, socket: ClientConnection) -> None:
        self.socket = socket
        self.session = uuid.uuid4().hex
        self.seen: list[dict[str, Any]] = []

    def send(self, msg_type: str, content: dict[str, Any], channel: str = "shell") -> str:
        msg_id = uuid.uuid4().hex
        header = {
            "msg_id": msg_id,
            "msg_type": msg_type,
            "session": self.session,
            "username": "test",
            "date": datetime.now().isoformat(),
            "version": "5.3",
        }
        frame = {
            "header": header,
            "parent_header": {},
            "metadata": {},
            "content": content,
            "buffers": [],
            "channel": channel,
        }
        self.socket.send(json.dumps(frame))
        return msg_id

    def recv(self, timeout: float = WAIT) -> dict[str, Any]:
        message = json.loads(self.socket.recv(timeout=timeout))
        self.seen.append(message)
        return message

    def of(self, msg_id: str) -> list[dict[str, Any]]:
        return [m for m in self.seen if m["parent_header"].get("msg_id") == msg_id]

    def until(self, check: Any, timeout: float = WAIT) -> dict[str, Any]:
        """Receive until a frame satisfies ``check``; that frame."""
        deadline = time.monotonic() + timeout
        for message in self.seen:
            if check(message):
                return message
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, (
                f"not within {timeout} s; seen {[m['msg_type'] for m in self.seen]}"
            )
            message = self.recv(remaining)
            if check(message):
                return message

    def done(self, msg_id: str, timeout: float = WAIT) -> list[dict[str, Any]]:
        """Every frame of the request until both its reply and its idle came."""
        deadline = time.monotonic() + timeout

        def finished() -> bool:
            mine = self.of(msg_id)
            replied = any(m["msg_type"].endswith("_reply") for m in mine)
            idle = any(
                m["msg_type"] == "status" and m["content"]["execution_state"] == "idle"
                for m in mine
            )
            return replied and idle

        while not finished():
            remaining = deadline - time.monotonic()
            assert remaining > 0, [m["msg_type"] for m in self.of(msg_id)]
            self.recv(remaining)
        return self.of(msg_id)

    def execute(self, code: str, **content: Any) -> tuple[str, list[dict[str, Any]]]:
        msg_id = self.send("execute_request", {"code": code, **content})
        return msg_id, self.done(msg_id)


def reply_of(messages: list[dict[str, Any]]) -> dict[str, Any]:
    (reply,) = [m for m in messages if m["msg_type"].endswith("_reply")]
    return reply


def types(messages: list[dict[str, Any]]) -> list[str]:
    return [m["msg_type"] for m in messages]


def text_of(messages: list[dict[str, Any]]) -> str:
    return "".join(m["content"]["text"] for m in messages if m["msg_type"] == "stream")


@contextlib.contextmanager
def channels(
    server: ServerProcess, kernel_id: str, headers: dict[str, str] | None = None, query: str = ""
) -> Iterator[RawKernel]:
    url = f"ws://127.0.0.1:{server.port}/api/kernels/{kernel_id}/channels{query}"
    with connect(url, additional_headers=headers or {}, proxy=None, open_timeout=WAIT) as socket:
        yield RawKernel(socket)


def refused(server: ServerProcess, path: str, headers: dict[str, str] | None = None) -> int:
    """The status a WebSocket upgrade is refused with."""
    url = f"ws://127.0.0.1:{server.port}{path}"
    try:
        with connect(url, additional_headers=headers or {}, proxy=None, open_timeout=WAIT):
            pass
    except InvalidStatus as exc:
        return exc.response.status_code
    pytest.fail(f"the WebSocket {path} was accepted")


# == 1. ipybox 0.6.7's ExecutionClient ========================================================


def test_ipybox_execution_client_runs_unchanged(open_server: ServerProcess) -> None:
    from ipybox import ExecutionClient, ExecutionError

    async def scenario() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        async with ExecutionClient(port=open_server.port, host="127.0.0.1") as client:
            seen["kernel_id"] = client.kernel_id
            seen["state"] = (await client.execute("x = 21\nprint(x * 2)")).text
            seen["again"] = (await client.execute("x + 1")).text
            code = "import time\nfor i in range(3):\n    print(i, flush=True)\n    time.sleep(0.5)"
            execution = await client.submit(code)
            seen["chunks"] = [chunk async for chunk in execution.stream(timeout=WAIT)]
            with pytest.raises(ExecutionError) as raised:
                await client.execute("1 / 0")
            seen["error"], seen["trace"] = str(raised.value), raised.value.trace
            plot = "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.show()"
            result = await client.execute(plot, timeout=WAIT)
            seen["plot_text"], seen["images"] = result.text, result.images
            with pytest.raises(asyncio.TimeoutError):  # ipybox interrupts the kernel then
                await client.execute("import time\ntime.sleep(600)", timeout=3)
            seen["after_timeout"] = (await client.execute("print('kept', x)")).text
        return seen

    seen = asyncio.run(scenario())
    assert seen["state"] == "42"
    assert seen["again"] == "22"
    assert "".join(seen["chunks"]) == "0\n1\n2\n"
    assert len(seen["chunks"]) >= 2, seen["chunks"]  # it streamed, not one block at the end
    assert seen["error"] == "ZeroDivisionError: division by zero"
    assert "ZeroDivisionError" in seen["trace"]
    assert "Figure" in seen["plot_text"]
    assert len(seen["images"]) == 1
    assert seen["images"][0].size[0] > 100
    assert seen["after_timeout"] == "kept 21"  # the interrupt kept the state
    # ipybox's disconnect deletes the kernel: the session is closed in our API.
    record = httpx.get(f"{open_server.base}/v1/sessions/{session_of(seen['kernel_id'])}")
    assert record.status_code == 200, record.text
    assert record.json()["status"] == "closed"
    assert record.json()["reason"] == "closed"
    gone = httpx.get(f"{open_server.base}/api/kernels/{seen['kernel_id']}")
    assert gone.status_code == 404
    log = open_server.log()
    assert f'"path": "/api/kernels/{seen["kernel_id"]}/interrupt", "status": 204' in log


# == 2. nbclient, jupyter_server's gateway client ==============================================


def _notebook() -> Any:
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    cells = [
        new_code_cell("x = 6 * 7\nprint('x is', x)"),
        new_code_cell("x"),
        new_code_cell(
            "from IPython.display import HTML, display\ndisplay(HTML('<b>bold</b>'))\n"
            "h = display('first', display_id=True)\nh.update('second')"
        ),
        new_code_cell("raise ValueError('expected')", metadata={"tags": ["raises-exception"]}),
        new_code_cell("x + 1"),
    ]
    notebook = new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nbformat.validate(notebook)
    return notebook


def _execute_notebook(gateway_url: str) -> Any:
    from jupyter_server.gateway.gateway_client import GatewayClient
    from jupyter_server.gateway.managers import GatewayKernelManager
    from nbclient import NotebookClient

    GatewayClient.clear_instance()
    GatewayClient.instance(url=gateway_url, request_timeout=WAIT)
    try:
        notebook = _notebook()
        client = NotebookClient(
            notebook,
            kernel_manager_class=GatewayKernelManager,
            timeout=int(WAIT),
            startup_timeout=int(WAIT),
        )
        client.execute()
        return notebook
    finally:
        GatewayClient.clear_instance()


def _assert_outputs(notebook: Any) -> None:
    import nbformat

    nbformat.validate(notebook)
    first, second, third, fourth, fifth = notebook.cells
    assert notebook.metadata["language_info"]["name"] == "python"
    assert first.outputs == [{"output_type": "stream", "name": "stdout", "text": "x is 42\n"}]
    assert second.outputs[0]["output_type"] == "execute_result"
    assert second.outputs[0]["data"]["text/plain"] == "42"
    assert second.execution_count == second.outputs[0]["execution_count"]
    html, updated = third.outputs
    assert html["data"]["text/html"] == "<b>bold</b>"
    assert updated["data"]["text/plain"] == "'second'"  # nbclient applied update_display_data
    (error,) = fourth.outputs
    assert (error["output_type"], error["ename"], error["evalue"]) == (
        "error",
        "ValueError",
        "expected",
    )
    assert fifth.outputs[0]["data"]["text/plain"] == "43"
    counts = [cell.execution_count for cell in notebook.cells]
    assert counts == sorted(counts), counts


def test_nbclient_through_the_gateway_client(open_server: ServerProcess) -> None:
    """nbclient with GatewayKernelManager straight at the server (its WebSocket has no key)."""
    notebook = _execute_notebook(open_server.base)
    _assert_outputs(notebook)
    assert httpx.get(f"{open_server.base}/api/kernels").json() == []  # nbclient shut it down


def test_nbclient_through_jupyter_server_gateway_with_a_token(
    keyed: tuple[ServerProcess, Keys], tmp_path: Path
) -> None:
    """A real ``jupyter server --gateway-url`` sends our key as ``Authorization: token``, on
    REST and on its kernel WebSocket; nbclient runs the notebook through it."""
    server, keys = keyed
    port = free_port()
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "JUPYTER_DATA_DIR": str(tmp_path / "data"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
    }
    argv = [
        str(VENV_BIN / "jupyter-server"),
        f"--ServerApp.port={port}",
        "--ServerApp.ip=127.0.0.1",
        "--ServerApp.open_browser=False",
        f"--ServerApp.root_dir={tmp_path}",
        "--IdentityProvider.token=",  # the front is on 127.0.0.1 only; execbox holds the key
        "--ServerApp.disable_check_xsrf=True",
        f"--GatewayClient.url={server.base}",
        f"--GatewayClient.auth_token={keys.a}",
    ]
    if os.geteuid() == 0:
        argv.append("--allow-root")
    log_path = tmp_path / "jupyter-server.log"
    with log_path.open("wb") as log:
        front = subprocess.Popen(argv, env=env, stdout=log, stderr=log)
    try:
        front_url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            if front.poll() is not None:
                raise RuntimeError(log_path.read_text()[-3000:])
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(f"{front_url}/api", timeout=2).status_code == 200
            return False

        wait_until(up, WAIT, "jupyter server coming up")
        specs = httpx.get(f"{front_url}/api/kernelspecs", timeout=WAIT).json()
        assert "python3" in specs["kernelspecs"], specs  # fetched from execbox, with the key
        notebook = _execute_notebook(front_url)
        _assert_outputs(notebook)
    finally:
        front.terminate()
        try:
            front.wait(30)
        except subprocess.TimeoutExpired:
            front.kill()
            front.wait(10)
    log = server.log()
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    jupyter = [line for line in lines if str(line.get("path", "")).startswith("/api/kernels")]
    assert {line["method"] for line in jupyter} >= {"POST", "WEBSOCKET", "DELETE"}, jupyter
    assert {line["tenant"] for line in jupyter} == {"tenant-a"}, jupyter
    assert all(line["status"] < 400 for line in jupyter), jupyter
    secret = keys.a.rsplit("_", 1)[1]
    assert secret not in log
    assert secret not in log_path.read_text()
    sessions = httpx.get(f"{server.base}/v1/sessions", headers=auth(keys.a), timeout=WAIT).json()
    assert sessions["sessions"], "the notebook's kernel is a session of tenant a"
    assert all(s["status"] == "closed" for s in sessions["sessions"]), sessions


# == 3. raw WebSockets =========================================================================


def test_rest_routes_have_jupyter_servers_shapes(server: ServerProcess, keys: Keys) -> None:
    http = httpx.Client(base_url=server.base, headers=token(keys.a), timeout=WAIT)
    assert http.get("/api").json()["version"]
    specs = http.get("/api/kernelspecs").json()
    assert specs["default"] == "python3"
    python = specs["kernelspecs"]["python3"]
    assert python["name"] == "python3"
    assert python["spec"]["language"] == "python"
    assert set(python["spec"]) >= {"argv", "display_name", "language", "env", "metadata"}
    assert python["resources"] == {}
    assert http.get("/api/kernelspecs/python3").json() == python
    assert http.get("/api/kernelspecs/python").json() == python  # what ipybox asks for
    missing = http.get("/api/kernelspecs/cobol")
    assert missing.status_code == 404
    body = missing.json()
    assert body["reason"] == "Not Found"
    assert "cobol" in body["message"]
    assert body["error"]["type"] == "NoSuchKernel"

    created = http.post("/api/kernels", json={"name": "python3", "env": {"KERNEL_X": "1"}})
    assert created.status_code == 201, created.text
    model = created.json()
    assert set(model) == {"id", "name", "last_activity", "execution_state", "connections"}
    kernel_id = model["id"]
    assert created.headers["location"] == f"/api/kernels/{kernel_id}"
    assert len(kernel_id.split("-")) == 5  # Jupyter Server routes only such ids
    assert model["name"] == "python3"
    assert model["execution_state"] == "idle"
    assert model["connections"] == 0
    datetime.strptime(model["last_activity"], "%Y-%m-%dT%H:%M:%S.%fZ")  # as it parses it
    assert kernel_id in [k["id"] for k in http.get("/api/kernels").json()]
    assert http.get(f"/api/kernels/{kernel_id}").json()["id"] == kernel_id
    assert http.get(f"/api/kernels/{session_of(kernel_id)}").json()["id"] == kernel_id
    native = http.get(f"/v1/sessions/{session_of(kernel_id)}", headers=auth(keys.a)).json()
    assert native["status"] in ("idle", "busy")  # one session, two APIs
    assert native["spec"]["env"] == {"KERNEL_X": "***"}

    assert http.post(f"/api/kernels/{kernel_id}/interrupt", json={}).status_code == 204
    restarted = http.post(f"/api/kernels/{kernel_id}/restart", json={})
    assert restarted.status_code == 200, restarted.text
    assert restarted.json()["id"] == kernel_id
    assert http.delete(f"/api/kernels/{kernel_id}").status_code == 204
    for method in ("GET", "DELETE"):
        gone = http.request(method, f"/api/kernels/{kernel_id}")
        assert gone.status_code == 404, (method, gone.text)
        assert gone.json()["reason"] == "Not Found"
    assert http.post(f"/api/kernels/{kernel_id}/interrupt").status_code == 404
    assert kernel_id not in [k["id"] for k in http.get("/api/kernels").json()]
    closed = http.get(f"/v1/sessions/{session_of(kernel_id)}", headers=auth(keys.a)).json()
    assert closed["status"] == "closed"

    for bad, status in (({"name": "cobol"}, 404), ({"env": ["x"]}, 400), ({"env": {"K": 1}}, 400)):
        response = http.post("/api/kernels", json=bad)
        assert response.status_code == status, (bad, response.text)
        assert response.json()["message"], response.text
    not_json = http.post("/api/kernels", content=b"{oops", headers={"content-type": "text/plain"})
    assert not_json.status_code == 400
    assert not_json.json()["error"]["type"] == "InvalidSpec"


def test_a_cell_in_jupyter_messages(server: ServerProcess, keys: Keys) -> None:
    kernel_id = start_kernel(server, token(keys.a))
    with channels(server, kernel_id, token(keys.a)) as kernel:
        info_id = kernel.send("kernel_info_request", {})
        info = kernel.done(info_id)
        assert types(info) == ["status", "kernel_info_reply", "status"]
        reply = info[1]
        assert reply["channel"] == "shell"
        assert reply["parent_header"]["msg_id"] == info_id
        assert reply["parent_header"]["session"] == kernel.session  # the header, echoed
        content = reply["content"]
        assert content["status"] == "ok"
        assert content["protocol_version"] == "5.3"
        assert content["language_info"]["name"] == "python"
        assert content["language_info"]["version"] == platform.python_version()
        assert content["language_info"]["file_extension"] == ".py"
        for message in info:
            assert message["msg_id"] == message["header"]["msg_id"]
            assert message["msg_type"] == message["header"]["msg_type"]
            assert set(message["header"]) >= {"msg_id", "session", "username", "date", "version"}
            assert set(message) >= {"parent_header", "metadata", "content", "buffers", "channel"}

        _, messages = kernel.execute("print('hi')\nx = 41\nx + 1")
        assert types(messages) == [
            "status",
            "execute_input",
            "stream",
            "execute_result",
            "execute_reply",
            "status",
        ]
        busy, execute_input, stream, result, reply, idle = messages
        assert busy["content"] == {"execution_state": "busy"}
        assert idle["content"] == {"execution_state": "idle"}
        assert execute_input["content"]["code"] == "print('hi')\nx = 41\nx + 1"
        assert stream["content"] == {"name": "stdout", "text": "hi\n"}
        assert result["content"]["data"] == {"text/plain": "42"}
        assert reply["channel"] == "shell"
        assert reply["content"]["status"] == "ok"
        count = reply["content"]["execution_count"]
        assert execute_input["content"]["execution_count"] == count
        assert result["content"]["execution_count"] == count
        assert {m["channel"] for m in (busy, execute_input, stream, result, idle)} == {"iopub"}

        _, failed = kernel.execute("y = x\nraise KeyError('nope')")
        assert types(failed) == ["status", "execute_input", "error", "execute_reply", "status"]
        error = reply_of(failed)["content"]
        assert (error["status"], error["ename"], error["evalue"]) == ("error", "KeyError", "'nope'")
        assert error["traceback"]
        assert error["execution_count"] == count + 1

        _, quiet = kernel.execute("print('still printed')\n99", silent=True)
        assert types(quiet) == ["status", "stream", "execute_reply", "status"]

        code = (
            "from IPython.display import display, clear_output\n"
            "h = display('a', display_id=True)\nh.update('b')\nprint('gone')\nclear_output()"
        )
        _, shown = kernel.execute(code)
        display, update = (m for m in shown if "display_data" in m["msg_type"])
        assert display["msg_type"] == "display_data"
        assert update["msg_type"] == "update_display_data"
        assert display["content"]["transient"]["display_id"]
        assert update["content"]["transient"] == display["content"]["transient"]
        assert "clear_output" in types(shown)

        # stop_on_error: what was queued behind a failing cell is aborted, as ipykernel does.
        first = kernel.send("execute_request", {"code": "import time; time.sleep(1); 1/0"})
        second = kernel.send("execute_request", {"code": "print('never')"})
        third = kernel.send("execute_request", {"code": "print('never either')"})
        assert reply_of(kernel.done(first))["content"]["ename"] == "ZeroDivisionError"
        for aborted in (second, third):
            messages = kernel.done(aborted)
            assert reply_of(messages)["content"]["status"] == "aborted"
            assert "stream" not in types(messages)
        lenient = kernel.send("execute_request", {"code": "1/0", "stop_on_error": False})
        after = kernel.send("execute_request", {"code": "print('runs')"})
        assert reply_of(kernel.done(lenient))["content"]["status"] == "error"
        assert text_of(kernel.done(after)) == "runs\n"

        _, state = kernel.execute("print(x, y)")
        assert text_of(state) == "41 41\n"


def test_requests_that_run_no_cell(server: ServerProcess, keys: Keys) -> None:
    kernel_id = start_kernel(server, token(keys.a))
    with channels(server, kernel_id, token(keys.a)) as kernel:
        for code in ("a = 1", "b = 2", "c = 3"):
            kernel.execute(code)

        def ask(msg_type: str, content: dict[str, Any], channel: str = "shell") -> dict[str, Any]:
            answer = reply_of(kernel.done(kernel.send(msg_type, content, channel)))
            assert answer["msg_type"] == msg_type.replace("_request", "_reply")
            assert answer["channel"] == channel
            return dict(answer["content"])

        assert ask("is_complete_request", {"code": "x = 1"}) == {"status": "complete"}
        assert ask("is_complete_request", {"code": "for i in range(3):"}) == {
            "status": "incomplete",
            "indent": "    ",
        }
        assert ask("is_complete_request", {"code": "x = )"}) == {"status": "invalid"}
        assert ask("is_complete_request", {"code": "%time 1"})["status"] == "complete"
        # Completion and inspection are the kernel's, from its namespace, and run no cell.
        kernel.execute("my_variable = [1, 2]")
        completion = ask("complete_request", {"code": "x = my_va", "cursor_pos": 9})
        assert completion["status"] == "ok"
        assert "my_variable" in completion["matches"]
        assert (completion["cursor_start"], completion["cursor_end"]) == (4, 9)
        assert "print" in ask("complete_request", {"code": "pri", "cursor_pos": 3})["matches"]
        found = ask("inspect_request", {"code": "my_variable", "cursor_pos": 3})
        assert found["found"] is True
        assert "[1, 2]" in found["data"]["text/plain"]
        missing = ask("inspect_request", {"code": "nothing_here", "cursor_pos": 3})
        assert missing["found"] is False
        bad = ask("complete_request", {"code": "pri", "cursor_pos": 99})
        assert (bad["status"], bad["ename"]) == ("error", "InvalidSpec")
        _, counted = kernel.execute("1")
        assert reply_of(counted)["content"]["execution_count"] == 5  # 4 cells before it
        assert ask("comm_info_request", {}) == {"status": "ok", "comms": {}}
        history = ask("history_request", {"hist_access_type": "tail", "n": 2, "output": False})
        assert [entry[2] for entry in history["history"]] == ["my_variable = [1, 2]", "1"]
        found = ask("history_request", {"hist_access_type": "search", "pattern": "a*", "n": 5})
        assert [entry[2] for entry in found["history"]] == ["a = 1"]
        assert ask("kernel_info_request", {}, "control")["status"] == "ok"


def test_stdin_input_and_password(server: ServerProcess, keys: Keys) -> None:
    kernel_id = start_kernel(server, token(keys.a))
    with channels(server, kernel_id, token(keys.a)) as kernel:
        code = "import getpass\nname = input('who? ')\nsecret = getpass.getpass('pw: ')\n"
        code += "print('hello', name, len(secret))"
        msg_id = kernel.send("execute_request", {"code": code, "allow_stdin": True})
        asked = kernel.until(lambda m: m["msg_type"] == "input_request")
        assert asked["channel"] == "stdin"
        assert asked["parent_header"]["msg_id"] == msg_id
        assert asked["content"] == {"prompt": "who? ", "password": False}
        kernel.send("input_reply", {"value": "ada"}, channel="stdin")
        password = kernel.until(
            lambda m: m["msg_type"] == "input_request" and m["content"]["password"]
        )
        assert password["content"]["prompt"] == "pw: "
        kernel.send("input_reply", {"value": "s3cret"}, channel="stdin")
        messages = kernel.done(msg_id)
        assert text_of(messages) == "hello ada 6\n"
        assert reply_of(messages)["content"]["status"] == "ok"

        # A client that does not allow stdin gets no input_request: the cell is interrupted.
        refused_id = kernel.send("execute_request", {"code": "input('x')", "allow_stdin": False})
        messages = kernel.done(refused_id)
        assert "input_request" not in types(kernel.of(refused_id))
        assert "did not allow" in text_of(messages)
        assert reply_of(messages)["content"]["status"] == "error"
        # Input nobody asked for is answered with an error; the socket goes on.
        kernel.send("input_reply", {"value": "stray"}, channel="stdin")
        stray = kernel.until(lambda m: m["msg_type"] == "error" and m["channel"] == "stdin")
        assert "no cell is waiting" in stray["content"]["evalue"]
        _, ok = kernel.execute("print(name)")
        assert text_of(ok) == "ada\n"


def test_interrupts_by_rest_and_by_control(server: ServerProcess, keys: Keys) -> None:
    kernel_id = start_kernel(server, token(keys.a))
    with channels(server, kernel_id, token(keys.a)) as kernel:
        kernel.execute("kept = 'yes'")
        spinner = "print('spinning', flush=True)\nwhile True:\n    pass"
        for how in ("rest", "control"):
            spin = kernel.send("execute_request", {"code": spinner})
            kernel.until(  # the cell runs (a client interrupts what it sees running)
                lambda m, spin=spin: (
                    m["parent_header"].get("msg_id") == spin and m["msg_type"] == "stream"
                )
            )
            if how == "rest":
                url = f"{server.base}/api/kernels/{kernel_id}/interrupt"
                interrupted = httpx.post(url, headers=token(keys.a), timeout=WAIT)
                assert interrupted.status_code == 204
            else:
                control = kernel.send("interrupt_request", {}, channel="control")
                answer = kernel.until(lambda m: m["msg_type"] == "interrupt_reply")
                assert answer["channel"] == "control"
                assert answer["parent_header"]["msg_id"] == control
                assert answer["content"] == {"status": "ok"}
            reply = reply_of(kernel.done(spin))["content"]
            assert (reply["status"], reply["ename"]) == ("error", "KeyboardInterrupt"), how
        # A completion asked during a cell waits for the kernel; frames behind it do not.
        spin = kernel.send("execute_request", {"code": spinner})
        kernel.until(
            lambda m: m["parent_header"].get("msg_id") == spin and "stream" in m["msg_type"]
        )
        asked = [kernel.send("complete_request", {"code": "kep", "cursor_pos": 3})]
        # A flood: four are put to the kernel at once, the rest find nothing at once.
        flood = [
            kernel.send("complete_request", {"code": "kep", "cursor_pos": 3}) for _ in range(20)
        ]
        for msg_id in flood[3:]:  # no idle around them: a cell is running
            found = kernel.until(
                lambda m, msg_id=msg_id: (
                    m["parent_header"].get("msg_id") == msg_id and m["msg_type"] == "complete_reply"
                )
            )
            assert found["content"]["matches"] == []
        kernel.send("interrupt_request", {}, channel="control")
        kernel.until(lambda m: m["msg_type"] == "interrupt_reply")
        assert reply_of(kernel.done(spin))["content"]["ename"] == "KeyboardInterrupt"
        for msg_id in asked + flood[:3]:
            completion = reply_of(kernel.done(msg_id))
            assert completion["msg_type"] == "complete_reply"
            assert "kept" in completion["content"]["matches"]
        _, state = kernel.execute("print(kept)")
        assert text_of(state) == "yes\n"


def test_restart_loses_state_and_shutdown_closes(server: ServerProcess, keys: Keys) -> None:
    kernel_id = start_kernel(server, token(keys.a))
    with channels(server, kernel_id, token(keys.a)) as kernel:
        kernel.execute("x = 1")
        restarted = httpx.post(
            f"{server.base}/api/kernels/{kernel_id}/restart", headers=token(keys.a), timeout=WAIT
        )
        assert restarted.status_code == 200, restarted.text
        kernel.until(
            lambda m: m["msg_type"] == "status" and m["content"]["execution_state"] == "restarting"
        )
        _, lost = kernel.execute("x")
        assert reply_of(lost)["content"]["ename"] == "NameError"
        assert reply_of(lost)["content"]["execution_count"] == 1  # counts start again

        kernel.execute("y = 2")
        shutdown = kernel.send("shutdown_request", {"restart": True}, channel="control")
        answer = reply_of(kernel.done(shutdown))
        assert answer["content"] == {"status": "ok", "restart": True}
        _, lost = kernel.execute("y")
        assert reply_of(lost)["content"]["ename"] == "NameError"

        shutdown = kernel.send("shutdown_request", {"restart": False}, channel="control")
        assert reply_of(kernel.done(shutdown))["content"] == {"status": "ok", "restart": False}
        kernel.until(
            lambda m: m["msg_type"] == "status" and m["content"]["execution_state"] == "dead"
        )
        with pytest.raises(ConnectionClosed):  # the kernel is gone: its sockets close
            kernel.until(lambda m: False)
    native = httpx.get(
        f"{server.base}/v1/sessions/{session_of(kernel_id)}", headers=auth(keys.a), timeout=WAIT
    )
    assert native.json()["status"] == "closed"
    assert refused(server, f"/api/kernels/{kernel_id}/channels", token(keys.a)) == 404


def test_other_tenants_kernels_are_not_found(server: ServerProcess, keys: Keys) -> None:
    kernel_id = start_kernel(server, token(keys.a))
    base = f"{server.base}/api/kernels/{kernel_id}"
    with httpx.Client(headers=token(keys.b), timeout=WAIT) as other:
        assert other.get(base).status_code == 404
        assert other.post(f"{base}/interrupt").status_code == 404
        assert other.post(f"{base}/restart").status_code == 404
        assert other.delete(base).status_code == 404
        assert kernel_id not in [k["id"] for k in other.get(f"{server.base}/api/kernels").json()]
    path = f"/api/kernels/{kernel_id}/channels"
    assert refused(server, path, token(keys.b)) == 404
    assert refused(server, f"{path}?token={keys.b}") == 404
    with channels(server, kernel_id, token(keys.a)) as kernel:  # still there, still a's
        _, ok = kernel.execute("print('mine')")
        assert text_of(ok) == "mine\n"


def test_keys_as_jupyter_clients_send_them(server: ServerProcess, keys: Keys) -> None:
    """``Authorization: token`` and ``?token=`` on /api only; the key never reaches a log."""
    kernels = f"{server.base}/api/kernels"
    assert httpx.get(kernels, headers=token(keys.a)).status_code == 200
    assert httpx.get(kernels, headers=auth(keys.a)).status_code == 200
    assert httpx.get(f"{kernels}?token={keys.a}").status_code == 200
    for bad in ("nonsense", keys.revoked, ""):
        assert httpx.get(f"{kernels}?token={bad}").status_code == 401
    for bad in ("nonsense", keys.revoked):
        assert httpx.get(kernels, headers=token(bad)).status_code == 401
    assert httpx.get(kernels, headers={"Authorization": "token"}).status_code == 401
    unauthorized = httpx.get(kernels)
    assert unauthorized.status_code == 401
    assert unauthorized.json()["reason"] == "Unauthorized"
    assert unauthorized.json()["error"]["type"] == "AuthenticationError"
    # The native API keeps refusing keys in URLs and the token scheme.
    assert httpx.get(f"{server.base}/v1/sessions?token={keys.a}").status_code == 401
    assert httpx.get(f"{server.base}/v1/sessions", headers=token(keys.a)).status_code == 401
    ghost = "ses_0123456789abcdef01234567"
    assert refused(server, f"/v1/sessions/{ghost}/stream?token={keys.a}") == 401

    kernel_id = start_kernel(server, token(keys.a))
    with channels(server, kernel_id, query=f"?token={keys.a}") as kernel:
        _, ok = kernel.execute("print('by query')")
        assert text_of(ok) == "by query\n"
    assert refused(server, f"/api/kernels/{kernel_id}/channels") == 401
    assert refused(server, f"/api/kernels/{kernel_id}/channels?token={keys.revoked}") == 401
    log = server.log()
    for key in (keys.a, keys.revoked):
        assert key.rsplit("_", 1)[1] not in log
    assert f"/api/kernels/{kernel_id}/channels" in log  # the lines are there, without the key


def test_bad_frames_are_answered_and_the_socket_goes_on(server: ServerProcess, keys: Keys) -> None:
    kernel_id = start_kernel(server, token(keys.a))
    with channels(server, kernel_id, token(keys.a)) as kernel:
        for frame in ("not json", "[1, 2]", '{"content": {}}', '{"header": {"msg_id": "x"}}'):
            kernel.socket.send(frame)
            answer = kernel.recv()
            assert answer["msg_type"] == "error", frame
            assert answer["content"]["ename"] == "BadMessage", frame
        kernel.socket.send(b"\x00\x01binary")
        assert "binary" in kernel.recv()["content"]["evalue"]

        odd = kernel.send("frobnicate_request", {})
        answer = reply_of(kernel.done(odd))
        assert answer["msg_type"] == "frobnicate_reply"
        assert answer["content"]["status"] == "error"
        assert "frobnicate_request" in answer["content"]["evalue"]
        nowhere = kernel.send("kernel_info_request", {}, channel="hb")
        answer = kernel.until(lambda m: m["parent_header"].get("msg_id") == nowhere)
        assert answer["msg_type"] == "error"
        comm = kernel.send("comm_open", {"comm_id": "c1", "target_name": "jupyter.widget"})
        closed = kernel.until(lambda m: m["parent_header"].get("msg_id") == comm)
        assert closed["msg_type"] == "comm_close"
        assert closed["content"]["comm_id"] == "c1"
        _, no_code = kernel.execute("")  # an empty cell is fine
        assert reply_of(no_code)["content"]["status"] == "ok"
        bad_code = kernel.send("execute_request", {"code": 42})
        assert reply_of(kernel.done(bad_code))["content"]["ename"] == "InvalidSpec"

        pong = kernel.socket.ping()
        assert pong.wait(WAIT)
        _, ok = kernel.execute("print('fine')")
        assert text_of(ok) == "fine\n"


def test_v1_subprotocol_is_declined_for_json(server: ServerProcess, keys: Keys) -> None:
    kernel_id = start_kernel(server, token(keys.a))
    url = f"ws://127.0.0.1:{server.port}/api/kernels/{kernel_id}/channels"
    with connect(
        url,
        additional_headers=token(keys.a),
        subprotocols=["v1.kernel.websocket.jupyter.org"],  # type: ignore[list-item]
        proxy=None,
        open_timeout=WAIT,
    ) as socket:
        assert socket.subprotocol is None
        kernel = RawKernel(socket)
        _, ok = kernel.execute("print('json')")
        assert text_of(ok) == "json\n"


def test_several_connections_share_iopub(server: ServerProcess, keys: Keys) -> None:
    kernel_id = start_kernel(server, token(keys.a))
    model = f"{server.base}/api/kernels/{kernel_id}"
    with channels(server, kernel_id, token(keys.a)) as watcher:
        with channels(server, kernel_id, token(keys.a)) as actor:
            assert httpx.get(model, headers=token(keys.a)).json()["connections"] == 2
            msg_id, _ = actor.execute("shared = 'seen'\nprint(shared)")
            idle = watcher.until(
                lambda m: (
                    m["parent_header"].get("msg_id") == msg_id
                    and m["msg_type"] == "status"
                    and m["content"]["execution_state"] == "idle"
                )
            )
            assert idle["channel"] == "iopub"
            assert text_of(watcher.of(msg_id)) == "seen\n"
            assert "execute_reply" not in types(watcher.of(msg_id))  # replies go to the asker
        # Closing a socket does not end the kernel.
        wait_until(
            lambda: httpx.get(model, headers=token(keys.a)).json()["connections"] == 1,
            WAIT,
            "the closed socket leaving",
        )
        _, after = watcher.execute("print(shared)")
        assert text_of(after) == "seen\n"
    assert httpx.get(model, headers=token(keys.a)).status_code == 200
    assert httpx.delete(model, headers=token(keys.a)).status_code == 204


def test_a_fork_bomb_ends_its_kernel_and_the_gateway_goes_on(
    server: ServerProcess, keys: Keys
) -> None:
    kernel_id = start_kernel(server, token(keys.a))
    with channels(server, kernel_id, token(keys.a)) as kernel:
        bomb = kernel.send("execute_request", {"code": "import os\nwhile True:\n    os.fork()"})
        messages = kernel.done(bomb, timeout=180)
        reply = reply_of(messages)["content"]
        assert reply["status"] == "error"
        assert reply["ename"] == "ProcessLimitExceeded", reply
        assert "process limit" in reply["evalue"]
        assert any(m["msg_type"] == "error" for m in messages)  # told on iopub too
        kernel.until(
            lambda m: m["msg_type"] == "status" and m["content"]["execution_state"] == "dead"
        )
        _, late = kernel.execute("print('too late')")
        assert reply_of(late)["content"]["ename"] == "SessionClosed"
    assert (
        httpx.get(f"{server.base}/api/kernels/{kernel_id}", headers=token(keys.a)).status_code
        == 404
    )
    native = httpx.get(
        f"{server.base}/v1/sessions/{session_of(kernel_id)}", headers=auth(keys.a), timeout=WAIT
    ).json()
    assert (native["status"], native["reason"]) == ("closed", "pids_limit")
    fresh = start_kernel(server, token(keys.a))
    with channels(server, fresh, token(keys.a)) as kernel:
        _, ok = kernel.execute("print('still fine')")
        assert text_of(ok) == "still fine\n"
    assert (
        httpx.delete(f"{server.base}/api/kernels/{fresh}", headers=token(keys.a)).status_code == 204
    )
