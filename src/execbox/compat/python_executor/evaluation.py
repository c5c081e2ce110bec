"""python-executor's ``eval``: code (or files) as JSON, and the value of the last expression.

With ``eval_last_expr``, a small runner of ours is added beside the user's files and run
instead of the entrypoint: it executes the entrypoint's statements, evaluates a trailing
expression and prints its ``repr`` on a marked last line, which is taken out of stdout and
returned as ``result``. A failed run also reports the exception's type and the line of the
user's file where it was raised (``error_type``, ``error_line``), as python-executor does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ...errors import InvalidSpec

__all__ = ["EvalProgram", "error_details", "eval_program", "split_result"]

RUNNER = "_execbox_eval.py"
MARKER = "\x1eexecbox-eval-result:"

_RUNNER_CODE = f"""\
import ast, json, sys

path = sys.argv[1]
with open(path, encoding="utf-8") as source:
    tree = ast.parse(source.read(), path)
last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
namespace = {{"__name__": "__main__", "__file__": path, "__builtins__": __builtins__}}
sys.argv = sys.argv[1:]
exec(compile(tree, path, "exec"), namespace)
if last is not None:
    value = eval(compile(ast.Expression(last.value), path, "eval"), namespace)
    if value is not None:
        sys.stdout.flush()
        sys.stdout.write({MARKER!r} + json.dumps(repr(value)) + "\\n")
"""

_FRAME = re.compile(r'File "([^"]+)", line (\d+)')
_ERROR = re.compile(r"^((?:[A-Za-z_]\w*\.)*[A-Z]\w*)(?::\s|$)")


@dataclass(frozen=True)
class EvalProgram:
    files: dict[str, str]
    entrypoint: str
    """What is run: the user's entrypoint, or our runner."""
    args: tuple[str, ...]
    source: str
    """The user's entrypoint, whose lines errors are reported in."""


def _files(code: Any, files: Any) -> tuple[dict[str, str], str | None]:
    if files:
        if not isinstance(files, Sequence) or isinstance(files, str):
            raise InvalidSpec("files must be a list of {'name': ..., 'content': ...}")
        named: dict[str, str] = {}
        for item in files:
            if not isinstance(item, dict):
                raise InvalidSpec("each file must be {'name': ..., 'content': ...}")
            name, content = item.get("name"), item.get("content")
            if not isinstance(name, str) or not isinstance(content, str):
                raise InvalidSpec("each file needs a string 'name' and a string 'content'")
            named[name] = content
        return named, next(iter(named))
    if not isinstance(code, str) or not code:
        raise InvalidSpec("either 'code' or 'files' must be provided")
    return {"main.py": code}, None


def eval_program(
    code: Any, files: Any, entrypoint: str | None, eval_last_expr: bool
) -> EvalProgram:
    """The job to run for an eval request: the files, then what to start with which args."""
    named, first = _files(code, files)
    source = entrypoint or first or "main.py"
    if not isinstance(source, str):
        raise InvalidSpec("entrypoint must be a string")
    if not eval_last_expr:
        return EvalProgram(named, source, (), source)
    if RUNNER in named:
        raise InvalidSpec(f"{RUNNER!r} is reserved for the eval runner")
    return EvalProgram({**named, RUNNER: _RUNNER_CODE}, RUNNER, (source,), source)


def split_result(stdout: str) -> tuple[str, str | None]:
    """stdout without the runner's marked line, and the repr it carried (None if none)."""
    at = stdout.rfind(MARKER)
    if at < 0:
        return stdout, None
    end = stdout.find("\n", at)
    line = stdout[at + len(MARKER) : end if end >= 0 else len(stdout)]
    try:
        value = json.loads(line)
    except ValueError:
        return stdout, None
    if not isinstance(value, str):
        return stdout, None
    rest = stdout[end + 1 :] if end >= 0 else ""
    return stdout[:at] + rest, value


def error_details(stderr: str, source: str) -> tuple[str | None, int | None]:
    """The exception type of a traceback, and the line of ``source`` it was raised at."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    match = _ERROR.match(lines[-1]) if lines else None
    error_type = match[1] if match else None
    line_number = None
    for path, number in _FRAME.findall(stderr):
        if path == source or path.endswith("/" + source):
            line_number = int(number)  # the innermost frame in the user's file wins
    return error_type, line_number
