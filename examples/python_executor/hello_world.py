"""python-executor's first examples (module, class, constructor, execute_sync): only the import
differs from python-executor's own documentation."""

import sys

from execbox.compat.python_executor import PythonExecutorClient

client = PythonExecutorClient("http://pyexec.cluster:9999/")
result = client.execute_sync(files={"main.py": "print('Hello, World!')"}, entrypoint="main.py")
print(result.stdout, end="")
print(result.exit_code)
if (result.stdout, result.exit_code) != ("Hello, World!\n", 0):
    sys.exit(f"unexpected result: {result}")

result = client.execute_sync(files={"main.py": "print('Hello!')"}, entrypoint="main.py")
if result.exit_code != 0 or result.stdout != "Hello!\n":
    sys.exit(f"unexpected result: {result}")

# Both constructors of the documentation; the URL names the python-executor deployment the
# code was written for, and execbox runs the code itself (or on EXECBOX_URL's server).
client = PythonExecutorClient("http://localhost:8080", timeout=60)
result = client.execute_sync(files={"main.py": "print('Hello, World!')"}, entrypoint="main.py")
if (result.exit_code, result.stdout, str(result.status)) != (0, "Hello, World!\n", "completed"):
    sys.exit(f"unexpected result: {result}")
print(result.status)
