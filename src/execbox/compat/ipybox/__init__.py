"""ipybox's API on execbox: change ``from ipybox import ...`` to this module, keep the code.

    from execbox.compat.ipybox import ExecutionClient, ExecutionContainer

    async with ExecutionContainer(tag="ghcr.io/gradion-ai/ipybox:0.6.7") as container:
        async with ExecutionClient(port=container.executor_port) as client:
            result = await client.execute("print('Hello, world!')")
            print(result.text)

Each client's kernel is an execbox session in a box of its own (network on, as in ipybox);
the container holds what its kernels share: binds, env, limits. See ``container`` and
``client`` for what differs from ipybox and why.
"""

from .client import ConnectionError, Execution, ExecutionClient, ExecutionError, ExecutionResult
from .container import DEFAULT_TAG, ExecutionContainer

__all__ = [
    "DEFAULT_TAG",
    "ConnectionError",
    "Execution",
    "ExecutionClient",
    "ExecutionContainer",
    "ExecutionError",
    "ExecutionResult",
]
