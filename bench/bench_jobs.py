"""Job latency, side by side with its floors, in one run: median, p95 and ratios.

    .venv/bin/python bench/bench_jobs.py [--runs N]

Rows, measured in interleaved rounds so that noise falls on all of them alike:
  python -c            the box interpreter started bare (the floor of any Python job)
  bwrap python -c      the same inside a minimal bubblewrap sandbox (the isolation floor)
  job, cold box        execbox job `print(1)`, API call to result, a box started for it
  job, warm pool       the same, from a pool of pristine boxes
  job + six            `requirements=["six"]`, warm cache, network off
Targets (PERFORMANCE.md): job <= 25 ms median; job with six <= 150 ms median.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time
from collections.abc import Callable

import execbox
from execbox.boxes.local.host import box_python, find_bwrap

PROGRAM = {"main.py": "print(1)"}
SETTLE = 0.1


def _timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=40)
    options = parser.parse_args()
    python, _ = box_python()
    bwrap = find_bwrap() or "bwrap"
    bwrap_argv = [
        bwrap, "--unshare-all", "--die-with-parent", "--ro-bind", "/usr", "/usr",
        "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
        "--symlink", "usr/bin", "/bin", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
        python, "-c", "print(1)",
    ]  # fmt: skip

    def bare() -> None:
        subprocess.run([python, "-c", "print(1)"], check=True, capture_output=True)

    def bwrapped() -> None:
        subprocess.run(bwrap_argv, check=True, capture_output=True)

    with execbox.Client(pool_size=0) as cold, execbox.Client(pool_size=2) as warm:

        def job_cold() -> None:
            assert cold.run(PROGRAM).stdout == "1\n"

        def job_warm() -> None:
            assert warm.run(PROGRAM).stdout == "1\n"

        def job_six() -> None:
            result = warm.run({"main.py": "import six; print(1)"}, requirements=["six"])
            assert result.stdout == "1\n", result

        rows: dict[str, Callable[[], None]] = {
            "python -c (floor)": bare,
            "bwrap python -c (floor)": bwrapped,
            "job print(1), cold box": job_cold,
            "job print(1), warm pool": job_warm,
            "job + requirements six (warm)": job_six,
        }
        for action in rows.values():  # warm caches and pools before measuring
            for _ in range(3):
                action()
        samples: dict[str, list[float]] = {name: [] for name in rows}
        for _ in range(options.runs):
            for name, action in rows.items():
                samples[name].append(_timed(action))
                # Background work of a job (destroying its box, refilling the pool) must not
                # land on the next row's clock: settle, outside the measurement.
                time.sleep(SETTLE)

    floor = statistics.median(samples["bwrap python -c (floor)"])
    print(f"{'measure':<32} {'median ms':>10} {'p95 ms':>8} {'x bwrap floor':>14}")
    for name, values in samples.items():
        values.sort()
        median = statistics.median(values)
        p95 = values[min(len(values) - 1, int(len(values) * 0.95))]
        print(f"{name:<32} {median:>10.1f} {p95:>8.1f} {median / floor:>14.2f}")
    print("\ntargets: job print(1) <= 25 ms median; job + six <= 150 ms median")
    print("peer: python-executor 260 ms per run (PERFORMANCE.md)")


if __name__ == "__main__":
    main()
