"""Backend.AI's older "Handling user inputs" example (003), with ``'continued'``.

The query loop of ``legacy_query_lua.py`` on a Python kernel, with the seed's if-block
answering ``input()`` and ``getpass()``. So that the example runs unattended, what a user
would type comes from a scripted stdin, and ``getpass`` reads it there.
"""

import getpass
import io
import sys

from execbox.compat.backendai import Session  # was: from ai.backend.client import Session

# The answers a user would type, fed through stdin: the example needs no terminal.
sys.stdin = io.StringIO("Bob\nhunter2\n")
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
    kern = session.Kernel.get_or_create("python")
    code = (
        "import getpass\n"
        "user = input('user: ')\n"
        "password = getpass.getpass()\n"
        "print('logged in' if (user, password) == ('Bob', 'hunter2') else 'refused')\n"
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
            mode = "continued"
            code = ""
        # -- end of the seed's if-block --
    kern.destroy()

if "logged in\n" not in "".join(transcript.text):
    sys.exit(f"unexpected result: {transcript.text!r}")
