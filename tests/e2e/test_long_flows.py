"""Long flows through the real CLI: `validate` and `run` finish them (about 985 sequential steps
used to raise RecursionError). Only outcomes are asserted; speed is the bench's (big-flow)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.e2e.test_validate_graph_cli import floxyctl_cmd

HEADER = """\
handlers:
  - {name: noop, type: python, exec: "longflow_noop:noop"}
flows:
  - name: big
    steps:
"""


def _sequential(count: int) -> str:
    return HEADER + "".join(f"      - {{name: s{i}, handler: noop}}\n" for i in range(count))


def _fork(branches: int) -> str:
    lines = "".join(f"          - [{{name: b{i}, handler: noop}}]\n" for i in range(branches))
    return HEADER + "      - type: fork\n        name: f\n        branches:\n" + lines


def _ctl(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    return subprocess.run(
        [*floxyctl_cmd(), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,  # a hang guard only, far above the seconds these take
        stdin=subprocess.DEVNULL,
        check=False,
    )


@pytest.mark.parametrize(
    ("text", "steps"),
    [(_sequential(5000), 5000), (_fork(1000), 1002)],
    ids=["5000-sequential", "1000-branch-fork"],
)
def test_validate_and_run_a_long_flow(tmp_path: Path, text: str, steps: int) -> None:
    (tmp_path / "longflow_noop.py").write_text("def noop(ctx, data):\n    return data\n")
    (tmp_path / "big.yaml").write_text(text)
    checked = _ctl(tmp_path, "validate", "-f", "big.yaml")
    assert checked.returncode == 0, checked.stderr[-2000:]
    assert "ok (1 flow: big-v1)" in checked.stdout
    ran = _ctl(tmp_path, "run", "-f", "big.yaml", "--output", "json")
    assert ran.returncode == 0, ran.stderr[-2000:]
    report = json.loads(ran.stdout)
    assert report["status"] == "completed"
    assert len(report["steps"]) == steps
    assert {s["status"] for s in report["steps"]} == {"completed"}
