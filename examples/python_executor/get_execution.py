"""python-executor's get_execution example: the status of a run that is still going.

The documentation reads a made-up id; here it is the id of a run started just before."""

import sys

from execbox.compat.python_executor import PythonExecutorClient

client = PythonExecutorClient("http://pyexec.cluster:9999/")
exec_id = client.execute_async(files={"main.py": "import time; time.sleep(5)"})
result = client.get_execution(exec_id)
print(result.status)
if str(result.status) not in ("pending", "running"):
    sys.exit(f"unexpected result: {result}")
final = client.wait_for_completion(exec_id, poll_interval=1.0, max_wait=30)
print(final.status)
if (str(final.status), final.exit_code) != ("completed", 0):
    sys.exit(f"unexpected result: {final}")
