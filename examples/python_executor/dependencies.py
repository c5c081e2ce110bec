"""python-executor's "execution with dependencies" example: numpy from requirements_txt.

execbox installs requirements from wheels in a trusted step on the host, so they would work with
the network off too; ``network_disabled=False`` is kept as the documentation has it."""

import sys

from execbox.compat.python_executor import PythonExecutorClient

client = PythonExecutorClient("http://pyexec.cluster:9999/")
result = client.execute_sync(
    files={"main.py": "import numpy; print(numpy.__version__)"},
    requirements_txt="numpy",
    network_disabled=False,
)
print(result.status, result.stdout, end="")
version = (result.stdout or "").strip()
if result.exit_code != 0 or not version[:1].isdigit():
    sys.exit(f"unexpected result: {result}")
