"""Bad input and hostile archives: refused before any box starts, or contained inside one."""

from __future__ import annotations

import io
import os
import tarfile
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import execbox
from conftest import SECRET_FILE
from execbox.models import JobStatus
from helpers import leftovers

RECORDS = Path(os.environ["EXECBOX_STATE_DIR"]) / "boxes"


@pytest.fixture(scope="module")
def client(sdk_options):
    """Every test here runs embedded and against a server: the same refusals, the same boxes."""
    with execbox.Client(**sdk_options) as c:
        yield c


def make_tar(*members: tuple[str, str, str | bytes]) -> bytes:
    """Tar bytes from (name, kind, payload): kind is file, dir, symlink, hardlink, chr, fifo."""
    kinds = {
        "file": tarfile.REGTYPE,
        "dir": tarfile.DIRTYPE,
        "symlink": tarfile.SYMTYPE,
        "hardlink": tarfile.LNKTYPE,
        "chr": tarfile.CHRTYPE,
        "blk": tarfile.BLKTYPE,
        "fifo": tarfile.FIFOTYPE,
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)  # addfile keeps the name exactly as given
            info.type = kinds[kind]
            info.mode = 0o755 if kind == "dir" else 0o644
            data = payload.encode() if isinstance(payload, str) else payload
            if kind == "file":
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                info.linkname = data.decode()
                if kind in ("chr", "blk"):
                    info.devmajor, info.devminor = 1, 3
                tar.addfile(info)
    return buffer.getvalue()


MAIN = "print('ran')\n"


@pytest.fixture
def nothing_starts(client, tmp_path, monkeypatch) -> Iterator[Path]:
    """Asserts that the test starts no box at all: no leftovers, no box record ever written.

    The working directory is a fresh, deep, empty directory: a host-side extraction of a name
    such as ``../evil`` would land in it or above it, where ``tmp_path`` would show it.
    """
    deadline = time.monotonic() + 5.0
    while leftovers() and time.monotonic() < deadline:
        time.sleep(0.02)  # the previous test's box may still be going away
    cwd = tmp_path / "a" / "b" / "c"
    cwd.mkdir(parents=True)
    monkeypatch.chdir(cwd)
    records_before = RECORDS.stat().st_mtime_ns
    yield tmp_path
    assert leftovers() == {}
    assert list(RECORDS.iterdir()) == []
    assert RECORDS.stat().st_mtime_ns == records_before, "a box record was written"
    planted = [p for p in tmp_path.rglob("*") if p.is_file() or p.is_symlink()]
    assert planted == [], planted
    assert not Path("/abs").exists()
    assert not Path("/evil").exists()


# -- hostile archives, refused on the host before any box starts -----------------------------


@pytest.mark.parametrize(
    "member",
    [
        ("../evil", "file", "x"),
        ("/abs/evil", "file", "x"),
        ("a/../../evil", "file", "x"),
        ("./../evil", "file", "x"),
        ("", "file", "x"),
        ("../evil-dir", "dir", ""),
    ],
    ids=["dotdot", "absolute", "inner-dotdot", "dot-dotdot", "empty-name", "dotdot-dir"],
)
def test_archive_member_outside_the_workspace_is_refused(client, nothing_starts, member):
    archive = make_tar(("main.py", "file", MAIN), member)
    with pytest.raises(execbox.InvalidFiles):
        client.run(archive)


@pytest.mark.parametrize(
    "member",
    [
        ("passwd", "symlink", "/etc/passwd"),
        ("up", "symlink", "../../x"),
        ("sub/up", "symlink", "../../x"),
        ("sub/dir/up", "symlink", "../../.."),
        ("sub/sneaky", "symlink", "sub/../../.."),
        ("secret", "symlink", str(SECRET_FILE)),
        ("shadow", "hardlink", "/etc/shadow"),
        ("ghost", "hardlink", "not-in-archive.py"),
        ("parent", "hardlink", "../main.py"),
        ("null", "chr", ""),
        ("disk", "blk", ""),
        ("pipe", "fifo", ""),
    ],
    ids=lambda m: f"{m[1]}:{m[0]}->{m[2]}",
)
def test_archive_link_or_special_member_is_refused(client, nothing_starts, member):
    archive = make_tar(("main.py", "file", MAIN), member)
    with pytest.raises(execbox.InvalidFiles):
        client.run(archive)


