"""python-executor's "execution from a directory" example: ``files=Path("./myproject/")``.

The example makes ``./myproject/`` in a temporary directory first, and runs from there."""

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

from execbox.compat.python_executor import PythonExecutorClient

workdir = tempfile.mkdtemp(prefix="execbox-example-")
atexit.register(shutil.rmtree, workdir, ignore_errors=True)
project = Path(workdir, "myproject")
(project / "lib").mkdir(parents=True)
(project / "main.py").write_text("from lib.words import words\nprint(' '.join(words()))\n")
(project / "lib" / "__init__.py").write_text("")
(project / "lib" / "words.py").write_text("def words():\n    return ['from', 'a', 'directory']\n")
os.chdir(workdir)

client = PythonExecutorClient("http://pyexec.cluster:9999/")
result = client.execute_sync(files=Path("./myproject/"))
print(result.stdout, end="")
if (result.exit_code, result.stdout) != (0, "from a directory\n"):
    sys.exit(f"unexpected result: {result}")
# A string path works the same way.
again = client.execute_sync(files="./myproject/")
if again.stdout != result.stdout:
    sys.exit(f"unexpected result: {again}")
