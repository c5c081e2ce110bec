"""python-executor's execute_async example: submit, print the id, later wait for the result.

The documentation's program sleeps 60 s; here it sleeps 3 s, so that the example is quick."""

import sys

from execbox.compat.python_executor import PythonExecutorClient

client = PythonExecutorClient("http://pyexec.cluster:9999/")
exec_id = client.execute_async(files={"main.py": "import time; time.sleep(3); print('done')"})
print(f"Submitted: {exec_id}")

# Later, check status or wait for completion
result = client.wait_for_completion(exec_id)
print(result.status, result.stdout, end="")
if (str(result.status), result.stdout) != ("completed", "done\n"):
    sys.exit(f"unexpected result: {result}")
