"""lua SCRIPT [ARGS]: runs a Lua 5.4 script, as the ``lua`` command line does.

Lua comes from the ``lupa`` wheel that a Lua compute session installs. ``arg`` is set, an error
prints ``lua: message`` and its traceback on stderr and exits 1, stdout is line-buffered so
that output streams.
"""

from __future__ import annotations

import ctypes
import importlib
import sys
from typing import Any

MAIN = """
function(script, ...)
  arg = {[0] = script, ...}
  local chunk, err = loadfile(script)
  if not chunk then io.stderr:write("lua: ", err, "\\n") return 1 end
  local ok, message = xpcall(chunk, debug.traceback, ...)
  io.stdout:flush()
  if not ok then
    message = tostring(message):gsub("\\n%s*%[C%]: in function 'xpcall'.*$", "")
    io.stderr:write("lua: ", message, "\\n")
    return 1
  end
  return 0
end
"""


def main() -> int:
    try:
        lua: Any = importlib.import_module("lupa.lua54")
    except ImportError:
        sys.stderr.write(
            "lua: Lua is not installed in this session; create it with a 'lua' image\n"
        )
        return 127
    if len(sys.argv) < 2:
        sys.stderr.write("usage: lua script [args]\n")
        return 1
    libc = ctypes.CDLL(None)
    libc.setvbuf(ctypes.c_void_p.in_dll(libc, "stdout"), None, 1, 0)  # _IOLBF
    runtime = lua.LuaRuntime(register_eval=False, register_builtins=False)
    code: int = runtime.eval(MAIN)(sys.argv[1], *sys.argv[2:])
    return code


if __name__ == "__main__":
    sys.exit(main())
