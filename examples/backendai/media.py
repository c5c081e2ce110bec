"""Backend.AI's "Handling multi-media outputs" example (002 and 003): ``handle_media``.

A figure comes back as an ``image/png`` record whose content is a data URI, an SVG as an
``image/svg+xml`` record whose content is the XML. This ``handle_media`` saves each to a file
in a temporary directory (removed at exit) and prints where; the script checks that both
arrived intact.
"""

import atexit
import base64
import shutil
import sys
import tempfile
from pathlib import Path

from execbox.compat.backendai.session import Session  # was: from ai.backend.client.session

OUT = Path(tempfile.mkdtemp(prefix="backendai-media-"))
atexit.register(shutil.rmtree, OUT, ignore_errors=True)
saved = []


def handle_media(record):
    media_type = record[0]  # MIME-Type string
    media_data = record[1]  # content
    # For (binary-format) images, the content is a dataURI-encoded string.
    # For SVG (scalable vector graphics) images, the content is an XML string.
    if media_type == "image/svg+xml":
        path = OUT / f"figure-{len(saved)}.svg"
        path.write_text(media_data)
    elif media_type.startswith("image/"):
        header, encoded = media_data.split(",", 1)
        assert header == f"data:{media_type};base64", header
        path = OUT / f"figure-{len(saved)}.{media_type.split('/')[1]}"
        path.write_bytes(base64.b64decode(encoded))
    else:
        print(f"[{media_type}: {len(media_data)} characters]")
        return
    saved.append(path)
    print(f"saved {media_type} to {path}")


code = """\
import matplotlib.pyplot as plt
plt.plot([1, 3, 2, 4])
plt.title("made in a box")
plt.show()
from IPython.display import SVG, display
display(SVG('<svg xmlns="http://www.w3.org/2000/svg" width="40" height="40">'
            '<circle cx="20" cy="20" r="15" fill="teal"/></svg>'))
"""

with Session() as session:
    kern = session.ComputeSession.get_or_create("cr.backend.ai/multiarch/python:3.9-ubuntu20.04")
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
        if result["status"] == "finished":
            break
        else:
            mode = "continue"
            code = ""
    kern.destroy()

kinds = sorted(path.suffix for path in saved)
png = next((path for path in saved if path.suffix == ".png"), None)
if kinds != [".png", ".svg"] or png is None or png.read_bytes()[:8] != b"\x89PNG\r\n\x1a\n":
    sys.exit(f"unexpected media: {saved!r}")
if "<circle" not in next(path for path in saved if path.suffix == ".svg").read_text():
    sys.exit("the SVG lost its content")
print("both figures arrived intact")
