"""ipybox's examples/02_state_management.py on execbox: only the import differs (and checks)."""
# ruff: noqa: PT017 - ipybox's example code, kept as it wrote it

import asyncio

from execbox.compat.ipybox import ExecutionClient, ExecutionContainer, ExecutionError


async def main():
    # --8<-- [start:usage]
    async with ExecutionContainer(tag="ghcr.io/gradion-ai/ipybox:0.6.7") as container:
        async with ExecutionClient(port=container.executor_port) as client_1:  # (1)!
            result = await client_1.execute("x = 1")  # (2)!
            assert result.text is None
            result = await client_1.execute("print(x)")  # (3)!
            assert result.text == "1"

        async with ExecutionClient(port=container.executor_port) as client_2:  # (4)!
            try:
                await client_2.execute("print(x)")  # (5)!
            except ExecutionError as e:
                assert e.args[0] == "NameError: name 'x' is not defined"
            else:  # execbox: the check that the second client cannot see x
                raise SystemExit("client_2 saw client_1's x: clients are not isolated")


# --8<-- [end:usage]


if __name__ == "__main__":
    asyncio.run(main())