def test_unreadable_archive_is_refused(client, nothing_starts):
    with pytest.raises(execbox.InvalidFiles):
        client.run(b"\x1f\x8b this is not a tar archive at all" * 40)


def test_benign_relative_symlink_in_an_archive_works(client, invariants):
    archive = make_tar(
        ("pkg", "dir", ""),
        ("pkg/__init__.py", "file", "VALUE = 'from pkg'\n"),
        ("pkg/data.txt", "file", "through the link\n"),
        ("lib", "symlink", "pkg"),
        ("pkg/same.txt", "hardlink", "pkg/data.txt"),
        (
            "main.py",
            "file",
            textwrap.dedent(
                """
                import os
                print(open("lib/data.txt").read().strip())
                print(os.readlink("lib"))
                print(open("pkg/same.txt").read().strip())
                print(os.stat("pkg/same.txt").st_ino == os.stat("pkg/data.txt").st_ino)
                import lib
                print(lib.VALUE)
                """
            ),
        ),
    )
    result = client.run(archive)
    assert result.stdout.splitlines() == [
        "through the link",
        "pkg",
        "through the link",
        "True",
        "from pkg",
    ], result.stderr[-2000:]
    invariants.check(result, JobStatus.SUCCEEDED)


def test_file_member_below_a_symlink_member_stays_inside(client, invariants, tmp_path):
    """'d' -> 'sub' then 'd/x.py': the agent never follows the link while extracting.

    It refuses the upload (the box's agent opens every directory with O_NOFOLLOW), so the job
    ends in ERROR (InvalidFiles: the archive is at fault) and nothing is written anywhere,
    inside the workspace's 'sub' or outside.
    """
    archive = make_tar(
        ("sub", "dir", ""),
        ("d", "symlink", "sub"),
        ("d/x.py", "file", "print('x')\n"),
        ("main.py", "file", "import os\nprint(sorted(os.listdir('sub')))\n"),
    )
    result = client.run(archive)
    assert result.reason == "InvalidFiles", (result.status, result.reason, result.message)
    assert "x.py" not in result.stdout
    assert not list(tmp_path.rglob("x.py"))
    invariants.check(result, JobStatus.ERROR, reason="InvalidFiles")


# -- bad mappings and entrypoints ------------------------------------------------------------


@pytest.mark.parametrize(
    ("files", "error"),
    [
        ({"../main.py": MAIN}, execbox.InvalidFiles),
        ({"a/../../main.py": MAIN}, execbox.InvalidFiles),
        ({"/main.py": MAIN}, execbox.InvalidFiles),
        ({"/etc/cron.d/evil": "x", "main.py": MAIN}, execbox.InvalidFiles),
        ({"ma\x00in.py": MAIN}, execbox.InvalidFiles),
        ({"": MAIN}, execbox.InvalidFiles),
        ({".": MAIN}, execbox.InvalidFiles),
        ({}, execbox.InvalidFiles),
        (None, execbox.InvalidFiles),
        ({"main.py": 42}, execbox.InvalidFiles),
        ({"main.py": MAIN, "lib.py": None}, execbox.InvalidFiles),
        ({"data.txt": "no python here"}, execbox.NoEntrypoint),
        ({"a.py": MAIN, "b.py": MAIN}, execbox.NoEntrypoint),
    ],
    ids=[
        "dotdot",
        "inner-dotdot",
        "absolute",
        "absolute-extra",
        "nul",
        "empty-name",
        "dot",
        "empty-dict",
        "none",
        "int-content",
        "none-content",
        "no-python",
        "two-scripts",
    ],
)
def test_bad_files_are_refused(client, nothing_starts, files, error):
    with pytest.raises(error):
        client.run(files)


