"""Which Backend.AI images execbox can stand in for, and how each language runs there.

A Python image (``python``, ``python:3.9-ubuntu20.04``, ``cr.backend.ai/multiarch/python:3.9``,
``lablup/python:3.11``) is an IPython kernel in a box, running the host's Python whatever the
tag says. A Lua image (``lua``, ``lablup/lua:5.3-alpine``) is the same box with Lua 5.4 from
the ``lupa`` wheel, run as Backend.AI's Lua runner does: every query is a fresh ``lua`` process
on a file. Any other image is refused with the list of what is offered.

The default build and exec (``"*"``) follow Backend.AI's kernel runner: ``make`` when there is
a ``Makefile``; for Python else ``pip install -r requirements.txt`` when present, then
``python setup.py develop`` when there is a ``setup.py``; exec runs ``main.py`` (``main.lua``),
or reports 127 when it is missing.
"""

from __future__ import annotations

from dataclasses import dataclass

from .exceptions import BackendAPIError

__all__ = ["LUA", "PYTHON", "Language", "language_of"]

PYTHON_BUILD = """\
if [ -f Makefile ]; then
  make
else
  if [ -f requirements.txt ]; then pip install -r requirements.txt || exit $?; fi
  if [ -f setup.py ]; then python setup.py develop; fi
fi"""
PYTHON_EXEC = """\
if [ -f main.py ]; then
  python main.py
else
  echo 'cannot find the main script ("main.py").' >&2; exit 127
fi"""
LUA_BUILD = "if [ -f Makefile ]; then make; fi"
LUA_EXEC = """\
if [ -f main.lua ]; then
  lua main.lua
else
  echo 'cannot find executable ("main.lua").' >&2; exit 127
fi"""


@dataclass(frozen=True)
class Language:
    name: str
    default_build: str
    default_exec: str
    requirements: tuple[str, ...] = ()
    """Installed host-side from wheels when the session is created (offline in the box)."""
    query_command: str | None = None
    """None: a query is a cell of the kernel. Else a shell command run on the query saved to
    ``{file}`` (stateless, as Backend.AI's runner does for compiled and script languages)."""
    query_suffix: str = ""


PYTHON = Language("python", PYTHON_BUILD, PYTHON_EXEC)
LUA = Language(
    "lua",
    LUA_BUILD,
    LUA_EXEC,
    requirements=("lupa>=2.2,<3",),
    query_command="lua {file}",
    query_suffix=".lua",
)
_BY_NAME = {"python": PYTHON, "python3": PYTHON, "lua": LUA}


def language_of(image: str) -> Language:
    """The language an image name stands for; BackendAPIError 404 for one execbox lacks."""
    if not isinstance(image, str) or not image.strip():
        raise BackendAPIError.problem(
            400, "Bad Request", "invalid-api-params", f"image must be a name, not {image!r}"
        )
    repository = image.strip().rsplit("/", 1)[-1]
    name = repository.split("@", 1)[0].split(":", 1)[0].lower()
    language = _BY_NAME.get(name)
    if language is None:
        raise BackendAPIError.problem(
            404,
            "Not Found",
            "image-not-found",
            f"execbox has no image {image!r}: it runs Python images ('python', e.g. "
            "'python:3.9-ubuntu20.04' or 'lablup/python:3.11') and Lua ('lua')",
        )
    return language
