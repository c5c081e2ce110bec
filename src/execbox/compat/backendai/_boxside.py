"""The cells that carry ``_box``'s code into a kernel.

``setup_cell`` (once per compute session) writes the helper, the ``lua`` command and the input
hook under ``/tmp/.backendai`` in the box and links ``python`` there (Backend.AI's images have
one; a box has ``python3``); ``command_cell`` runs one shell command through the helper. The
helper runs in a namespace of its own, so nothing lands in the user's.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

__all__ = ["EXIT_MIME", "command_cell", "setup_cell"]

EXIT_MIME = "application/x.execbox.backendai+json"
HELPER = "/tmp/.backendai/helper.py"
_SOURCES = files(__package__) / "_box"


def _source(name: str) -> str:
    return (_SOURCES / name).read_text()


def _run_helper(source: str, args: dict[str, Any]) -> str:
    return f"exec(compile({source}, {HELPER!r}, 'exec'), {{'ARGS': {args!r}}})"


def setup_cell() -> str:
    helper = _source("helper.py")
    shims = {
        HELPER: helper,
        "/tmp/.backendai/bin/lua": "#!python\n" + _source("lua.py"),
        "/tmp/.backendai/hook/sitecustomize.py": _source("sitecustomize.py"),
    }
    return _run_helper(repr(helper), {"setup": shims})


def command_cell(
    command: str,
    *,
    script: tuple[str, str] | None = None,
    build_of: str | None = None,
    needs: str | None = None,
) -> str:
    """A cell running ``command``; ``script`` is a (name, text) file written first and removed
    after; ``build_of`` records a failed build for the exec of run ``needs`` to skip with 127,
    as Backend.AI's runner does."""
    args = {"command": command, "script": script, "build_of": build_of, "needs": needs}
    return _run_helper(f"open({HELPER!r}).read()", args)
