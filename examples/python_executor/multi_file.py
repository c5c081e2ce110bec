"""python-executor's multi-file example: a helper module imported by the entrypoint."""

import sys

from execbox.compat.python_executor import PythonExecutorClient

client = PythonExecutorClient("http://pyexec.cluster:9999/")
result = client.execute_sync(
    files={
        "main.py": "from helper import greet; greet()",
        "helper.py": "def greet(): print('Hello from helper!')",
    },
    entrypoint="main.py",
)
print(result.stdout, end="")
if (result.exit_code, result.stdout) != (0, "Hello from helper!\n"):
    sys.exit(f"unexpected result: {result}")
