"""The kernels this server offers, as Jupyter kernelspecs, and what ``kernel_info`` says.

``python3`` is execbox's own kernel (IPython on the box interpreter with the default package
set); any other kernelspec installed on the host may be named too, as in the native API.
Names clients commonly send for Python (ipybox sends ``python``) mean ``python3``. Specs show
no host paths: ``argv`` is empty, since the server, not the client, launches kernels.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio

from ... import __version__
from ...boxes.local.host import python_version
from ...errors import SessionNotFound
from ...kernel.runtime import DEFAULT_KERNEL
from ..services import Services
from .messages import PROTOCOL_VERSION

__all__ = ["NoSuchKernel", "kernel_info", "kernelspecs", "resolve_kernel_name"]

log = logging.getLogger("execbox.server.jupyter")

ALIASES = {"": DEFAULT_KERNEL, "python": DEFAULT_KERNEL, DEFAULT_KERNEL: DEFAULT_KERNEL}


class NoSuchKernel(SessionNotFound):
    """A kernel name no kernelspec here has: 404, as Jupyter Server answers."""


def _installed() -> dict[str, dict[str, Any]]:
    """Host kernelspecs other than python3 (ours takes that name), as public specs."""
    try:
        from jupyter_client.kernelspec import KernelSpecManager
    except ImportError:  # pragma: no cover - jupyter_client is a dependency
        return {}
    manager = KernelSpecManager()
    found: dict[str, dict[str, Any]] = {}
    for name in sorted(manager.find_kernel_specs()):
        if name == DEFAULT_KERNEL:
            continue
        try:
            spec = manager.get_kernel_spec(name)
        except Exception as exc:  # a broken kernel.json on the host is not the client's problem
            log.info("kernelspec %s is unusable: %s", name, exc)
            continue
        found[name] = _spec(name, spec.display_name or name, spec.language or "")
    return found


def _spec(name: str, display_name: str, language: str) -> dict[str, Any]:
    return {
        "name": name,
        "spec": {
            "argv": [],
            "env": {},
            "display_name": display_name,
            "language": language,
            "interrupt_mode": "signal",
            "metadata": {"execbox": {"isolated": True}},
        },
        "resources": {},
    }


async def kernelspecs() -> dict[str, Any]:
    """``GET /api/kernelspecs``: the default first, then the host's other kernelspecs."""
    specs = {DEFAULT_KERNEL: _spec(DEFAULT_KERNEL, "Python 3 (execbox)", "python")}
    specs.update(await anyio.to_thread.run_sync(_installed))
    return {"default": DEFAULT_KERNEL, "kernelspecs": specs}


async def resolve_kernel_name(name: Any) -> str:
    """The kernelspec a client's ``name`` means; ``NoSuchKernel`` (404) when there is none."""
    if name is None or name in ALIASES:
        return ALIASES.get(name or "", DEFAULT_KERNEL)
    specs = (await kernelspecs())["kernelspecs"]
    if isinstance(name, str) and name in specs:
        return name
    shown = name if isinstance(name, str) else type(name).__name__
    raise NoSuchKernel(f"no kernel named {shown[:128]!r}; known: {', '.join(specs)}")


async def kernel_info(services: Services, kernel: str) -> dict[str, Any]:
    """The content of a ``kernel_info_reply`` for a kernel of kernelspec ``kernel``."""
    if kernel == DEFAULT_KERNEL:
        layout = getattr(services.engine.backend, "layout", None)
        python = getattr(layout, "python", None) or "python3"
        version = await anyio.to_thread.run_sync(python_version, python)
        language_info: dict[str, Any] = {
            "name": "python",
            "version": version,
            "mimetype": "text/x-python",
            "file_extension": ".py",
            "pygments_lexer": "ipython3",
            "codemirror_mode": {"name": "ipython", "version": 3},
            "nbconvert_exporter": "python",
        }
        banner = f"Python {version} (IPython kernel) in an isolated execbox box"
    else:
        spec = (await kernelspecs())["kernelspecs"].get(kernel, {}).get("spec", {})
        language_info = {"name": spec.get("language") or kernel}
        banner = f"{spec.get('display_name') or kernel} in an isolated execbox box"
    return {
        "status": "ok",
        "protocol_version": PROTOCOL_VERSION,
        "implementation": "execbox",
        "implementation_version": __version__,
        "language_info": language_info,
        "banner": banner,
        "debugger": False,
        "help_links": [],
    }
