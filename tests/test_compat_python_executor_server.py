"""python-executor's own HTTP API on a real `execbox serve`: the requests its client sends,
replayed exactly, and our compat client pointed at the server.

python-executor's client (``python_executor_client``) is on no package registry (it installs
from git), so it cannot be installed here. ``PeerWire`` sends what its source sends: a
``requests.Session`` (the key set on ``session.headers``), multipart bodies with a ``tar`` part
(``code.tar``, application/octet-stream) and a ``metadata`` part without a filename
(application/json), the same paths and methods; its results are parsed as it parses them.
"""

from __future__ import annotations

import io
import json
import secrets
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import anyio
import pytest
import requests

import execbox
from execbox.compat.python_executor import (
    ExecutionConfig,
    ExecutionStatus,
    Metadata,
    PythonExecutorClient,
)
from execbox.store import Store
from execbox.store.accounts import TenantLimits
from server_support import Keys, ServerProcess, make_keys, wait_until
from test_compat_python_executor import CPU_RATIO, FILL, HOG, ONLINE, processes_with

MIB = 1 << 20


@dataclass
class Deployment:
    server: ServerProcess
    keys: Keys
    net: str
    """A key of a tenant that may give boxes the network."""
    one_job: str
    """A key that may hold one live job."""


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    url = f"sqlite:///{tmp_path_factory.mktemp('pyexec') / 'execbox.db'}"
    keys = make_keys(url)

    async def more_keys() -> tuple[str, str]:
        async with Store(url) as store:
            net = await store.create_key("tenant-net", limits=TenantLimits(allow_network=True))
            one = await store.create_key("tenant-one", max_jobs=1)
            return net.token, one.token

    net, one_job = anyio.run(more_keys)
    with ServerProcess(url) as server:
        yield Deployment(server, keys, net, one_job)


