from __future__ import annotations

import pytest

from execbox import InvalidLimits, JobResult, JobStatus, Limits
from execbox.sizes import format_size, parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("128M", 128 << 20),
        ("1G", 1 << 30),
        ("1.5G", 3 << 29),
        ("64KiB", 64 << 10),
        (4096, 4096),
        ("10", 10),
    ],
)
def test_sizes(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("bad", ["", "lots", "-1", "0", "1X", True, 1.5, None, 0, -4])
def test_bad_sizes(bad):
    with pytest.raises(InvalidLimits):
        parse_size(bad)


def test_format_size_round_trips():
    for size in (1 << 20, 3 << 30, 1000):
        assert parse_size(format_size(size)) == size


@pytest.mark.parametrize(
    "changes",
    [
        {"memory": "1K"},
        {"memory": "2T"},
        {"cpus": 0},
        {"cpus": float("nan")},
        {"cpus": 5000},
        {"pids": 0},
        {"pids": 10**9},
        {"pids": 2.5},
        {"disk": "0"},
        {"output": "100"},
    ],
)
def test_absurd_limits_are_refused(changes):
    with pytest.raises(InvalidLimits):
        Limits(**changes)


def test_result_decodes_leniently_and_serialises():
    result = JobResult(id="j", status=JobStatus.SUCCEEDED, exit_code=0, stdout_bytes=b"\xffok")
    assert result.stdout == "\ufffdok"
    assert result.to_dict()["stdout"] == "\ufffdok"
    assert result.to_dict()["status"] == "succeeded"
