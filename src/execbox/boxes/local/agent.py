"""The in-box agent: pid 1 of every local box. Standard library only; runs as ``python -I -S``.

It starts processes on the host's request, reports how they ended (with rusage), reaps orphans,
and writes and reads files *inside* the box, as the box's user, so the host never touches a path
that hostile code could have planted a link on.

Wire: one SOCK_SEQPACKET socket. Host to agent: one ``marshal``-ed dict per datagram (the host is
trusted), file descriptors (stdio pipes, memfds) riding along as SCM_RIGHTS. Agent to host: one
JSON object per datagram, parsed by the host as untrusted: the agent shares its uid with the code
it runs. Startup time is paid per box, so only C modules are imported (no json, socket, signal).
"""

import _signal
import _socket
import array
import marshal
import os
import resource
import select
import sys

CONTROL_FD = 3
MAX_FDS = 8
LIMIT_NAMES = {
    "core": resource.RLIMIT_CORE,
    "nofile": resource.RLIMIT_NOFILE,
    "fsize": resource.RLIMIT_FSIZE,
    "nproc": resource.RLIMIT_NPROC,
    "as": resource.RLIMIT_AS,
}
WRITABLE_ROOTS = ("/workspace", "/tmp")
SIGHUP, SIGINT, SIGKILL, SIGPIPE, SIGTERM, SIGCHLD, SIGXFSZ = 1, 2, 9, 13, 15, 17, 25
S_IFMT, S_IFREG, S_IFDIR, S_IFLNK = 0o170000, 0o100000, 0o040000, 0o120000
MAX_LISTED = 10000


class Refused(Exception):
    """A request the agent will not carry out; the message goes back to the host."""


_ESCAPES = {'"': '\\"', "\\": "\\\\"}


def encode(value):
    """JSON for the flat messages the agent sends: dicts of str, int, float, bool, None."""
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ",".join(encode(v) for v in value) + "]"
    if isinstance(value, str):
        return (
            '"'
            + "".join(_ESCAPES.get(c) or (c if c >= " " else "\\u%04x" % ord(c)) for c in value)
            + '"'
        )
    return "{" + ",".join(encode(str(k)) + ":" + encode(v) for k, v in value.items()) + "}"


def send(sock, message):
    sock.send(encode(message).encode("utf-8", "replace"))


def receive(sock):
    """One request and the descriptors that came with it; (None, []) when the host is gone."""
    fds = array.array("i")
    data, ancillary, _flags, _addr = sock.recvmsg(
        1 << 20, _socket.CMSG_SPACE(MAX_FDS * fds.itemsize)
    )
    for level, kind, payload in ancillary:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    if not data:
        return None, list(fds)
    return marshal.loads(data), list(fds)


def set_limits(limits):
    for name, value in limits.items():
        kind = LIMIT_NAMES[name]
        resource.setrlimit(kind, (value, value))


