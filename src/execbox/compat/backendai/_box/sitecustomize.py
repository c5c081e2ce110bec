"""Backend.AI batch mode: ``input()`` and ``getpass()`` of a program ask the run loop.

On the ``PYTHONPATH`` of batch commands only. A request is a JSON line (prompt, password) on
one pipe; the answer a JSON line on the other; the kernel's helper turns each request into the
kernel's own input request, which the client sees as ``waiting-input``.
"""

from __future__ import annotations

import builtins
import getpass
import json
import os
import sys

_CHANNEL = os.environ.get("EXECBOX_BACKENDAI_INPUT", "")


def _ask(prompt: object = "", password: bool = False) -> str:
    send, receive = (int(fd) for fd in _CHANNEL.split(","))
    sys.stdout.flush()
    sys.stderr.flush()
    os.write(send, json.dumps({"prompt": str(prompt), "password": password}).encode() + b"\n")
    reply = b""
    while not reply.endswith(b"\n"):
        chunk = os.read(receive, 65536)
        if not chunk:
            raise EOFError("no answer: the run loop has gone")
        reply += chunk
    answer: str = json.loads(reply)
    return answer


def _getpass(prompt: str = "Password: ", stream: object = None) -> str:
    return _ask(prompt, password=True)


if _CHANNEL:
    builtins.input = _ask
    getpass.getpass = _getpass
