"""`floxyctl run` leaves fast (no interpreter teardown) only when nothing needs that teardown: a
`type: python` handler's module may have registered `atexit` handlers, which must run."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.test_long_flows import _ctl

MODULE = """\
import atexit, pathlib

def _bye():
    pathlib.Path("atexit-ran").write_text("yes")

atexit.register(_bye)

def step(ctx, data):
    return {"ok": True}
"""
FLOW = """\
handlers:
  - {name: py, type: python, exec: "exiting:step"}
flows:
  - name: f
    steps:
      - {name: s, handler: py}
"""


def test_a_python_handlers_atexit_runs_when_run_ends(tmp_path: Path) -> None:
    (tmp_path / "exiting.py").write_text(MODULE)
    (tmp_path / "f.yaml").write_text(FLOW)
    ran = _ctl(tmp_path, "run", "f.yaml")
    assert ran.returncode == 0, ran.stderr
    assert (tmp_path / "atexit-ran").read_text() == "yes"
