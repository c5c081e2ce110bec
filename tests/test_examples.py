"""Every example in examples/, run as a user runs it: a script, from the repository's root.

The seeds' examples (ipybox, Backend.AI, python-executor) keep their tool's code with only the
import changed, and exit non-zero when a result is not what the seed documents. They run
embedded, and again against a real server through EXECBOX_URL/EXECBOX_API_KEY (the one way a
user moves them there), except those that need host paths (bind mounts).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from server_support import ServerProcess

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(
    path
    for path in (ROOT / "examples").rglob("*.py")
    if not any(part.startswith(("_", ".")) or part == "data" for part in path.parts)
)
HOST_PATHS = {"examples/ipybox/06_bind_mounts.py"}
"""Examples that mount host directories: an engine on this host only."""
SEEDS = {"ipybox": 7, "backendai": 8, "python_executor": 8}


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _run(example: Path, env: dict[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, str(example)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, **env},
    )
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    assert not list((ROOT / "examples").rglob("output")), "an example left its output behind"


def test_every_seed_has_its_examples_with_only_the_import_changed() -> None:
    for tool, count in SEEDS.items():
        scripts = sorted((ROOT / "examples" / tool).glob("*.py"))
        assert len(scripts) == count, (tool, [p.name for p in scripts])
        for script in scripts:
            text = script.read_text()
            assert f"execbox.compat.{tool}" in text, script


@pytest.mark.parametrize("example", EXAMPLES, ids=_name)
def test_example_runs_embedded(example: Path) -> None:
    _run(example, {"EXECBOX_URL": "", "EXECBOX_API_KEY": ""})


@pytest.mark.parametrize("example", [p for p in EXAMPLES if _name(p) not in HOST_PATHS], ids=_name)
def test_example_runs_against_a_server(example: Path, sdk_server: ServerProcess) -> None:
    _run(example, {"EXECBOX_URL": sdk_server.base, "EXECBOX_API_KEY": sdk_server.key})
