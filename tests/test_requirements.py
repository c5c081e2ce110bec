"""Requirements from wheels, prepared on the host, used with the network off."""

from __future__ import annotations

import time

import pytest

import execbox
from execbox import JobStatus
from execbox.engine.requirements import parse_requirements


def test_requirement_installs_and_imports_with_network_off(client, invariants):
    code = "import six, socket\nprint(six.__version__ > '1')\n"
    code += (
        "try:\n    socket.create_connection(('1.1.1.1', 443), timeout=1)\nexcept OSError as e:\n"
    )
    code += "    print('offline', e.errno)\n"
    result = client.run({"main.py": code}, requirements=["six"], network=False)
    assert result.stdout.startswith("True\noffline"), result.stderr
    invariants.check(result, JobStatus.SUCCEEDED)
    again = client.run({"main.py": "import six; print(six.__file__)"}, requirements="six\n")
    assert again.stdout.startswith("/"), again.stderr


def test_box_cannot_change_the_shared_environment(client):
    result = client.run(
        {"main.py": "import six, os\nopen(os.path.dirname(six.__file__) + '/poison.py', 'w')"},
        requirements=["six"],
    )
    assert result.status is JobStatus.FAILED
    assert "Read-only file system" in result.stderr


def test_unknown_requirement_fails_fast_with_a_clear_message(client, invariants):
    started = time.monotonic()
    result = client.run({"main.py": "print(1)"}, requirements=["no-such-package-execbox-xyz==1"])
    assert time.monotonic() - started < 30
    assert "no-such-package-execbox-xyz" in (result.message or "")
    invariants.check(result, JobStatus.ERROR, reason="RequirementsError")


def test_sdist_only_requirement_is_refused_not_built(client):
    result = client.run({"main.py": "print(1)"}, requirements=["docopt==0.6.2"])
    assert result.status is JobStatus.ERROR
    assert "wheel" in (result.message or "").lower()


@pytest.mark.parametrize(
    "bad",
    [
        "-e .",
        "--index-url http://x",
        "pkg @ file:///etc/passwd",
        "https://x/y.whl",
        "../local",
        "a b",
    ],
)
def test_requirement_specifiers_that_reach_outside_are_refused(bad):
    with pytest.raises(execbox.InvalidSpec):
        parse_requirements([bad])


def test_requirements_text_is_parsed():
    parsed = parse_requirements(
        "# comment\nsix>=1.0  # why\n\nattrs[tests]==23.1; python_version>'3'\n"
    )
    assert parsed.lines == ("attrs[tests]==23.1; python_version>'3'", "six>=1.0")
