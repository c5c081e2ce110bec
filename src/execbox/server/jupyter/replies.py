"""Answers the gateway gives itself, without the kernel.

``is_complete`` is judged by Python's own compiler on the host (compile only, in a worker
thread, size-capped), and ``history`` comes from the session's execution records. Completion
and inspection are the kernel's (``SessionManager.query``); "nothing found" stands in when it
cannot answer in time.
"""

from __future__ import annotations

import codeop
import fnmatch
import warnings
from typing import Any

__all__ = ["comm_info", "history", "is_complete", "nothing_found"]

MAX_JUDGED = 64 << 10
"""Longest code ``is_complete`` compiles; longer code is ``unknown``."""
MAX_HISTORY = 1000


def is_complete(code: Any) -> dict[str, Any]:
    """``complete``, ``incomplete`` (with the indent of the next line), ``invalid`` or
    ``unknown``, as IPython's console frontends expect. Blocking: run it in a thread."""
    if not isinstance(code, str) or len(code) > MAX_JUDGED:
        return {"status": "unknown"}
    stripped = code.strip()
    if stripped.startswith(("%", "!", "?")) or stripped.endswith("?"):
        return {"status": "complete"}  # IPython syntax the Python compiler does not know
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            compiled = codeop.compile_command(code, "<cell>", "exec")
    except (SyntaxError, ValueError, OverflowError):
        return {"status": "invalid"}
    except (RecursionError, MemoryError):
        return {"status": "unknown"}
    if compiled is not None:
        return {"status": "complete"}
    last = code.rstrip("\n").split("\n")[-1]
    indent = last[: len(last) - len(last.lstrip())]
    if last.rstrip().endswith(":"):
        indent += "    "
    return {"status": "incomplete", "indent": indent}


def nothing_found(msg_type: str, content: dict[str, Any]) -> dict[str, Any]:
    """An empty ``complete_reply`` or ``inspect_reply``."""
    if msg_type == "inspect_request":
        return {"status": "ok", "found": False, "data": {}, "metadata": {}}
    cursor = content.get("cursor_pos")
    if isinstance(cursor, bool) or not isinstance(cursor, int):
        code = content.get("code")
        cursor = len(code) if isinstance(code, str) else 0
    return {
        "status": "ok",
        "matches": [],
        "cursor_start": cursor,
        "cursor_end": cursor,
        "metadata": {},
    }


def comm_info(_content: dict[str, Any]) -> dict[str, Any]:
    return {"status": "ok", "comms": {}}


def history(content: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """``history_reply`` from execution records (newest first, as the store lists them).

    Entries are ``[session, line, input]`` (``[session, line, [input, None]]`` with
    ``output``): session 0 is this kernel's, lines are execution counts. ``tail``, ``range``
    and ``search`` are served; a restart starts the counts again, as in IPython.
    """
    entries = [
        (int(row["execution_count"]), str(row.get("code") or ""))
        for row in reversed(rows)
        if isinstance(row.get("execution_count"), int)
    ]
    kind = content.get("hist_access_type", "tail")
    n = _int(content.get("n"), 10)
    if kind == "range":
        start = _int(content.get("start"), 0)
        stop = _int(content.get("stop"), 0)
        entries = [e for e in entries if e[0] >= start and (stop <= 0 or e[0] < stop)]
    elif kind == "search":
        pattern = content.get("pattern")
        pattern = pattern if isinstance(pattern, str) and pattern else "*"
        entries = [e for e in entries if fnmatch.fnmatchcase(e[1], pattern)]
        if content.get("unique"):
            seen: set[str] = set()
            unique = []
            for entry in reversed(entries):
                if entry[1] not in seen:
                    seen.add(entry[1])
                    unique.append(entry)
            entries = unique[::-1]
        entries = entries[-n:] if n > 0 else entries
    elif kind == "tail":
        entries = entries[-n:] if n > 0 else []
    else:
        return {"status": "error", "ename": "ValueError", "evalue": f"hist_access_type {kind!r}"}
    with_output = bool(content.get("output"))
    history = [
        [0, line, [code, None] if with_output else code] for line, code in entries[-MAX_HISTORY:]
    ]
    return {"status": "ok", "history": history}


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default
