"""Backend.AI's "Asynchronous-mode Execution" example (002): ``stream_execute``.

The stream yields WebSocket messages; their ``type`` compares equal to
``aiohttp.WSMsgType.TEXT`` and their ``data`` is a result's JSON. Only the import differs from
the documentation; around it, ``handle_media`` and a check of what was printed.
"""

import asyncio
import getpass
import io
import json
import sys

import aiohttp

from execbox.compat.backendai.session import AsyncSession  # was: from ai.backend.client.session


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
async def main():
    async with AsyncSession() as session:
        kern = await session.ComputeSession.get_or_create(
            "cr.backend.ai/multiarch/python:3.9-ubuntu20.04"
        )
        code = 'print("hello world")'
        mode = "query"
        async with kern.stream_execute(code, mode=mode) as stream:
            # no need for explicit run_id since WebSocket connection represents it!
            async for result in stream:
                if result.type != aiohttp.WSMsgType.TEXT:
                    continue
                result = json.loads(result.data)
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
                elif result["status"] == "waiting-input":
                    mode = "input"
                    if result["options"].get("is_password", False):
                        code = getpass.getpass()
                    else:
                        code = input()  # noqa: ASYNC250 - the seed's code
                    await stream.send_text(code)
                else:
                    mode = "continue"
                    code = ""
        await kern.destroy()


loop = asyncio.new_event_loop()
try:
    loop.run_until_complete(main())
finally:
    loop.stop()
# -- end of the example --

if "".join(transcript.text) != "hello world\n":
    sys.exit(f"unexpected result: {transcript.text!r}")
