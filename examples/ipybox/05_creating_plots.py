"""ipybox's examples/05_creating_plots.py on execbox: only the import differs, the image is
saved in a temporary directory instead of the working directory, and it is checked."""
# ruff: noqa: SIM117 - ipybox's example code, kept as it wrote it

import asyncio
import tempfile
from pathlib import Path

from PIL import Image

from execbox.compat.ipybox import ExecutionClient, ExecutionContainer


async def main():
    with tempfile.TemporaryDirectory() as saved:  # execbox: not in the working directory
        sine_png = str(Path(saved) / "sine.png")
        # --8<-- [start:usage]
        async with ExecutionContainer(tag="ghcr.io/gradion-ai/ipybox:0.6.7") as container:
            async with ExecutionClient(port=container.executor_port) as client:
                execution = await client.submit("""
                    !pip install matplotlib

                    import matplotlib.pyplot as plt
                    import numpy as np

                    x = np.linspace(0, 10, 100)
                    plt.figure(figsize=(8, 6))
                    plt.plot(x, np.sin(x))
                    plt.title('Sine Wave')
                    plt.show()

                    print("Plot generation complete!")
                    """)  # (1)!

                async for chunk in execution.stream():  # (2)!
                    print(chunk, end="", flush=True)

                result = await execution.result()
                result.images[0].save(sine_png)  # (3)!
        # --8<-- [end:usage]

        # execbox: the checks: one landscape PNG on disk, and the print in the text
        with Image.open(sine_png) as image:
            width, height = image.size
            if image.format != "PNG" or len(result.images) != 1 or not width > height > 100:
                raise SystemExit(f"unexpected plot: {image.format} {image.size}")
        if not (result.text or "").endswith("Plot generation complete!"):
            raise SystemExit(f"unexpected output: {result.text!r}")


if __name__ == "__main__":
    asyncio.run(main())
