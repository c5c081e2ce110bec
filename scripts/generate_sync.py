"""Rewrite src/execbox/client/_async/*.py into _sync/ (unasync plus our names)."""

from __future__ import annotations

import filecmp
import subprocess
import sys
import tempfile
from pathlib import Path

import unasync

ROOT = Path(__file__).resolve().parent.parent / "src" / "execbox" / "client"
NAMES = {
    "AsyncClient": "Client",
    "AsyncJob": "Job",
    "AsyncSession": "Session",
    "AsyncExecution": "Execution",
    "AsyncFiles": "Files",
    "AsyncTransport": "SyncTransport",
    "AsyncEmbeddedTransport": "SyncEmbeddedTransport",
    "AsyncRemoteTransport": "SyncRemoteTransport",
    "aclose": "close",
}
HEADER = "# Generated from ../_async by scripts/unasync: do not edit.\n"


def generate(target: Path) -> list[Path]:
    sources = sorted((ROOT / "_async").glob("*.py"))
    rule = unasync.Rule(str(ROOT / "_async"), str(target), additional_replacements=NAMES)
    unasync.unasync_files([str(p) for p in sources], rules=[rule])
    produced = []
    for source in sources:
        out = target / source.name
        out.write_text(HEADER + out.read_text())
        produced.append(out)
    # Sync lines are shorter than async ones: format, so the output is what ruff would keep.
    subprocess.run([sys.executable, "-m", "ruff", "format", "-q", *map(str, produced)], check=True)
    return produced


def main() -> int:
    if "--check" in sys.argv:
        with tempfile.TemporaryDirectory() as scratch:
            for produced in generate(Path(scratch)):
                if not filecmp.cmp(produced, ROOT / "_sync" / produced.name, shallow=False):
                    print(f"_sync/{produced.name} is stale: run scripts/unasync", file=sys.stderr)
                    return 1
        return 0
    generate(ROOT / "_sync")
    return 0


if __name__ == "__main__":
    sys.exit(main())