@pytest.mark.parametrize(
    "entrypoint", ["nope.py", "../main.py", "/workspace/main.py", "data.txt/.."]
)
def test_missing_or_unsafe_entrypoint_is_refused(client, nothing_starts, entrypoint):
    with pytest.raises(execbox.InvalidSpec) as raised:
        client.run({"main.py": MAIN, "data.txt": "x"}, entrypoint=entrypoint)
    expected = execbox.NoEntrypoint if entrypoint == "nope.py" else execbox.InvalidFiles
    assert isinstance(raised.value, expected), raised.value


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"main.py": "print('main.py')", "other.py": "print('other')"}, "main.py"),
        ({"__main__.py": "print('__main__.py')", "other.py": "print('other')"}, "__main__.py"),
        ({"only.py": "print('only.py')", "notes.txt": "x"}, "only.py"),
    ],
    ids=["main", "dunder-main", "single"],
)
def test_entrypoint_is_inferred(client, invariants, files, expected):
    result = client.run(files)
    assert result.stdout == f"{expected}\n", result.stderr[-2000:]
    invariants.check(result, JobStatus.SUCCEEDED)


# -- bad limits ------------------------------------------------------------------------------


def _limits(**kwargs: object) -> Callable[[execbox.Client], object]:
    return lambda client: client.run({"main.py": MAIN}, limits=execbox.Limits(**kwargs))


def _timeout(value: float) -> Callable[[execbox.Client], object]:
    return lambda client: client.run({"main.py": MAIN}, timeout=value)


@pytest.mark.parametrize(
    "attempt",
    [
        _limits(memory=-1),
        _limits(memory="-128M"),
        _limits(memory="lots"),
        _limits(memory="99T"),
        _limits(memory="1K"),
        _limits(memory=True),
        _limits(cpus=0),
        _limits(cpus=-1),
        _limits(cpus=float("nan")),
        _limits(cpus=float("inf")),
        _limits(pids=0),
        _limits(pids=-5),
        _limits(pids=10**9),
        _limits(pids=2.5),
        _limits(disk="0"),
        _limits(disk=0),
        _limits(output="0"),
        _timeout(-1),
        _timeout(0),
        _timeout(float("inf")),
        _timeout(float("nan")),
    ],
    ids=[
        "memory-negative",
        "memory-negative-str",
        "memory-lots",
        "memory-99T",
        "memory-1K",
        "memory-bool",
        "cpus-0",
        "cpus-negative",
        "cpus-nan",
        "cpus-inf",
        "pids-0",
        "pids-negative",
        "pids-1e9",
        "pids-float",
        "disk-0-str",
        "disk-0",
        "output-0",
        "timeout-negative",
        "timeout-0",
        "timeout-inf",
        "timeout-nan",
    ],
)
def test_bad_limits_are_refused(client, nothing_starts, attempt):
    with pytest.raises(execbox.InvalidLimits):
        attempt(client)


# -- links planted by the program ------------------------------------------------------------


def test_links_planted_in_the_workspace_do_not_touch_the_host(client, invariants):
    passwd = Path("/etc/passwd")
    before = (passwd.stat().st_mtime_ns, passwd.read_bytes())
    secret_before = (SECRET_FILE.stat().st_mtime_ns, SECRET_FILE.read_text())
    result = client.run(
        {
            "main.py": textwrap.dedent(
                """
                import json, os, sys

                seen = {}
                os.symlink("/etc/passwd", "passwd")
                os.symlink(sys.argv[1], "secret")
                os.symlink("/", "root")
                os.mkdir("out")
                os.symlink("/etc", "out/etc")
                for name in ("passwd", "secret"):
                    try:
                        with open(name, "a") as f:
                            f.write("box::0:0::/:/bin/sh\\n")
                        seen[name] = "written"
                    except OSError as exc:
                        seen[name] = type(exc).__name__
                try:
                    os.link("/etc/passwd", "hard")
                    seen["hard"] = "linked"
                except OSError as exc:
                    seen["hard"] = type(exc).__name__
                print(json.dumps(seen))
                """
            )
        },
        args=[str(SECRET_FILE)],
    )
    assert result.stdout.strip() == (
        '{"passwd": "PermissionError", "secret": "FileNotFoundError", "hard": "OSError"}'
    ), result.stderr[-2000:]
    assert (passwd.stat().st_mtime_ns, passwd.read_bytes()) == before
    assert (SECRET_FILE.stat().st_mtime_ns, SECRET_FILE.read_text()) == secret_before
    invariants.check(result, JobStatus.SUCCEEDED)
