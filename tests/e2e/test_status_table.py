"""The status table of `floxyctl run` and `inspect` tells what became of each step: the step that
failed, a compensated step, one rolled back with nothing to undo, the compensation calls, and a
human decision with its comment."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from floxy_core.runtime import Runtime
from floxy_core.status import StepStatus
from floxy_core.storage.postgres import PostgresStore
from tests.e2e.conftest import floxyctl_exe
from tests.e2e.test_db_cli import drive, ok, start
from tests.pgcluster import Cluster

SAGA = """
handlers:
  - name: reserve
    exec: echo "$INPUT"
  - name: notify
    exec: echo "$INPUT"
  - name: release
    exec: echo '{}'
  - name: charge
    exec: |
      echo "card declined" >&2
      exit 1
  - name: refund
    exec: |
      if [ "$FLOXY_RETRY_COUNT" = 0 ]; then echo "bank busy" >&2; exit 1; fi
      echo '{}'
flows:
  - name: saga
    steps:
      - {name: reserve, on_failure: release}
      - {name: notify}
      - name: charge
        max_retries: 0
        on_failure: {handler: refund, retry_delay: 10ms}
"""


def _rows(stdout: str) -> dict[str, list[str]]:
    """Each step's line of the plain table, with the indented lines under it."""
    rows: dict[str, list[str]] = {}
    current: list[str] = []
    for line in stdout.splitlines():
        if line.startswith("  ") and not line.startswith("   "):
            current = rows.setdefault(line.split()[1], [])
        elif not line.startswith("   "):
            current = []
            continue
        current.append(line.strip())
    return rows


def test_failed_compensated_and_nothing_to_undo_steps_look_different(run_flow):
    r = run_flow(SAGA, json_output=False)
    assert r.code == 1, r.describe()
    rows = _rows(r.stdout)
    reserve, notify, charge = rows["reserve"], rows["notify"], rows["charge"]
    assert reserve[0].startswith("↺ reserve  compensated "), r.stdout
    assert notify[0].startswith("↺ notify   rolled back, nothing to undo "), r.stdout
    # the failed step keeps its error and says it failed, then what its compensation did
    assert charge[0].startswith("✗ charge   failed, compensated "), r.stdout
    assert "error: script exited with code 1" in charge[0]
    # the compensation calls are listed under the step
    assert reserve[1:] == ["↳ compensation: 1 call, succeeded"], r.stdout
    assert charge[1:] == ["↳ compensation: 2 calls, succeeded"], r.stdout
    assert notify[1:] == [], r.stdout
    # the stored statuses are unchanged: json still says rolled_back for all three
    doc = run_flow(SAGA).doc
    assert doc is not None
    assert {s["status"] for s in doc["steps"]} == {"rolled_back"}


@pytest.fixture
def db(pg_cluster: Cluster, tmp_path: Path) -> Iterator[str]:
    dsn = pg_cluster.create_database()
    path = tmp_path / "flows.yaml"
    path.write_text(
        """
handlers:
  - name: pack
    exec: echo '{}'
flows:
  - name: approval
    steps:
      - {type: human, name: approve}
      - pack
"""
    )
    try:
        ok("register", "-f", str(path), dsn=dsn)
        yield dsn
    finally:
        pg_cluster.drop_database(dsn)


def test_a_decision_shows_who_decided_and_the_comment(db: str) -> None:
    store = PostgresStore(db, max_size=2)
    try:
        instance_id = start(db, "approval-v1", {"order": 1})
        drive(
            Runtime(store, {}),
            instance_id,
            lambda: any(
                s.status is StepStatus.WAITING_DECISION for s in store.get_steps(instance_id)
            ),
        )
    finally:
        store.close()
    args = ("decide", str(instance_id), "confirm", "--by", "alice", "--comment", "ok up to 500")
    ok(*args, dsn=db)
    rows = _rows(ok("inspect", str(instance_id), dsn=db))
    assert rows["approve"][1:] == ["↳ confirmed by alice: ok up to 500"], rows
    doc = json.loads(ok("inspect", str(instance_id), "--output", "json", dsn=db))
    decided = [e for e in doc["events"] if e["step"] == "approve" and e["type"] == "step_completed"]
    assert decided[0]["payload"]["comment"] == "ok up to 500"


def test_a_piped_run_prints_a_line_per_change_while_it_runs(tmp_path: Path) -> None:
    """CI: stderr is not a terminal, so `run` tells each change as it happens, not only at the
    end (here the step `hold` runs until the test has seen its `running` line)."""
    go = tmp_path / "go"
    (tmp_path / "flow.yaml").write_text(
        f"""
handlers:
  - name: hold
    exec: |
      until [ -f {go} ]; do sleep 0.02; done
      echo '{{}}'
flows:
  - name: held
    steps: [hold]
"""
    )
    proc = subprocess.Popen(
        [*floxyctl_exe(), "run", "-f", "flow.yaml"],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
    )
    try:
        assert proc.stderr is not None
        first: list[str] = []
        while "hold running" not in first:
            line = proc.stderr.readline()
            assert line, first
            first.append(line.strip().split(" ", 1)[1])
        # the first check may find `hold` not claimed yet
        assert first in (
            ["instance 1 running", "hold running"],
            ["instance 1 running", "hold pending", "hold running"],
        ), first
        assert proc.poll() is None  # still running: the lines came before the end
        go.touch()
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert [ln.split(" ", 1)[1].split()[:2] for ln in err.splitlines()] == [
        ["hold", "completed"],
        ["instance", "1"],
    ], err
    assert "Workflow held-v1 (instance 1) completed" in out
