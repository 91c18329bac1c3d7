"""What users of kubectl-style CLIs type first: `-h` and `--version` (issue 16 item 5)."""

from __future__ import annotations

import subprocess

import pytest

from floxy_core import __version__
from tests.e2e.conftest import floxyctl_exe


def _floxyctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*floxyctl_exe(), *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_version_prints_the_version_and_exits_0() -> None:
    done = _floxyctl("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"floxyctl {__version__}"


@pytest.mark.parametrize("command", [[], ["run"], ["inspect"], ["validate"], ["dlq", "list"]])
def test_dash_h_is_help_everywhere(command: list[str]) -> None:
    short, long = _floxyctl(*command, "-h"), _floxyctl(*command, "--help")
    assert short.returncode == 0, short.stderr
    assert short.stdout.startswith("Usage: floxyctl")
    assert short.stdout == long.stdout
