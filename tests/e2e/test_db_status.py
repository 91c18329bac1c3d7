"""`floxyctl status` (the instance listing), end to end against a real PostgreSQL.

Like test_db_cli.py, the workers are an in-process `Runtime` on the same database. Each test
gets its own database, so the listing holds exactly the instances the test made.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from floxy_core.errors import HandlerError
from floxy_core.runtime import Runtime
from floxy_core.status import InstanceStatus, StepStatus
from floxy_core.storage.postgres import PostgresStore
from tests.e2e.test_db_cli import Py, as_json, drive, floxyctl, ok, start, usage_error

FLOWS = """\
flows:
  - name: gate
    steps:
      - {type: human, name: approve}
  - name: boom
    steps:
      - {name: explode, handler: explode, max_retries: 0}
  - name: idle
    steps:
      - {name: wait_here, handler: nobody}
"""
UTC_SECOND = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


def _explode(ctx: Any, data: Any) -> Any:
    raise HandlerError("it broke", retryable=False)


@pytest.fixture
def db(pg_dsn: str, tmp_path: Path) -> str:
    path = tmp_path / "flows.yaml"
    path.write_text(FLOWS)
    ok("register", "-f", str(path), dsn=pg_dsn)
    return pg_dsn


@pytest.fixture
def store(db: str) -> Iterator[PostgresStore]:
    s = PostgresStore(db, max_size=2)
    try:
        yield s
    finally:
        s.close()


def _listed(*args: str, dsn: str) -> dict[int, dict[str, Any]]:
    return {i["id"]: i for i in as_json("status", *args, dsn=dsn)["instances"]}


def _waiting(store: PostgresStore, instance_id: int) -> bool:
    return any(s.status is StepStatus.WAITING_DECISION for s in store.get_steps(instance_id))


def test_status_filter_ignores_case_and_knows_waiting(db: str, store: PostgresStore) -> None:
    worker = Runtime(store, {"explode": Py("explode", _explode)})
    waiting = start(db, "gate-v1")
    drive(worker, waiting, lambda: _waiting(store, waiting))
    failed = start(db, "boom-v1")
    drive(worker, failed, lambda: store.get_instance(failed).status is InstanceStatus.FAILED)
    running = start(db, "idle-v1")

    assert list(_listed("--status", "FAILED", dsn=db)) == [failed]
    assert list(_listed("--status", " Failed ", dsn=db)) == [failed]
    # A human step waiting for a decision: listed as `waiting`, not `running`.
    assert list(_listed("--status", "running", dsn=db)) == [running]
    by_waiting = _listed("--status", "WAITING", dsn=db)
    assert list(by_waiting) == [waiting]
    assert by_waiting[waiting]["status"] == "waiting"
    assert by_waiting[waiting]["waiting_steps"] == ["approve"]
    everything = _listed(dsn=db)
    assert {i: d["status"] for i, d in everything.items()} == {
        waiting: "waiting",
        failed: "failed",
        running: "running",
    }
    assert everything[running]["waiting_steps"] == []

    text = ok("status", dsn=db)
    row = next(line for line in text.splitlines() if line.startswith(f"{waiting} "))
    assert row.split()[1:3] == ["gate-v1", "waiting"], text
    assert "| Running: 1 | Waiting: 1 |" in text, text
    stats = as_json("status", dsn=db)["stats"]
    assert (stats["running"], stats["waiting"], stats["active"]) == (1, 1, 2)

    line = usage_error(floxyctl("status", "--status", "nope", dsn=db))
    assert "unknown status 'nope'" in line and "waiting" in line


def test_an_unknown_workflow_is_a_usage_error_naming_the_known_ones(db: str) -> None:
    gate = start(db, "gate-v1")
    assert list(_listed("--workflow", "gate", dsn=db)) == [gate]
    assert list(_listed("--workflow", "gate-v1", dsn=db)) == [gate]
    assert _listed("--workflow", "boom", dsn=db) == {}  # registered, no instance: not an error
    assert "No instances match." in ok("status", "--workflow", "idle-v1", dsn=db)

    for wanted in ("nope", "gate-v9"):
        result = floxyctl("status", "--workflow", wanted, dsn=db)
        assert result.stdout == ""
        assert usage_error(result) == (
            f"floxyctl: error: --workflow: workflow '{wanted}' is not registered "
            "(registered: boom, gate, idle)"
        )
        assert result.stderr.count("\n") == 1, result.stderr


def test_an_unknown_workflow_with_nothing_registered_says_how_to_register(pg_dsn: str) -> None:
    line = usage_error(floxyctl("status", "--workflow", "gate", dsn=pg_dsn))
    assert line == (
        "floxyctl: error: --workflow: workflow 'gate' is not registered "
        "(no workflow is registered: floxyctl register -f FILE)"
    )


def _utc_second(iso_ms: str) -> str:
    """`2026-12-02T13:45:00.123Z` (JSON) → `2026-12-02T13:45:00Z` (text)."""
    assert iso_ms.endswith("Z") and iso_ms[19] == ".", iso_ms
    return iso_ms[:19] + "Z"


def test_text_times_are_utc_iso_whatever_the_local_zone(db: str, store: PostgresStore) -> None:
    gate = start(db, "gate-v1")
    drive(Runtime(store, {}), gate, lambda: _waiting(store, gate))
    far_from_utc = {"TZ": "Pacific/Kiritimati"}  # UTC+14: never the same date and hour as UTC
    doc = as_json("status", dsn=db)["instances"][0]

    result = floxyctl("status", dsn=db, env=far_from_utc)
    assert result.returncode == 0, result.stderr
    header, row = result.stdout.splitlines()[:2]
    assert header.split() == ["ID", "WORKFLOW", "STATUS", "CREATED", "UPDATED"]
    assert row.split()[3:] == [_utc_second(doc["created_at"]), _utc_second(doc["updated_at"])]

    result = floxyctl("workflows", dsn=db, env=far_from_utc)
    created = {w["id"]: w["created_at"] for w in as_json("workflows", dsn=db)["workflows"]}
    rows = {line.split()[0]: line.split()[-1] for line in result.stdout.splitlines()[1:]}
    assert rows == {wid: _utc_second(at) for wid, at in created.items()}, result.stdout

    result = floxyctl("inspect", str(gate), dsn=db, env=far_from_utc)
    assert result.returncode == 0, result.stderr
    line = result.stdout.splitlines()[1]
    assert re.fullmatch(
        f"Created {_utc_second(doc['created_at'])} · started {UTC_SECOND} · "
        f"updated {_utc_second(doc['updated_at'])} · completed -",
        line,
    ), result.stdout


def test_since_until_and_pages(db: str, store: PostgresStore) -> None:
    runtime = Runtime(store, {})
    ids = [runtime.start_instance("idle-v1", {"n": n}) for n in range(5)]
    newest_first = ids[::-1]
    created = {i: d["created_at"] for i, d in _listed(dsn=db).items()}
    middle = created[ids[2]]

    # Pages of --limit instances; the footer says when another page follows.
    assert list(_listed("--limit", "2", dsn=db)) == newest_first[:2]
    assert list(_listed("--limit", "2", "--page", "2", dsn=db)) == newest_first[2:4]
    assert list(_listed("--limit", "2", "--page", "3", dsn=db)) == newest_first[4:]
    assert [
        (d["page"], d["next_page"])
        for d in (as_json("status", "--limit", "2", "--page", str(p), dsn=db) for p in (1, 3, 4))
    ] == [(1, 2), (3, None), (4, None)]
    text = ok("status", "--limit", "2", dsn=db)
    assert "Page 1: instances 1-2; more with --page 2." in text, text
    last = ok("status", "--limit", "2", "--page", "3", dsn=db)
    assert "Page 3: instances 5-5; the last page." in last, last
    assert "No instances on page 4." in ok("status", "--limit", "2", "--page", "4", dsn=db)
    assert "Page " not in ok("status", dsn=db)  # one page: no page line

    # --since is inclusive, --until exclusive; a time without a zone is UTC.
    assert list(_listed("--since", middle, dsn=db)) == newest_first[:3]
    assert list(_listed("--until", middle, dsn=db)) == newest_first[3:]
    assert list(_listed("--since", middle.removesuffix("Z"), dsn=db)) == newest_first[:3]
    shifted = datetime.fromisoformat(middle).astimezone(timezone(timedelta(hours=14)))
    assert list(_listed("--until", shifted.isoformat(), dsn=db)) == newest_first[3:]
    page = _listed("--since", middle, "--limit", "2", "--page", "2", dsn=db)
    assert list(page) == newest_first[2:3]

    # A duration means that long ago, by the database's clock.
    assert list(_listed("--since", "1h", dsn=db)) == newest_first
    assert list(_listed("--since", "7d", "--until", "1h", dsn=db)) == []
    assert list(_listed("--until", "1d12h", dsn=db)) == []

    for args, words in (
        (("--since", "2026"), ("--since: invalid time '2026'", "2h")),
        (("--until", "soon"), ("--until: invalid time 'soon'",)),
        (("--since", "1h", "--until", "2h"), ("--since must be before --until",)),
        (("--since", middle, "--until", middle), ("--since must be before --until",)),
        (("--since", "99999999999999999999d"), ("too far back",)),
    ):
        line = usage_error(floxyctl("status", *args, dsn=db))
        assert all(w in line for w in words), (args, line)
    zero = floxyctl("status", "--page", "0", dsn=db)
    assert zero.returncode == 2 and "--page" in zero.stderr, zero.stderr


def test_start_wait_without_a_worker_says_so_once_and_keeps_waiting(db: str) -> None:
    began = time.monotonic()
    result = floxyctl("start", "-o", "idle-v1", "--wait", "--completion-timeout", "8s", dsn=db)
    assert result.returncode == 3, (result.stdout, result.stderr)
    assert time.monotonic() - began >= 8  # the hint did not end the wait
    hints = [line for line in result.stderr.splitlines() if "no worker has picked up" in line]
    assert len(hints) == 1, result.stderr
    instance_id = int(result.stdout.splitlines()[0].rsplit(" ", 1)[1])
    assert re.fullmatch(
        f"floxyctl: warning: no worker has picked up instance {instance_id} after [56]s — "
        "is floxyd running against this database\\?",
        hints[0],
    ), hints
    assert "Timed out after 8s" in result.stdout + result.stderr

    # A timeout shorter than the hint's delay still gets the hint, with the time it waited.
    short = floxyctl("start", "-o", "idle-v1", "--wait", "--completion-timeout", "1s", dsn=db)
    assert short.returncode == 3, (short.stdout, short.stderr)
    assert "no worker has picked up" in short.stderr and " after 1s " in short.stderr


def test_start_wait_with_a_worker_gives_no_hint(db: str, store: PostgresStore) -> None:
    worker = Runtime(store, {}, workers=1, poll_interval=0.05)
    worker.start()
    try:
        result = floxyctl("start", "-o", "gate-v1", "--wait", dsn=db)
    finally:
        worker.stop()
    assert result.returncode == 4, (result.stdout, result.stderr)  # paused for the human step
    assert "no worker" not in result.stderr, result.stderr
