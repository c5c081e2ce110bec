"""python-executor's kill example: stop a run that would sleep for an hour."""

import sys

from execbox.compat.python_executor import PythonExecutorClient

client = PythonExecutorClient("http://pyexec.cluster:9999/")
exec_id = client.execute_async(files={"main.py": "import time; time.sleep(3600)"})
client.kill(exec_id)

result = client.get_execution(exec_id)
print(result.status)
if str(result.status) != "killed":
    sys.exit(f"unexpected result: {result}")
