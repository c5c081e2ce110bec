"""A body over the server's cap is answered 413 with its JSON, even while the client is still
sending it: the server reads and drops the rest before it answers and closes. Closing at once
made a real client's write fail (a reset), so the SDK saw ServerUnavailable instead of
PayloadTooLarge in some runs."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from server_support import ServerProcess, auth, open_key

CAP = 65536


@pytest.fixture(scope="module")
def capped_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    url = f"sqlite:///{tmp_path_factory.mktemp('capped') / 'execbox.db'}"
    key = open_key(url)
    argv = ("--pool-size", "0", "--session-pool-size", "0", "--max-body", str(CAP))
    with ServerProcess(url, *argv) as server:
        server.key = key
        yield server


def _refused(response: httpx.Response) -> None:
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "PayloadTooLarge"


@pytest.mark.parametrize("size", [CAP + 1, 1 << 20, 8 << 20])
def test_a_declared_body_over_the_cap_gets_its_413(capped_server: ServerProcess, size: int) -> None:
    """A body far larger than the socket buffers: the client is still writing when refused."""
    body = b"x" * size
    with httpx.Client(base_url=capped_server.base, headers=auth(capped_server.key)) as http:
        for _ in range(5):
            _refused(http.post("/v1/jobs", content=body, headers={"content-type": "text/plain"}))


def test_a_streamed_body_over_the_cap_gets_its_413(capped_server: ServerProcess) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(64):
            yield b"y" * 65536

    with httpx.Client(base_url=capped_server.base, headers=auth(capped_server.key)) as http:
        for _ in range(3):
            _refused(http.post("/v1/jobs", content=chunks()))


def test_the_sdk_sees_payload_too_large(capped_server: ServerProcess) -> None:
    import execbox

    with execbox.Client(capped_server.base, api_key=capped_server.key) as client:
        for _ in range(5):
            with pytest.raises(execbox.PayloadTooLarge):
                client.run({"main.py": "print(1)", "big.bin": b"x" * (2 << 20)})
        assert client.run({"main.py": "print(1)"}).stdout == "1\n"
