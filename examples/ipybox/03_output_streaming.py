"""ipybox's examples/03_output_streaming.py on execbox: only the import differs (and checks)."""
# ruff: noqa: SIM117 - ipybox's example code, kept as it wrote it

import asyncio
import time

from execbox.compat.ipybox import ExecutionClient, ExecutionContainer


async def main():
    arrivals = []  # execbox: when each chunk arrived, for the check below
    # --8<-- [start:usage]
    async with ExecutionContainer(tag="ghcr.io/gradion-ai/ipybox:0.6.7") as container:
        async with ExecutionClient(port=container.executor_port) as client:
            code = """
            import time
            for i in range(5):
                print(f"Processing step {i}")
                time.sleep(1)
            """  # (1)!

            execution = await client.submit(code)  # (2)!
            print("Streaming output:")
            async for chunk in execution.stream():  # (3)!
                print(f"Received output: {chunk.strip()}")  # (4)!
                arrivals.append(time.monotonic())

            result = await execution.result()  # (5)!
            print("\nAggregated output:")
            print(result.text)  # (6)!
    # --8<-- [end:usage]

    # execbox: the checks: every step, each as it was printed (about a second apart)
    expected = "\n".join(f"Processing step {i}" for i in range(5))
    if result.text != expected:
        raise SystemExit(f"unexpected output: {result.text!r}")
    if len(arrivals) < 5 or arrivals[-1] - arrivals[0] < 3:
        raise SystemExit(f"output was not streamed: {len(arrivals)} chunks")


if __name__ == "__main__":
    asyncio.run(main())