def make_undumpable():
    """Keep same-uid box code out of /proc/1/mem; needs ctypes, so best effort."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE, 0
    except Exception:  # noqa: S110 - hardening only, never fatal
        pass


def spawn(request, fds):
    stdin, stdout, stderr = fds[:3]
    argv = request["argv"]
    env = request.get("env") or {}
    cwd = request.get("cwd") or "/workspace"
    error_read, error_write = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # child: become a session leader with the given stdio, then exec
        try:
            os.close(error_read)
            _signal.set_wakeup_fd(-1)
            for number in (SIGCHLD, SIGPIPE, SIGXFSZ, SIGINT, SIGTERM, SIGHUP):
                _signal.signal(number, _signal.SIG_DFL)
            _signal.pthread_sigmask(_signal.SIG_SETMASK, [])
            os.setsid()
            os.dup2(stdin, 0)
            os.dup2(stdout, 1)
            os.dup2(stderr, 2)
            os.closerange(3, error_write)
            os.closerange(error_write + 1, 65536)
            os.chdir(cwd)
            os.execvpe(argv[0], argv, env)
        except BaseException as exc:
            try:
                os.write(error_write, f"{type(exc).__name__}: {exc}".encode()[:1000])
            finally:
                os._exit(127)
    os.close(error_write)
    for fd in fds:
        os.close(fd)
    failure = b""
    while chunk := os.read(error_read, 1024):
        failure += chunk
    os.close(error_read)
    if failure:
        os.waitpid(pid, 0)
        raise Refused(f"cannot start {argv[0]!r}: {failure.decode(errors='replace')}")
    return pid


# --- files, inside the box ---------------------------------------------------------------


def split_relative(name):
    """Path components of an archive member; refuses anything that could leave the root."""
    if not name or "\x00" in name:
        raise Refused(f"unsafe name {name!r}")
    if name.startswith("/"):
        raise Refused(f"absolute path {name!r}")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise Refused(f"path with '..' {name!r}")
    return parts


def writable_root(path):
    real = os.path.normpath(path)
    if not any(real == r or real.startswith(r + "/") for r in WRITABLE_ROOTS):
        raise Refused(f"{path!r} is outside the workspace")
    return real


def open_dir(root_fd, parts, create):
    """Walk directories below root_fd without ever following a link."""
    fd = os.dup(root_fd)
    try:
        for part in parts:
            if create:
                try:
                    os.mkdir(part, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
            nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nxt
    except OSError:
        os.close(fd)
        raise
    return fd


def extract(request, fds):
    """Write a manifest of entries (name, kind, mode, link target, data) below a writable root."""
    root = writable_root(request.get("path") or "/workspace")
    replace = bool(request.get("replace"))
    os.makedirs(root, exist_ok=True)
    with os.fdopen(fds[0], "rb") as source:
        entries = marshal.loads(source.read())
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        for name, kind, mode, link, data in entries:
            parts = split_relative(name)
            if not parts:
                continue
            parent = open_dir(root_fd, parts[:-1], create=True)
            try:
                place(name, kind, mode, link, data, parts, parent, root_fd, replace)
            finally:
                os.close(parent)
    finally:
        os.close(root_fd)
    return {"files": len(entries)}


def place(name, kind, mode, link, data, parts, parent, root_fd, replace=False):
    leaf = parts[-1]
    mode = (mode & 0o755) | 0o600
    if kind == "dir":
        try:
            os.mkdir(leaf, mode | 0o700, dir_fd=parent)
        except FileExistsError:
            pass
    elif kind == "file":
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        try:
            fd = os.open(leaf, flags, mode, dir_fd=parent)
        except FileExistsError:
            if not replace:
                raise
            os.unlink(leaf, dir_fd=parent)  # the name only, never what a link points at
            fd = os.open(leaf, flags, mode, dir_fd=parent)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
    elif kind == "symlink":
        if link.startswith("/") or _escapes(link, len(parts) - 1):
            raise Refused(f"symlink {name!r} points outside the workspace ({link!r})")
        os.symlink(link, leaf, dir_fd=parent)
    elif kind == "hardlink":
        source_parts = split_relative(link)
        source_dir = open_dir(root_fd, source_parts[:-1], create=False)
        try:
            os.link(
                source_parts[-1],
                leaf,
                src_dir_fd=source_dir,
                dst_dir_fd=parent,
                follow_symlinks=False,
            )
        finally:
            os.close(source_dir)
    else:
        raise Refused(f"member {name!r} is a device, fifo or other special file")


def _escapes(target, depth):
    level = depth
    for part in target.split("/"):
        if part == "..":
            level -= 1
            if level < 0:
                return True
        elif part not in ("", "."):
            level += 1
    return False


def open_below_root(path, parts_of):
    """fd of a directory below the writable root of path, reached without following links;
    ``parts_of`` picks which of path's components to walk."""
    root = next(r for r in WRITABLE_ROOTS if path == r or path.startswith(r + "/"))
    rest = path[len(root) :].lstrip("/")
    parts = split_relative(rest) if rest else []
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        return open_dir(root_fd, parts_of(parts), create=False), parts
    finally:
        os.close(root_fd)


def open_parent(path):
    """(fd of the directory holding path, leaf name), reached without following links."""
    if path in WRITABLE_ROOTS:
        raise Refused(f"{path!r} is the root of the workspace")
    parent, parts = open_below_root(path, lambda parts: parts[:-1])
    return parent, parts[-1]


def read_file(request, fds):
    path = writable_root(request["path"])
    limit = int(request.get("max", 64 << 20))
    parent, leaf = open_parent(path)
    try:
        fd = os.open(leaf, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=parent)
    finally:
        os.close(parent)
    with os.fdopen(fd, "rb") as source, os.fdopen(fds[0], "wb") as sink:
        info = os.fstat(source.fileno())
        if info.st_mode & S_IFMT != S_IFREG:
            raise Refused(f"{path!r} is not a regular file")
        if info.st_size > limit:
            raise Refused(f"{path!r} is {info.st_size} bytes, more than the {limit} allowed")
        sink.write(source.read(limit + 1)[:limit])
    return {"size": info.st_size}


