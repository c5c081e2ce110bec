"""python-executor's wait_for_completion examples: wait for a run, and give up after max_wait.

The documentation's second example waits on the first run (already done by then); here it
waits on a run that sleeps for a minute, so that the TimeoutError branch is the one taken."""

import sys

from execbox.compat.python_executor import PythonExecutorClient

client = PythonExecutorClient("http://pyexec.cluster:9999/")
exec_id = client.execute_async(files={"main.py": "import time; time.sleep(5); print('done')"})
result = client.wait_for_completion(exec_id, poll_interval=1.0)
print(result.stdout, end="")
if result.stdout != "done\n":
    sys.exit(f"unexpected result: {result}")

# With timeout:
exec_id = client.execute_async(files={"main.py": "import time; time.sleep(60)"})
try:
    result = client.wait_for_completion(exec_id, max_wait=10.0)
    sys.exit(f"a run of 60 s completed within 10 s: {result}")
except TimeoutError:
    client.kill(exec_id)
print(client.get_execution(exec_id).status)
if str(client.get_execution(exec_id).status) != "killed":
    sys.exit("the run was not killed")
