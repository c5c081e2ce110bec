"""A job's files, from whatever the caller gave, to validated box entries.

Accepted: a mapping of relative names to str/bytes, a directory on the host (the caller's own),
a single file path, or the bytes of a tar archive. Tar archives are only *parsed* here, in
memory; every file is written inside the box by its agent, never on the host. Names that could
leave the workspace are refused here, before any box starts, and again by the agent.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from ..boxes.base import WORKSPACE, FileEntry
from ..errors import InvalidFiles, NoEntrypoint

__all__ = [
    "FilesInput",
    "check_name",
    "collect_files",
    "infer_entrypoint",
    "workspace_relative",
]

FilesInput = Mapping[str, str | bytes] | str | os.PathLike[str] | bytes | None

MAX_FILES = 10_000


def check_name(name: str) -> str:
    """The normalised relative name, or InvalidFiles naming what is wrong with it."""
    if not isinstance(name, str) or not name:
        raise InvalidFiles(f"file name must be a non-empty string, got {name!r}")
    if "\x00" in name:
        raise InvalidFiles(f"file name {name!r} contains a NUL byte")
    if name.startswith("/"):
        raise InvalidFiles(f"file name {name!r} is absolute; names are relative to the workspace")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidFiles(f"file name {name!r} contains '..'")
    if not parts:
        raise InvalidFiles(f"file name {name!r} names no file")
    return "/".join(parts)


def _escapes(link: str, depth: int) -> bool:
    level = depth
    for part in link.split("/"):
        if part == "..":
            level -= 1
            if level < 0:
                return True
        elif part not in ("", "."):
            level += 1
    return False


def _from_mapping(files: Mapping[str, str | bytes]) -> list[FileEntry]:
    entries = []
    for name, content in files.items():
        clean = check_name(name)
        if isinstance(content, str):
            data = content.encode()
        elif isinstance(content, bytes | bytearray | memoryview):
            data = bytes(content)
        else:
            raise InvalidFiles(
                f"content of {name!r} must be str or bytes, got {type(content).__name__}"
            )
        entries.append(FileEntry(clean, data=data))
    return entries


def _from_tar(archive: bytes) -> list[FileEntry]:
    entries: list[FileEntry] = []
    seen: set[str] = set()
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:*") as tar:
            for member in tar:
                name = check_name(member.name)
                if member.isdir():
                    entries.append(FileEntry(name, kind="dir", mode=member.mode))
                elif member.isreg():
                    source = tar.extractfile(member)
                    data = source.read() if source else b""
                    entries.append(FileEntry(name, data=data, mode=member.mode))
                elif member.issym():
                    link = member.linkname
                    if link.startswith("/") or _escapes(link, name.count("/")):
                        raise InvalidFiles(f"archive symlink {name!r} points outside ({link!r})")
                    entries.append(FileEntry(name, kind="symlink", link=link))
                elif member.islnk():
                    target = check_name(member.linkname)
                    if target not in seen:
                        raise InvalidFiles(f"archive hardlink {name!r} points outside ({target!r})")
                    entries.append(FileEntry(name, kind="hardlink", link=target))
                else:
                    raise InvalidFiles(f"archive member {name!r} is a device, fifo or special file")
                seen.add(name)
                if len(entries) > MAX_FILES:
                    raise InvalidFiles(f"archive has more than {MAX_FILES} members")
    except tarfile.TarError as exc:
        raise InvalidFiles(f"files are not a readable tar archive: {exc}") from None
    return entries


def _from_path(path: Path) -> list[FileEntry]:
    if path.is_file():
        return [FileEntry(path.name, data=path.read_bytes(), mode=path.stat().st_mode & 0o777)]
    if not path.is_dir():
        raise InvalidFiles(f"{str(path)!r} is neither a file nor a directory")
    entries = []
    for current, dirs, names in os.walk(path):
        dirs[:] = sorted(d for d in dirs if d not in ("__pycache__", ".git"))
        base = Path(current)
        for name in sorted(names):
            full = base / name
            relative = PurePosixPath(full.relative_to(path)).as_posix()
            if full.is_symlink() or not full.is_file():
                continue  # the caller's links are theirs to resolve; we copy plain files
            entries.append(
                FileEntry(relative, data=full.read_bytes(), mode=full.stat().st_mode & 0o777)
            )
            if len(entries) > MAX_FILES:
                raise InvalidFiles(f"{str(path)!r} holds more than {MAX_FILES} files")
    return entries


def collect_files(files: FilesInput) -> list[FileEntry]:
    if files is None:
        raise InvalidFiles("no files given")
    if isinstance(files, bytes | bytearray):
        entries = _from_tar(bytes(files))
    elif isinstance(files, str | os.PathLike):
        entries = _from_path(Path(files))
    elif isinstance(files, Mapping):
        entries = _from_mapping(files)
    else:
        raise InvalidFiles(
            f"files must be a mapping, a path or tar bytes, not {type(files).__name__}"
        )
    if not any(entry.kind == "file" for entry in entries):
        raise InvalidFiles("files are empty: there is no file to run")
    return entries


def infer_entrypoint(entries: list[FileEntry], entrypoint: str | None) -> str:
    """The given entrypoint (checked), else main.py, else __main__.py, else the only .py."""
    names = {entry.name for entry in entries if entry.kind in ("file", "hardlink", "symlink")}
    if entrypoint is not None:
        clean = check_name(entrypoint)
        if clean not in names:
            raise NoEntrypoint(f"entrypoint {entrypoint!r} is not among the files")
        return clean
    for default in ("main.py", "__main__.py"):
        if default in names:
            return default
    scripts = sorted(name for name in names if name.endswith(".py"))
    if len(scripts) == 1:
        return scripts[0]
    if not scripts:
        raise NoEntrypoint("no entrypoint given and the files hold no .py file")
    raise NoEntrypoint(
        f"no entrypoint given and no main.py among {len(scripts)} .py files; pass entrypoint="
    )


def workspace_relative(path: str, *, allow_root: bool = False) -> str:
    """A path inside the workspace, relative to it; anything that could leave it is refused."""
    if isinstance(path, str) and (path == WORKSPACE or path.startswith(WORKSPACE + "/")):
        path = path[len(WORKSPACE) :].lstrip("/")
    if allow_root and isinstance(path, str) and all(p in ("", ".") for p in path.split("/")):
        return ""  # the workspace itself
    return check_name(path)
