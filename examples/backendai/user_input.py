"""Backend.AI's "Handling user inputs" example (002): the query loop answering ``input()``.

The snippet in the code asks for a name (``input``) and a password (``getpass``); the loop's
if-block is the seed's. So that the example runs unattended, what a user would type comes
from a scripted stdin, and ``getpass`` reads it there instead of from the terminal.
"""

import getpass
import io
import sys

from execbox.compat.backendai.session import Session  # was: from ai.backend.client.session

# The answers a user would type, fed through stdin: the example needs no terminal.
sys.stdin = io.StringIO("Alice\nopen sesame\n")
getpass.getpass = lambda prompt="Password: ", stream=None: input(prompt)


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

with Session() as session:
    kern = session.ComputeSession.get_or_create("cr.backend.ai/multiarch/python:3.9-ubuntu20.04")
    code = (
        'name = input("What is your name? ")\n'
        "import getpass\n"
        "secret = getpass.getpass()\n"
        'print(f"Hello {name}, your password has {len(secret)} characters")\n'
    )
    mode = "query"
    run_id = None
    while True:
        result = kern.execute(run_id, code, mode=mode)
        run_id = result["runId"]
        for rec in result.get("console", []):
            if rec[0] == "stdout":
                print(rec[1], end="", file=sys.stdout)
            elif rec[0] == "stderr":
                print(rec[1], end="", file=sys.stderr)
            else:
                handle_media(rec)
        sys.stdout.flush()
        # -- the seed's if-block --
        if result["status"] == "finished":
            break
        elif result["status"] == "waiting-input":
            mode = "input"
            if result["options"].get("is_password", False):  # noqa: SIM108 - the seed's code
                code = getpass.getpass()
            else:
                code = input()
        else:
            mode = "continue"
            code = ""
        # -- end of the seed's if-block --
    kern.destroy()

if "Hello Alice, your password has 11 characters\n" not in "".join(transcript.text):
    sys.exit(f"unexpected result: {transcript.text!r}")
