"""Backend.AI's older "Batch mode" example (003): ``session.Kernel.get_or_create('python')``.

As ``batch.py``, through the older ``Kernel`` API and the ``'continued'`` spelling. The seed
does not show ``mycode.py`` and ``setup.py``: this script writes small ones in a temporary
directory first; the default build (``*``) runs ``python setup.py develop``, which generates
the module ``mycode.py`` imports.
"""

import atexit
import io
import os
import shutil
import sys
import tempfile

from execbox.compat.backendai import Session  # was: from ai.backend.client import Session

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

# -- Backend.AI's example; only the import differs --
with Session() as session:
    kern = session.Kernel.get_or_create("python")
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
            mode = "continued"
            code = ""
    kern.destroy()
# -- end of the example --

expected = "setup.py develop wrote version.py\nmycode 1.0 called with ['arg1', 'arg2']\n"
if "".join(transcript.text) != expected or result["exitCode"] != 0:
    sys.exit(f"unexpected result: {transcript.text!r}, {result!r}")
