"""ipybox's examples/01_basic_usage.py on execbox: only the import differs (and the check)."""
# ruff: noqa: SIM117 - ipybox's example code, kept as it wrote it

import asyncio

# --8<-- [start:import]
from execbox.compat.ipybox import ExecutionClient, ExecutionContainer

# --8<-- [end:import]


async def main():
    # --8<-- [start:usage]
    async with ExecutionContainer(tag="ghcr.io/gradion-ai/ipybox:0.6.7") as container:  # (1)!
        async with ExecutionClient(port=container.executor_port) as client:  # (2)!
            result = await client.execute("print('Hello, world!')")  # (3)!
            print(f"Output: {result.text}")  # (4)!
            if result.text != "Hello, world!":  # execbox: the check
                raise SystemExit(f"unexpected output: {result.text!r}")


# --8<-- [end:usage]

if __name__ == "__main__":
    asyncio.run(main())
