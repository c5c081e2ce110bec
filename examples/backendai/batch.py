"""Backend.AI's "Batch mode" example (002): upload files, build with ``*``, then exec.

The seed does not show ``mycode.py`` and ``setup.py``: this script writes small ones in a
temporary directory first. With ``'build': '*'`` Backend.AI's runner (and execbox) runs
``python setup.py develop``; this ``setup.py`` generates the module that ``mycode.py`` imports,
so the exec only works if the build ran.
"""

import atexit
import io
import os
import shutil
import sys
import tempfile

from execbox.compat.backendai.session import Session  # was: from ai.backend.client.session

MYCODE = """\
import sys
from version import VERSION
print(f"mycode {VERSION} called with {sys.argv[1:]}")
"""
SETUP = """\
import sys
with open("version.py", "w") as module:
    module.write("VERSION = '1.0'\\n")
print("setup.py", *sys.argv[1:], "wrote version.py")
"""


class Transcript(io.TextIOBase):
    """Prints as before, and keeps everything printed for the check at the end."""

    def __init__(self, stream):
        self.stream, self.text = stream, []

    def write(self, text):
        self.text.append(text)
        return self.stream.write(text)

    def flush(self):
        self.stream.flush()


def handle_media(record):
    print(f"[{record[0]}: {len(record[1])} characters]")


workdir = tempfile.mkdtemp(prefix="backendai-batch-")
atexit.register(shutil.rmtree, workdir, ignore_errors=True)
os.chdir(workdir)
for name, text in (("mycode.py", MYCODE), ("setup.py", SETUP)):
    with open(name, "w") as file:
        file.write(text)
sys.stdout = transcript = Transcript(sys.stdout)
statuses = []

# -- Backend.AI's example; only the import differs --
with Session() as session:
    kern = session.ComputeSession.get_or_create("cr.backend.ai/multiarch/python:3.9-ubuntu20.04")
    kern.upload(["mycode.py", "setup.py"])
    code = ""
    mode = "batch"
    run_id = None
    opts = {
        "build": "*",  # calls "python setup.py install"
        "exec": "python mycode.py arg1 arg2",
    }
    while True:
        result = kern.execute(run_id, code, mode=mode, opts=opts)
        statuses.append((result["status"], result["exitCode"]))  # (kept for the check below)
        opts.clear()
        run_id = result["runId"]
        for rec in result.get("console", []):
            if rec[0] == "stdout":
                print(rec[1], end="", file=sys.stdout)
            elif rec[0] == "stderr":
                print(rec[1], end="", file=sys.stderr)
            else:
                handle_media(rec)
        sys.stdout.flush()
        if result["status"] == "finished":
            break
        else:
            mode = "continue"
            code = ""
    kern.destroy()
# -- end of the example --

expected = "setup.py develop wrote version.py\nmycode 1.0 called with ['arg1', 'arg2']\n"
ends = [s for s in statuses if s[0] != "continued"]
if "".join(transcript.text) != expected or ends != [("build-finished", 0), ("finished", 0)]:
    sys.exit(f"unexpected result: {transcript.text!r}, {statuses!r}")
