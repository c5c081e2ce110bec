"""ipybox's examples/06_bind_mounts.py on execbox: only the import differs, and the paths are
this directory's (ipybox's name ``examples/...`` from its repository root), so that it runs from
anywhere; its output directory is removed once checked."""
# ruff: noqa: SIM117, UP015 - ipybox's example code, kept as it wrote it

import asyncio
import shutil
from pathlib import Path

import aiofiles
import aiofiles.os

from execbox.compat.ipybox import ExecutionClient, ExecutionContainer

HERE = Path(__file__).resolve().parent


async def main():
    # --8<-- [start:usage]
    await aiofiles.os.makedirs(HERE / "output", exist_ok=True)

    binds = {  # (1)!
        str(HERE / "data"): "data",  # (2)!
        str(HERE / "output"): "output",  # (3)!
    }

    async with ExecutionContainer(tag="ghcr.io/gradion-ai/ipybox:0.6.7", binds=binds) as container:
        async with ExecutionClient(port=container.executor_port) as client:
            await client.execute("""
                with open('data/input.txt') as f:
                    data = f.read()

                processed = data.upper()

                with open('output/result.txt', 'w') as f:
                    f.write(processed)
            """)  # (4)!

    async with aiofiles.open(HERE / "output" / "result.txt", "r") as f:  # (5)!
        result = await f.read()
        assert result == "HELLO WORLD"
    # --8<-- [end:usage]
    if result != "HELLO WORLD":  # execbox: the check, even under python -O
        raise SystemExit(f"unexpected result on the host: {result!r}")
    shutil.rmtree(HERE / "output")


if __name__ == "__main__":
    asyncio.run(main())
