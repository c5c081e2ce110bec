"""python-executor's client, on execbox: change the import, keep the code.

    from execbox.compat.python_executor import PythonExecutorClient

    client = PythonExecutorClient("http://pyexec.cluster:9999/")
    result = client.execute_sync(files={"main.py": "print('Hello, World!')"})
    print(result.status, result.exit_code, result.stdout)

``PythonExecutorClient`` has python-executor's ``execute_sync``, ``execute_async``,
``get_execution``, ``kill``, ``wait_for_completion`` and ``eval``, taking files as a dict, a
``Path`` or a string path, or ``tar_data``, with ``Metadata`` or keyword fields; its results
are ``ExecutionResult`` objects with the statuses of ``ExecutionStatus``. Every metadata field
is enforced by the box (``mapping`` has the table); one that cannot be honoured (another Docker
image or Python version) raises ``UnsupportedOption``.

Where the runs go. ``base_url`` names the python-executor deployment the code was written for;
it is kept, never contacted. Runs go to ``execbox.Client()``: embedded, in this process,
unless ``EXECBOX_URL`` and ``EXECBOX_API_KEY`` name an execbox server. We chose this over
probing ``base_url``: a probe would cost a network round trip at every start (and a wait where
the old host no longer resolves), could not tell an execbox server from a proxy in front of
one without a key, and would make where code runs depend on what answers at a URL. To run on
a server chosen in code, pass ``client=execbox.Client(url, api_key=...)``. An execbox server
also speaks python-executor's own HTTP API (``/api/v1/exec/sync`` ...), so python-executor's
own client works against it unchanged, with the key on its session's headers.

Errors: where python-executor's client raises ``ValueError`` or ``requests.HTTPError``, this
raises the execbox error of the same cause: ``execbox.InvalidSpec`` (a ``ValueError``; 400 on
the wire), ``execbox.JobNotFound`` (a ``LookupError``; 404), ``PermissionDenied`` (403),
``QuotaExceeded`` (429). Waiting past ``timeout`` or ``max_wait`` raises ``TimeoutError``
(``execbox.ExecboxTimeout``).
"""

from .client import PythonExecutorClient
from .mapping import UnsupportedOption
from .types import ExecutionConfig, ExecutionResult, ExecutionStatus, Metadata

__all__ = [
    "ExecutionConfig",
    "ExecutionResult",
    "ExecutionStatus",
    "Metadata",
    "PythonExecutorClient",
    "UnsupportedOption",
]
