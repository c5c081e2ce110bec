"""Backend.AI's "Query mode" example (002): run a snippet, continue until it has finished.

Only the import differs from Backend.AI's documentation; the lines around the seed's code
define ``handle_media`` and check what was printed, so that a wrong result fails the script.
"""

import io
import sys

from execbox.compat.backendai.session import Session  # was: from ai.backend.client.session


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
    media_type = record[0]  # MIME-Type string
    media_data = record[1]  # content
    print(f"[{media_type}: {len(media_data)} characters]")


sys.stdout = transcript = Transcript(sys.stdout)

# -- Backend.AI's example; only the import differs --
with Session() as session:
    kern = session.ComputeSession.get_or_create("cr.backend.ai/multiarch/python:3.9-ubuntu20.04")
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
            mode = "continue"
            code = ""
    kern.destroy()
# -- end of the example --

if "".join(transcript.text) != "hello world\n" or result["exitCode"] != 0:
    sys.exit(f"unexpected result: {transcript.text!r}, {result!r}")