def tar_of(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class PeerWire:
    """The HTTP requests of python-executor's Python client, as its source makes them."""

    def __init__(self, base_url: str, key: str | None, header: str = "Authorization") -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = 300
        self.session = requests.Session()
        if key is not None:
            self.session.headers[header] = f"Bearer {key}" if header == "Authorization" else key

    def post_exec(self, mode: str, files: dict[str, str], metadata: dict[str, Any]) -> Any:
        parts = {
            "tar": ("code.tar", tar_of(files), "application/octet-stream"),
            "metadata": (None, json.dumps(metadata), "application/json"),
        }
        url = f"{self.base_url}/api/v1/exec/{mode}"
        return self.session.post(url, files=parts, timeout=self.timeout)

    def execute_sync(self, files: dict[str, str], **metadata: Any) -> dict[str, Any]:
        response = self.post_exec("sync", files, {"entrypoint": "main.py", **metadata})
        response.raise_for_status()
        return parsed(response.json())

    def execute_async(self, files: dict[str, str], **metadata: Any) -> str:
        response = self.post_exec("async", files, {"entrypoint": "main.py", **metadata})
        response.raise_for_status()
        assert response.status_code == 202
        return str(response.json()["execution_id"])

    def get(self, execution_id: str) -> Any:
        url = f"{self.base_url}/api/v1/executions/{execution_id}"
        return self.session.get(url, timeout=self.timeout)

    def delete(self, execution_id: str) -> Any:
        url = f"{self.base_url}/api/v1/executions/{execution_id}"
        return self.session.delete(url, timeout=self.timeout)

    def eval(self, payload: dict[str, Any]) -> Any:
        return self.session.post(f"{self.base_url}/api/v1/eval", json=payload, timeout=300)


def parsed(data: dict[str, Any]) -> dict[str, Any]:
    """The peer's ``ExecutionResult.from_dict`` checks: a known status, its time format."""
    assert data["status"] in {"pending", "running", "completed", "failed", "killed"}, data
    for key in ("started_at", "finished_at"):
        if data.get(key):
            assert isinstance(datetime.fromisoformat(data[key].rstrip("Z")), datetime)
    return data


def error_of(response: Any, status: int) -> str:
    """python-executor's error shape: ``{"error": "message"}``."""
    assert response.status_code == status, (response.status_code, response.text)
    message = response.json()["error"]
    assert isinstance(message, str)
    assert message
    return message


def record(deployment: Deployment, key: str, job_id: str) -> dict[str, Any]:
    response = requests.get(
        f"{deployment.server.base}/v1/jobs/{job_id}",
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    view: dict[str, Any] = response.json()
    return view


# -- the peer's requests ----------------------------------------------------------------------


def test_sync_run_is_a_recorded_job_of_the_tenant(deployment: Deployment) -> None:
    base = deployment.server.base
    peer = PeerWire(base + "/", deployment.keys.a)
    result = peer.execute_sync({"main.py": "print('Hello, World!')"})
    assert result["status"] == "completed", result
    assert (result["stdout"], result["stderr"], result["exit_code"]) == ("Hello, World!\n", "", 0)
    assert isinstance(result["duration_ms"], int)
    assert result["started_at"].endswith("Z")
    view = record(deployment, deployment.keys.a, result["execution_id"])
    assert view["status"] == "succeeded"
    spec = view["spec"]
    assert (spec["entrypoint"], spec["network"], spec["timeout"]) == ("main.py", False, 300)
    # python-executor's defaults (1024 MiB, 2048 MiB disk, 1024 shares), clamped to the tenant.
    tenant = TenantLimits()
    assert spec["limits"]["memory"] == min(1024 * MIB, tenant.max_memory)
    assert spec["limits"]["disk"] == min(2048 * MIB, tenant.max_disk)
    assert spec["limits"]["cpus"] == 1.0
    by_header = PeerWire(base, deployment.keys.a, header="X-API-Key")
    assert by_header.execute_sync({"main.py": "print(3)"})["stdout"] == "3\n"
    # Metadata as the peer's types serialise it (all of ExecutionConfig's fields).
    metadata = Metadata(entrypoint="run.py", config=ExecutionConfig(memory_mb=128, cpu_shares=512))
    response = peer.post_exec("sync", {"run.py": "print(4)"}, metadata.to_dict())
    assert (response.status_code, response.json()["stdout"]) == (200, "4\n"), response.text
    limits = record(deployment, deployment.keys.a, response.json()["execution_id"])["spec"][
        "limits"
    ]
    assert (limits["memory"], limits["cpus"]) == (128 * MIB, 0.5)


def test_every_metadata_field_over_the_wire(deployment: Deployment) -> None:
    peer = PeerWire(deployment.server.base, deployment.keys.a)
    config = {"timeout_seconds": 60, "network_disabled": True, "memory_mb": 256}
    code = "import os, sys\nprint(os.environ['WHO'], sys.argv[1:], sys.stdin.read()[::-1])"
    io_run = peer.execute_sync(
        {"main.py": code},
        stdin="abc",
        env_vars=["WHO=me"],
        script_args=["-v", "two words"],
        config={**config, "disk_mb": 64, "cpu_shares": 1024},
    )
    assert io_run["stdout"] == "me ['-v', 'two words'] cba\n", io_run
    pre = peer.execute_sync(
        {"main.py": "print(open('made.txt').read().strip())"},
        pre_commands=["echo made > made.txt"],
    )
    assert pre["stdout"] == "made\n", pre
    hog = peer.execute_sync({"main.py": HOG}, config={"memory_mb": 64})
    assert (hog["status"], hog["exit_code"]) == ("completed", 137), hog
    assert "memory" in hog["error"]
    fill = peer.execute_sync({"main.py": FILL}, config={"disk_mb": 8})
    assert (fill["exit_code"], fill["stdout"]) == (3, "ENOSPC\n"), fill
    slow = peer.execute_sync(
        {"main.py": "import time; time.sleep(60)"}, config={"timeout_seconds": 1}
    )
    assert slow["status"] == "failed", slow
    assert "timeout" in slow["error"]
    quarter = peer.execute_sync({"main.py": CPU_RATIO}, config={"cpu_shares": 256})
    assert float(quarter["stdout"]) <= 0.4, quarter
    spec = record(deployment, deployment.keys.a, quarter["execution_id"])["spec"]
    assert spec["limits"]["cpus"] == 0.25
    six = peer.execute_sync({"main.py": "import six; print(six.PY3)"}, requirements_txt="six")
    assert six["stdout"] == "True\n", six
    image = peer.post_exec(
        "sync", {"main.py": "print(1)"}, {"entrypoint": "main.py", "docker_image": "node:20"}
    )
    assert "docker_image" in error_of(image, 400)


def test_network_needs_the_tenants_right(deployment: Deployment) -> None:
    denied = PeerWire(deployment.server.base, deployment.keys.a).post_exec(
        "sync",
        {"main.py": ONLINE},
        {"entrypoint": "main.py", "config": {"network_disabled": False}},
    )
    assert "network" in error_of(denied, 403)
    peer = PeerWire(deployment.server.base, deployment.net)
    assert peer.execute_sync({"main.py": ONLINE})["stdout"].startswith("offline")
    online = peer.execute_sync({"main.py": ONLINE}, config={"network_disabled": False})
    assert online["stdout"] == "reached\n", online


def test_async_get_and_delete_kill_the_run(deployment: Deployment) -> None:
    peer = PeerWire(deployment.server.base, deployment.keys.a)
    marker = f"spin_{secrets.token_hex(6)}"
    files = {f"{marker}.py": "print('spinning', flush=True)\nwhile True:\n    pass\n"}
    response = peer.post_exec("async", files, {"entrypoint": f"{marker}.py"})
    assert response.status_code == 202, response.text
    execution_id = response.json()["execution_id"]
    wait_until(lambda: processes_with(marker), 30, "the loop to start")
    # A live run shows its output so far.
    wait_until(lambda: peer.get(execution_id).json()["stdout"], 30, "the loop's first line")
    running = parsed(peer.get(execution_id).json())
    assert (running["status"], running["stdout"]) == ("running", "spinning\n"), running
    assert running["started_at"].endswith("Z")
    killed = peer.delete(execution_id)
    assert (killed.status_code, killed.json()) == (200, {"status": "killed"})
    final = parsed(peer.get(execution_id).json())
    assert final["status"] == "killed", final
    assert final["stdout"] == "spinning\n"
    wait_until(lambda: not processes_with(marker), 5, "the loop's process to be gone")
    again = peer.delete(execution_id)
    assert (again.status_code, again.json()) == (200, {"status": "killed"})
    done = peer.execute_async({"main.py": "print('later')"})
    wait_until(lambda: peer.get(done).json()["status"] == "completed", 60, "the run to end")
    assert peer.get(done).json()["stdout"] == "later\n"
    assert peer.delete(done).json() == {"status": "completed"}


def test_another_tenant_sees_nothing(deployment: Deployment) -> None:
    owner = PeerWire(deployment.server.base, deployment.keys.a)
    other = PeerWire(deployment.server.base, deployment.keys.b)
    execution_id = owner.execute_async({"main.py": "import time; time.sleep(120)"})
    assert "not found" in error_of(other.get(execution_id), 404)
    assert "not found" in error_of(other.delete(execution_id), 404)
    assert owner.get(execution_id).json()["status"] in ("pending", "running")
    assert owner.delete(execution_id).json() == {"status": "killed"}


def test_bad_requests_are_answered_in_python_executors_shape(deployment: Deployment) -> None:
    base = deployment.server.base
    peer = PeerWire(base, deployment.keys.a)
    main = {"main.py": "print(1)"}
    assert "not among" in error_of(peer.post_exec("sync", main, {"entrypoint": "nope.py"}), 400)
    assert "entrypoint" in error_of(peer.post_exec("sync", main, {}), 400)
    unknown = peer.post_exec("sync", main, {"entrypoint": "main.py", "gpu": True})
    assert "gpu" in error_of(unknown, 400)
    bad_config = peer.post_exec("async", main, {"entrypoint": "main.py", "config": {"x": 1}})
    assert "'x'" in error_of(bad_config, 400)
    negative = peer.post_exec("sync", main, {"entrypoint": "main.py", "config": {"memory_mb": -1}})
    assert "memory_mb" in error_of(negative, 400)
    requirement = peer.post_exec(
        "sync", main, {"entrypoint": "main.py", "requirements_txt": "-e ."}
    )
    assert "requirement" in error_of(requirement, 400)
    no_tar = peer.session.post(f"{base}/api/v1/exec/sync", files={"metadata": (None, "{}")})
    assert "tar" in error_of(no_tar, 400)
    not_json = peer.session.post(
        f"{base}/api/v1/exec/sync",
        files={"tar": ("code.tar", tar_of(main)), "metadata": (None, "{nope")},
    )
    assert "JSON" in error_of(not_json, 400)
    as_json = peer.session.post(f"{base}/api/v1/exec/sync", json={"entrypoint": "main.py"})
    assert "multipart" in error_of(as_json, 400)
    assert "not found" in error_of(peer.get("exe_550e8400-e29b-41d4-a716-446655440000"), 404)
    assert "not found" in error_of(peer.delete("job_0123456789abcdef01234567"), 404)
    anonymous = PeerWire(base, None).post_exec("sync", main, {"entrypoint": "main.py"})
    assert anonymous.status_code == 401
    with pytest.raises(requests.HTTPError):
        anonymous.raise_for_status()


def test_the_keys_job_quota_holds(deployment: Deployment) -> None:
    peer = PeerWire(deployment.server.base, deployment.one_job)
    first = peer.execute_async({"main.py": "import time; time.sleep(120)"})
    refused = peer.post_exec("async", {"main.py": "print(1)"}, {"entrypoint": "main.py"})
    assert "cap" in error_of(refused, 429)
    assert peer.delete(first).json() == {"status": "killed"}
    wait_until(
        lambda: peer.post_exec("sync", {"main.py": "print(1)"}, {"entrypoint": "main.py"}).ok,
        30,
        "the quota to be given back",
    )


def test_eval_route(deployment: Deployment) -> None:
    peer = PeerWire(deployment.server.base, deployment.keys.a)
    summed = peer.eval({"code": "x = 5\ny = 10\nx + y", "eval_last_expr": True})
    assert summed.status_code == 200, summed.text
    assert (summed.json()["result"], summed.json()["stdout"]) == ("15", "")
    plain = peer.eval({"code": "print('hello')"}).json()
    assert (plain["stdout"], plain.get("result")) == ("hello\n", None)
    files = {
        "files": [
            {"name": "calc.py", "content": "import sys\nprint(sys.stdin.read())\n6 * 7"},
        ],
        "stdin": "in",
        "eval_last_expr": True,
        "config": {"timeout_seconds": 30},
        "requirements_txt": "-",
    }
    answer = peer.eval(files).json()
    assert (answer["stdout"], answer["result"]) == ("in\n", "42"), answer
    failing = peer.eval({"code": "a = 1\nprint(undefined)"}).json()
    assert (failing["exit_code"], failing["error_type"], failing["error_line"]) == (
        1,
        "NameError",
        2,
    ), failing
    syntax = peer.eval({"code": "x = (", "eval_last_expr": True}).json()
    assert (syntax["error_type"], syntax["error_line"]) == ("SyntaxError", 1), syntax
    assert "code" in error_of(peer.eval({}), 400)
    assert "python_version" in error_of(peer.eval({"code": "1", "python_version": "2.7"}), 400)
    assert "unknown" in error_of(peer.eval({"code": "1", "language": "js"}), 400)
    health = peer.session.get(f"{deployment.server.base}/health", timeout=30)
    assert (health.status_code, health.json()) == (200, {"status": "ok"})


# -- our compat client, on the server ---------------------------------------------------------


def test_compat_client_on_a_remote_client(deployment: Deployment) -> None:
    remote = execbox.Client(deployment.server.base, api_key=deployment.keys.a)
    with remote, PythonExecutorClient("http://pyexec.cluster:9999/", client=remote) as pe:
        result = pe.execute_sync(files={"main.py": "print('remote')"}, memory_mb=128)
        assert (result.status, result.stdout) == (ExecutionStatus.COMPLETED, "remote\n")
        assert (
            record(deployment, deployment.keys.a, result.execution_id)["spec"]["limits"]["memory"]
            == 128 * MIB
        )
        exec_id = pe.execute_async(files={"main.py": "import time; time.sleep(120)"})
        pe.kill(exec_id)
        assert pe.get_execution(exec_id).status is ExecutionStatus.KILLED
        other = PeerWire(deployment.server.base, deployment.keys.b).execute_async(
            {"main.py": "print(1)"}
        )
        with pytest.raises(execbox.JobNotFound):
            pe.get_execution(other)


def test_compat_client_follows_execbox_url(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXECBOX_URL", deployment.server.base)
    monkeypatch.setenv("EXECBOX_API_KEY", deployment.keys.b)
    with PythonExecutorClient("http://pyexec.cluster:9999/") as pe:
        started = time.monotonic()
        result = pe.execute_sync(files={"main.py": "print('through the server')"})
        assert result.stdout == "through the server\n"
        assert time.monotonic() - started < 60
    assert record(deployment, deployment.keys.b, result.execution_id)["status"] == "succeeded"
