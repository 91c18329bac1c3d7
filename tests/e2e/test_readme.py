"""The README's workflow and commands run exactly as written: the first thing a new user copies."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = README.read_text().split("## A workflow", 1)[1].split("\n## ", 1)[0]


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", SECTION, flags=re.DOTALL)


@pytest.fixture
def order_dir(tmp_path: Path) -> Path:
    (yaml_text,) = _blocks("yaml")
    (tmp_path / "order.yaml").write_text(yaml_text)
    return tmp_path


def _run(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(
        ["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def test_every_readme_command_succeeds(order_dir: Path) -> None:
    (commands,) = _blocks("bash")
    lines = [ln for ln in commands.splitlines() if ln.strip()]
    assert len(lines) == 4
    for line in lines:
        done = _run(line, order_dir)
        assert done.returncode == 0, f"{line!r} exited {done.returncode}: {done.stderr}"
        assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("amount", "decide", "shipping", "steps"),
    [
        (250, "--decide manager_approval=confirm", "express", ["manager_approval", "ship_express"]),
        (40, "", "standard", ["ship_standard"]),
    ],
)
def test_the_condition_sees_the_amount(
    order_dir: Path, amount: int, decide: str, shipping: str, steps: list[str]
) -> None:
    """The first step must pass `amount` on, or the condition could never be true."""
    line = f'echo \'{{"order": "A-1", "amount": {amount}}}\' | floxyctl run -f order.yaml'
    done = _run(f"{line} {decide} --output json", order_dir)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["status"] == "completed"
    assert doc["output"] == {
        "order": "A-1",
        "amount": amount,
        "reserved": True,
        "charged": amount,
        "shipping": shipping,
    }
    names = [step["name"] for step in doc["steps"]]
    assert names == ["reserve", "reserved", "charge", "big_order", *steps]
