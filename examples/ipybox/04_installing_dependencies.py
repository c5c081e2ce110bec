"""ipybox's examples/04_installing_dependencies.py on execbox: only the import differs (and the
check). ``!pip install`` needs the network, which ExecutionContainer turns on, as ipybox does."""
# ruff: noqa: SIM117 - ipybox's example code, kept as it wrote it

import asyncio
import re

from execbox.compat.ipybox import ExecutionClient, ExecutionContainer


async def main():
    # --8<-- [start:usage]
    async with ExecutionContainer(tag="ghcr.io/gradion-ai/ipybox:0.6.7") as container:
        async with ExecutionClient(port=container.executor_port) as client:
            execution = await client.submit("!pip install einops")  # (1)!
            async for chunk in execution.stream():  # (2)!
                print(chunk, end="", flush=True)

            result = await client.execute("""
                import einops
                print(einops.__version__)
            """)  # (3)!
            print(f"Output: {result.text}")  # (4)!
            if not re.fullmatch(r"\d+\.\d+(\.\d+)?", result.text or ""):  # execbox: the check
                raise SystemExit(f"einops was not installed: {result.text!r}")
    # --8<-- [end:usage]


if __name__ == "__main__":
    asyncio.run(main())
