"""Backend.AI's older "Query mode" example (003): ``session.Kernel.get_or_create('lua')``.

Lua runs as in Backend.AI's Lua image: each query is a ``lua`` process on the saved snippet
(Lua 5.4, from the ``lupa`` wheel execbox installs in the box). The loop continues with the
older spelling ``'continued'``. Only the import differs from the documentation.
"""

import io
import sys

from execbox.compat.backendai import Session  # was: from ai.backend.client import Session


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


sys.stdout = transcript = Transcript(sys.stdout)

# -- Backend.AI's example; only the import differs --
with Session() as session:
    kern = session.Kernel.get_or_create("lua")
    code = 'print("hello world")'
    mode = "query"
    run_id = None
    while True:
        result = kern.execute(run_id, code, mode=mode)
        run_id = result["runId"]  # keeps track of this particular run loop
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

if "".join(transcript.text) != "hello world\n" or result["exitCode"] != 0:
    sys.exit(f"unexpected result: {transcript.text!r}, {result!r}")
