"""A first program for execbox: it runs in an isolated box and streams its output back."""

import os
import platform
import time

print(f"Hello from a box: Python {platform.python_version()}, uid {os.getuid()}, pid {os.getpid()}")
for step in range(3):
    print(f"step {step}", flush=True)
    time.sleep(0.1)
print("files in the workspace:", sorted(os.listdir(".")))