def kind_of(mode):
    kind = mode & S_IFMT
    if kind == S_IFDIR:
        return "dir"
    if kind == S_IFREG:
        return "file"
    if kind == S_IFLNK:
        return "symlink"
    return "other"


def list_dir(request, fds):
    """Entries of a directory (name, kind, size, mtime) as JSON into the given fd."""
    path = writable_root(request.get("path") or "/workspace")
    directory, _parts = open_below_root(path, lambda parts: parts)
    entries = []
    try:
        for name in sorted(os.listdir(directory))[:MAX_LISTED]:
            try:
                info = os.stat(name, dir_fd=directory, follow_symlinks=False)
            except FileNotFoundError:
                continue
            entries.append({
                "name": name, "kind": kind_of(info.st_mode),
                "size": info.st_size, "mtime": info.st_mtime,
            })  # fmt: skip
    finally:
        os.close(directory)
    with os.fdopen(fds[0], "wb") as sink:
        sink.write(encode(entries).encode("utf-8", "replace"))
    return {"count": len(entries)}


def remove(request, fds):
    """Delete a file, a link (never its target) or a directory tree below a writable root."""
    parent, leaf = open_parent(writable_root(request["path"]))
    try:
        remove_entry(parent, leaf, 0)
    finally:
        os.close(parent)
    return {}


def remove_entry(parent, name, depth):
    if depth > 256:
        raise Refused("directory tree too deep to delete")
    info = os.stat(name, dir_fd=parent, follow_symlinks=False)
    if info.st_mode & S_IFMT != S_IFDIR:
        os.unlink(name, dir_fd=parent)
        return
    directory = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent)
    try:
        for child in os.listdir(directory):
            remove_entry(directory, child, depth + 1)
    finally:
        os.close(directory)
    os.rmdir(name, dir_fd=parent)


# --- the loop --------------------------------------------------------------------------------


def main():
    config = marshal.loads(bytes.fromhex(sys.argv[1])) if len(sys.argv) > 1 else {}
    set_limits(config.get("rlimits", {}))
    make_undumpable()
    sock = _socket.socket(fileno=int(config.get("control_fd", CONTROL_FD)))
    wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    _signal.set_wakeup_fd(wake_write)
    _signal.signal(SIGCHLD, lambda *_: None)
    for number in (SIGTERM, SIGINT, SIGHUP):
        _signal.signal(number, _signal.SIG_IGN)
    running = {}  # pid -> request id
    send(sock, {"ev": "ready", "pid": os.getpid()})
    handlers = {"spawn": spawn, "put": extract, "get": read_file, "list": list_dir, "rm": remove}
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    poller.register(wake_read, select.POLLIN)
    while True:
        try:
            events = poller.poll()
        except InterruptedError:
            continue
        for fd, _ in events:
            if fd == wake_read:
                while True:
                    try:
                        if not os.read(wake_read, 512):
                            break
                    except BlockingIOError:
                        break
                reap(sock, running)
                continue
            try:
                request, fds = receive(sock)
            except InterruptedError:
                continue
            if request is None:
                return  # the host is gone: pid 1 exits and the kernel ends the box
            op, rid = request.get("op"), request.get("id")
            if op == "kill":
                pid = next((p for p, r in running.items() if r == rid), None)
                if pid is not None:
                    try:
                        os.killpg(pid, int(request.get("signal", SIGKILL)))
                    except ProcessLookupError:
                        pass
                continue
            try:
                handler = handlers[op]
                outcome = handler(request, fds)
                fds = []
            except Exception as exc:  # pid 1 must outlive any request, however malformed
                for leftover in fds:
                    try:
                        os.close(leftover)
                    except OSError:
                        pass
                message = str(exc) if isinstance(exc, Refused) else f"{type(exc).__name__}: {exc}"
                send(sock, {"ev": "error", "id": rid, "error": message})
                continue
            if op == "spawn":
                running[outcome] = rid
                send(sock, {"ev": "spawned", "id": rid, "pid": outcome})
            else:
                send(sock, {"ev": "done", "id": rid, **outcome})


def reap(sock, running):
    while True:
        try:
            pid, status, usage = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        rid = running.pop(pid, None)
        if rid is None:
            continue  # an orphan that was re-parented to us
        send(sock, {
            "ev": "exit", "id": rid,
            "code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
            "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
            "cpu": usage.ru_utime + usage.ru_stime,
            "maxrss": usage.ru_maxrss * 1024,
        })  # fmt: skip


if __name__ == "__main__":
    main()
