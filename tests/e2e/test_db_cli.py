"""floxyctl database mode, end to end: real `floxyctl` processes against a real PostgreSQL.

Workers are not floxyd here: where a test needs steps to run it drives an in-process `Runtime`
on the same database, which is exactly what a daemon elsewhere would do.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from floxy_core.errors import HandlerError
from floxy_core.ports import StepContext
from floxy_core.runtime import Runtime
from floxy_core.status import InstanceStatus, StepStatus
from floxy_core.storage.postgres import PostgresStore
from tests.pgcluster import Cluster

FLOXYCTL = str(Path(sys.executable).with_name("floxyctl"))
SECRET = "s3cr3t-XYZ"
FLOWS = """\
handlers:
  - name: pack
    exec: echo '{}'
flows:
  - name: approval
    steps:
      - {type: human, name: approve}
      - pack
  - name: gate
    steps:
      - {type: human, name: approve}
  - name: pay
    dlq: true
    steps:
      - {name: charge, handler: charge, max_retries: 0}
      - {name: ship, handler: ship}
"""
_DB_VARS = (
    "FLOXY_DSN",
    "FLOXY_CONFIG",
    "FLOXY_PROFILE",
    "PG_PASSWORD",
    "PGPASSWORD",
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGUSER",
    "PGDATABASE",
    "PGSERVICE",
)


def floxyctl(
    *args: str, dsn: str | None, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """One real floxyctl process; no terminal (new session), so it never prompts on a tty."""
    clean = {
        k: v for k, v in os.environ.items() if k not in _DB_VARS and not k.startswith("FLOXY_DB_")
    }
    clean["NO_COLOR"] = "1"
    clean["XDG_CONFIG_HOME"] = "/nonexistent/floxy-tests"  # no user's config.toml profiles
    if dsn is not None:
        clean["FLOXY_DSN"] = dsn
    return subprocess.run(
        [FLOXYCTL, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env={**clean, **(env or {})},
        timeout=60,
        start_new_session=True,
    )


def ok(*args: str, dsn: str, stdin: str = "") -> str:
    result = floxyctl(*args, dsn=dsn, stdin=stdin)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result.stdout


def as_json(*args: str, dsn: str) -> Any:
    return json.loads(ok(*args, "--output", "json", dsn=dsn))


def usage_error(result: subprocess.CompletedProcess[str]) -> str:
    """Exit 2 with exactly one `floxyctl: error:` line and no traceback; returns the line."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("floxyctl: error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[-1]


def start(dsn: str, workflow: str, data: Any = None) -> int:
    doc = as_json("start", "-o", workflow, dsn=dsn) if data is None else None
    if data is not None:
        doc = json.loads(
            ok("start", "-o", workflow, "--output", "json", dsn=dsn, stdin=json.dumps(data))
        )
    assert doc is not None and set(doc) == {"instance_id"}
    return int(doc["instance_id"])


@pytest.fixture
def flows(tmp_path: Path) -> Path:
    path = tmp_path / "flows.yaml"
    path.write_text(FLOWS)
    return path


def registered_database(
    pg_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory, flows: str
) -> Iterator[str]:
    """A database with `flows` registered, for a module's tests to share (a module fixture:
    `yield from registered_database(...)`).

    Made like `pg_dsn` (a clone of the migrated template) but once: a clone costs seconds, and
    each test only looks at the instances it starts itself.
    """
    dsn = pg_cluster.create_database()
    path = tmp_path_factory.mktemp("flows") / "flows.yaml"
    path.write_text(flows)
    try:
        ok("register", "-f", str(path), dsn=dsn)
        yield dsn
    finally:
        pg_cluster.drop_database(dsn)


@pytest.fixture(scope="module")
def db(pg_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from registered_database(pg_cluster, tmp_path_factory, FLOWS)


@pytest.fixture(scope="module")
def store(db: str) -> Iterator[PostgresStore]:
    """The workers' view of the shared database (what floxyd would hold)."""
    s = PostgresStore(db, max_size=4)
    try:
        yield s
    finally:
        s.close()


class Py:
    """A Python handler for the in-process worker."""

    def __init__(self, name: str, fn: Callable[[StepContext, Any], Any]) -> None:
        self.name = name
        self.fn = fn

    def __call__(self, ctx: StepContext, data: Any) -> Any:
        return self.fn(ctx, data)


def drive(runtime: Runtime, instance_id: int, until: Callable[[], bool]) -> None:
    """Run queue items one by one (like a daemon would) until `until()` holds."""
    deadline = time.monotonic() + 15
    while not until():
        assert time.monotonic() < deadline, runtime.store.get_steps(instance_id)
        if not runtime.run_once("test-worker"):
            time.sleep(0.02)


def step(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in doc["steps"] if s["name"] == name)


# -- register / start --------------------------------------------------------------------------


def test_register_is_idempotent_and_refuses_a_changed_version(pg_dsn: str, flows: Path) -> None:
    first = floxyctl("register", "-f", str(flows), dsn=pg_dsn)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [
        "registered approval-v1",
        "registered gate-v1",
        "registered pay-v1",
    ]
    # Handlers another worker provides are warnings, not errors.
    assert 'handler "charge" is not declared' in first.stderr

    again = floxyctl("register", "-f", str(flows), dsn=pg_dsn)
    assert again.stdout.splitlines() == [
        "unchanged approval-v1",
        "unchanged gate-v1",
        "unchanged pay-v1",
    ]

    # A handler's exec is the daemon's, not the flow's: changing it changes no definition.
    flows.write_text(FLOWS.replace("exec: echo '{}'", "exec: echo '{\"v\":2}'"))
    assert ok("register", "-f", str(flows), dsn=pg_dsn).splitlines()[0] == "unchanged approval-v1"

    flows.write_text(FLOWS.replace("- pack\n", "- pack\n      - pack_more\n", 1))
    line = usage_error(floxyctl("register", "-f", str(flows), dsn=pg_dsn))
    assert "approval-v1 is already registered with different content (" in line
    assert "step pack_more added" in line and 'step pack: next null → ["pack_more"]' in line
    assert "bump `version`" in line

    flows.write_text(FLOWS.replace("  - name: approval\n", "  - name: approval\n    version: 2\n"))
    doc = as_json("register", "-f", str(flows), dsn=pg_dsn)
    results = {w["id"]: w["result"] for w in doc["workflows"]}
    assert results == {"approval-v2": "registered", "gate-v1": "unchanged", "pay-v1": "unchanged"}
    listed = as_json("workflows", dsn=pg_dsn)["workflows"]
    assert [w["id"] for w in listed] == ["approval-v2", "approval-v1", "gate-v1", "pay-v1"]

    # A bare name starts the latest version.
    instance_id = start(pg_dsn, "approval")
    assert as_json("inspect", str(instance_id), dsn=pg_dsn)["workflow_id"] == "approval-v2"


def test_start_prints_the_id_and_takes_input(db: str, tmp_path: Path) -> None:
    before = as_json("status", dsn=db)["stats"]["total"]
    out = ok("start", "-o", "approval-v1", dsn=db)
    assert out.startswith("Workflow instance started with ID: ")
    first = int(out.rsplit(" ", 1)[1])

    second = start(db, "pay-v1", {"amount": 5})
    assert second > first
    (tmp_path / "in.json").write_text('{"amount": 7}')
    third = int(
        as_json("start", "-o", "pay-v1", "-i", str(tmp_path / "in.json"), dsn=db)["instance_id"]
    )
    assert as_json("inspect", str(second), dsn=db)["input"] == {"amount": 5}
    assert as_json("inspect", str(third), dsn=db)["input"] == {"amount": 7}

    bad = floxyctl("start", "-o", "pay-v1", dsn=db, stdin="{nope")
    assert "stdin is not valid JSON" in usage_error(bad)

    listed = as_json("status", "--workflow", "pay", "--limit", "2", dsn=db)
    assert [i["id"] for i in listed["instances"]] == [third, second]
    assert listed["stats"]["total"] == before + 3
    text = ok("status", "--status", "running", dsn=db)
    assert f"{first}   approval-v1" in text and f"Total: {before + 3} |" in text
    assert "unknown status 'nope'" in usage_error(floxyctl("status", "--status", "nope", dsn=db))


def test_start_unknown_workflow_is_a_usage_error(db: str) -> None:
    line = usage_error(floxyctl("start", "-o", "nope-v1", dsn=db))
    assert (
        line == "floxyctl: error: failed to start workflow: workflow definition 'nope-v1' not found"
    )


def test_start_wait_follows_a_worker_elsewhere(db: str, store: PostgresStore) -> None:
    handlers = {
        "charge": Py("charge", lambda ctx, data: {**data, "charged": True}),
        "ship": Py("ship", lambda ctx, data: {**data, "shipped": True}),
    }
    worker = Runtime(store, handlers, workers=2, poll_interval=0.05)
    worker.start()
    try:
        result = floxyctl(
            "start",
            "-o",
            "pay",
            "--wait",
            "--status-check-interval",
            "50ms",
            "--output",
            "json",
            dsn=db,
            stdin='{"amount": 3}',
        )
    finally:
        worker.stop()
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["status"] == "completed"
    assert doc["output"] == {"amount": 3, "charged": True, "shipped": True}

    # Nobody runs the human step here: --wait gives up with run's timeout code.
    waited = floxyctl("start", "-o", "gate", "--wait", "--completion-timeout", "300ms", dsn=db)
    assert waited.returncode == 3, waited.stdout + waited.stderr
    assert "Timed out after 0.3s" in waited.stdout


# -- cancel / abort / decide -------------------------------------------------------------------


def test_cancel_and_abort_a_running_instance(db: str) -> None:
    cancelled, aborted = start(db, "approval-v1"), start(db, "approval-v1")
    assert as_json("inspect", str(cancelled), dsn=db)["status"] == "running"

    out = ok(
        "cancel",
        "-o",
        str(cancelled),
        "--reason",
        "changed my mind",
        "--requested-by",
        "bob",
        dsn=db,
    )
    assert out.strip() == f"Workflow instance {cancelled} cancellation requested"
    doc = as_json("inspect", str(cancelled), dsn=db)
    assert doc["status"] == "cancelled"
    assert doc["error"] == "Cancelled by bob: changed my mind"
    types = [e["type"] for e in doc["events"]]
    assert types.index("cancellation_started") < types.index("workflow_cancelled")
    assert step(doc, "approve")["status"] == "skipped"

    out = ok("abort", "-o", str(aborted), dsn=db)
    assert out.strip() == f"Workflow instance {aborted} abort requested"
    doc = as_json("inspect", str(aborted), dsn=db)
    assert doc["status"] == "aborted"
    assert doc["error"].endswith(": Aborted via floxyctl")
    assert {"abort_started", "workflow_aborted"} <= {e["type"] for e in doc["events"]}

    again = floxyctl("cancel", "-o", str(cancelled), dsn=db)
    assert usage_error(again).endswith(
        f"workflow {cancelled} is already in terminal state: cancelled"
    )


def test_bad_and_unknown_instance_ids(db: str) -> None:
    for command in ("cancel", "abort"):
        line = usage_error(floxyctl(command, "-o", "abc", dsn=db))
        assert line == 'floxyctl: error: invalid instance ID: "abc"'
    assert "instance 999 not found" in usage_error(floxyctl("abort", "-o", "999", dsn=db))
    assert "instance 999 not found" in usage_error(floxyctl("inspect", "999", dsn=db))
    assert 'invalid instance ID: "1x"' in usage_error(floxyctl("inspect", "1x", dsn=db))


def test_decide_confirms_a_waiting_human_step(db: str, store: PostgresStore) -> None:
    worker = Runtime(store, {})
    approval, gate = start(db, "approval-v1", {"order": 1}), start(db, "gate-v1")
    for instance_id in (approval, gate):
        drive(
            worker,
            instance_id,
            lambda i=instance_id: any(
                s.status is StepStatus.WAITING_DECISION for s in store.get_steps(i)
            ),
        )

    # Too early: nothing to decide on an instance without a waiting human step.
    pay = start(db, "pay-v1")
    assert "has no human step" in usage_error(floxyctl("decide", str(pay), "confirm", dsn=db))

    out = ok(
        "decide",
        str(approval),
        "--step",
        "approve",
        "confirm",
        "--comment",
        "ok",
        "--by",
        "alice",
        dsn=db,
    )
    assert "approve confirmed by alice" in out
    doc = as_json("inspect", str(approval), dsn=db)
    assert doc["status"] == "running"
    assert step(doc, "approve")["status"] == "completed"
    # The next step is queued for a worker, with the human step's input.
    assert step(doc, "pack")["status"] == "pending"
    assert step(doc, "pack")["input"] == {"order": 1}

    assert as_json("decide", str(gate), "confirm", dsn=db)["status"] == "completed"
    line = usage_error(floxyctl("cancel", "-o", str(gate), dsn=db))
    assert line == (
        f"floxyctl: error: failed to cancel workflow: "
        f"workflow {gate} is already in terminal state: completed"
    )


# -- inspect / dlq -----------------------------------------------------------------------------


def test_inspect_json_has_the_shape_of_run(db: str, tmp_path: Path) -> None:
    one = tmp_path / "one.yaml"
    one.write_text(
        "handlers:\n  - name: pack\n    exec: echo '{}'\nflows:\n  - name: one\n    steps: [pack]\n"
    )
    run = floxyctl("run", "-f", str(one), "--output", "json", dsn=None)
    assert run.returncode == 0, run.stderr
    ran = json.loads(run.stdout)

    instance_id = start(db, "approval-v1")
    ok("cancel", "-o", str(instance_id), dsn=db)
    inspected = as_json("inspect", str(instance_id), dsn=db)
    assert set(inspected) == set(ran)
    assert set(inspected["steps"][0]) == set(ran["steps"][0])
    assert set(inspected["events"][0]) == set(ran["events"][0])
    assert inspected["instance_id"] == instance_id

    text = ok("inspect", str(instance_id), dsn=db)
    assert f"Workflow approval-v1 (instance {instance_id}) cancelled" in text
    assert "approve" in text and "skipped" in text


def test_dlq_list_and_requeue(db: str, store: PostgresStore, tmp_path: Path) -> None:
    def charge(ctx: StepContext, data: Any) -> Any:
        raise HandlerError("card declined", retryable=False)

    worker = Runtime(store, {"charge": Py("charge", charge)})
    instance_id = start(db, "pay-v1", {"amount": 5})
    drive(worker, instance_id, lambda: store.get_instance(instance_id).status is InstanceStatus.DLQ)

    records = [r for r in as_json("dlq", "list", dsn=db)["dlq"] if r["instance_id"] == instance_id]
    assert len(records) == 1
    record = records[0]
    assert (record["instance_id"], record["step"], record["input"]) == (
        instance_id,
        "charge",
        {"amount": 5},
    )
    assert "card declined" in record["error"]
    assert as_json("dlq", "show", str(record["id"]), dsn=db) == record
    assert "card declined" in ok("dlq", "show", str(record["id"]), dsn=db)
    assert as_json("dlq", "list", "--instance", "999", dsn=db) == {"dlq": []}
    assert f"{record['id']}" in ok("dlq", "list", "--instance", str(instance_id), dsn=db)
    inspected = as_json("inspect", str(instance_id), dsn=db)
    assert inspected["status"] == "dlq"
    assert set(inspected["dlq"][0]) == {"id", "step", "error", "reason"}
    assert "dlq requeue" in ok("inspect", str(instance_id), dsn=db)

    (tmp_path / "fixed.json").write_text('{"amount": 5, "card": "new"}')
    out = ok("dlq", "requeue", str(record["id"]), "-i", str(tmp_path / "fixed.json"), dsn=db)
    assert (
        out.strip()
        == f"DLQ record {record['id']} requeued: instance {instance_id} resumes at step charge"
    )
    doc = as_json("inspect", str(instance_id), dsn=db)
    assert doc["status"] == "running"
    assert step(doc, "charge")["status"] == "pending"
    assert step(doc, "charge")["input"] == {"amount": 5, "card": "new"}
    assert "dlq_requeued" in [e["type"] for e in doc["events"]]
    assert doc["dlq"] == []
    assert as_json("dlq", "list", "--instance", str(instance_id), dsn=db) == {"dlq": []}

    gone = floxyctl("dlq", "requeue", str(record["id"]), dsn=db)
    assert f"DLQ record {record['id']} not found" in usage_error(gone)
    assert f"DLQ record {record['id']} not found" in usage_error(
        floxyctl("dlq", "show", str(record["id"]), dsn=db)
    )


PAIR = """\
flows:
  - name: pair
    dlq: true
    steps:
      - type: parallel
        name: p
        tasks:
          - {name: x, handler: x, max_retries: 0}
          - {name: y, handler: y, max_retries: 0}
"""


def test_requeue_resumes_the_sibling_records_and_a_stale_one_is_a_clear_error(
    db: str, store: PostgresStore, tmp_path: Path
) -> None:
    (tmp_path / "pair.yaml").write_text(PAIR)
    ok("register", "-f", str(tmp_path / "pair.yaml"), dsn=db)
    calls: list[str] = []

    def x(ctx: StepContext, data: Any) -> Any:
        calls.append("x")
        if calls.count("x") == 1:  # y fails while x runs; then x fails too: two records
            while worker.run_once("other-worker"):
                pass
            raise HandlerError("x broke", retryable=False)
        return {"x": True}

    def y(ctx: StepContext, data: Any) -> Any:
        calls.append("y")
        if calls.count("y") == 1:
            raise HandlerError("y broke", retryable=False)
        return {"y": True}

    worker = Runtime(store, {"x": Py("x", x), "y": Py("y", y)})
    instance_id = start(db, "pair-v1")
    drive(worker, instance_id, lambda: len(store.get_dlq(instance_id)) == 2)
    listed = as_json("dlq", "list", "--instance", str(instance_id), dsn=db)["dlq"]
    by_step = {r["step"]: r["id"] for r in listed}
    assert set(by_step) == {"x", "y"}
    ok("dlq", "requeue", str(by_step["x"]), dsn=db)
    assert as_json("dlq", "list", "--instance", str(instance_id), dsn=db) == {"dlq": []}
    drive(worker, instance_id, lambda: store.get_instance(instance_id).status.terminal)
    assert store.get_instance(instance_id).status is InstanceStatus.COMPLETED
    stale = floxyctl("dlq", "requeue", str(by_step["y"]), dsn=db)
    assert f"DLQ record {by_step['y']} not found" in usage_error(stale)


def test_cancel_of_a_dlq_instance_removes_its_records(db: str, store: PostgresStore) -> None:
    def charge(ctx: StepContext, data: Any) -> Any:
        raise HandlerError("card declined", retryable=False)

    worker = Runtime(store, {"charge": Py("charge", charge)})
    instance_id = start(db, "pay-v1", {"amount": 7})
    drive(worker, instance_id, lambda: store.get_instance(instance_id).status is InstanceStatus.DLQ)
    ok("cancel", "-o", str(instance_id), dsn=db)
    drive(worker, instance_id, lambda: store.get_instance(instance_id).status.terminal)
    assert store.get_instance(instance_id).status is InstanceStatus.CANCELLED
    assert as_json("dlq", "list", "--instance", str(instance_id), dsn=db) == {"dlq": []}


def test_dlq_delete_and_list_alias(db: str, store: PostgresStore) -> None:
    def charge(ctx: StepContext, data: Any) -> Any:
        raise HandlerError("card declined", retryable=False)

    worker = Runtime(store, {"charge": Py("charge", charge)})
    instance_id = start(db, "pay-v1", {"amount": 9})
    drive(worker, instance_id, lambda: store.get_instance(instance_id).status is InstanceStatus.DLQ)
    (record,) = as_json("dlq", "list", "--instance", str(instance_id), dsn=db)["dlq"]
    assert ok("dlq", "delete", str(record["id"]), dsn=db).strip() == (
        f"DLQ record {record['id']} deleted"
    )
    assert as_json("dlq", "list", "--instance", str(instance_id), dsn=db) == {"dlq": []}
    assert "not found" in usage_error(floxyctl("dlq", "delete", str(record["id"]), dsn=db))
    listed = ok("list", "--status", "dlq", dsn=db)
    assert str(instance_id) in listed and "pay-v1" in listed


# -- migrations and connections ----------------------------------------------------------------


def test_migrate_status_and_fresh_database(db: str, pg_cluster: Cluster, tmp_path: Path) -> None:
    lines = ok("migrate", "--status", dsn=db).splitlines()[1:]
    assert len(lines) >= 2 and not any("pending" in line for line in lines)
    assert all(m["applied_at"] for m in as_json("migrate", "--status", dsn=db)["migrations"])
    assert ok("migrate", dsn=db).strip() == "Nothing to apply: the schema is up to date."

    import psycopg

    fresh = db.rpartition("dbname=")[0] + "dbname=fresh_" + db.rpartition("_")[2]
    with psycopg.connect(pg_cluster.admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{fresh.rpartition("=")[2]}"')
    try:
        pending = as_json("migrate", "--dry-run", dsn=fresh)["pending"]
        assert pending[:2] == ["001_schema.sql", "002_partman.sql"]
        assert "pending" in ok("migrate", "--status", dsn=fresh)  # dry run changed nothing
        gate = tmp_path / "gate.yaml"
        gate.write_text("flows:\n  - name: gate\n    steps:\n      - {type: human, name: ok}\n")
        # No command but migrate changes the schema: a write says to migrate, and does not.
        refused = floxyctl("register", "-f", str(gate), dsn=fresh)
        assert refused.returncode == 6, refused.stderr
        assert refused.stderr.strip().endswith(": run `floxyctl migrate`")
        assert "pending" in ok("migrate", "--status", dsn=fresh)
        assert len(ok("migrate", dsn=fresh).splitlines()) == len(pending)
        assert floxyctl("register", "-f", str(gate), dsn=fresh).returncode == 0
    finally:
        pg_cluster.drop_database(fresh)


def test_no_database_configured(tmp_path: Path) -> None:
    for args in (["status"], ["cancel", "-o", "1"], ["migrate", "--status"]):
        line = usage_error(floxyctl(*args, dsn=None))
        assert line.startswith("floxyctl: error: no database configured")
        assert "--dsn" in line and "FLOXY_DSN" in line and "FLOXY_DB_HOST" in line


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_refused_connection_is_one_line_without_the_password() -> None:
    port = _closed_port()
    attempts = [
        ({"FLOXY_DSN": f"host=127.0.0.1 port={port} user=postgres password={SECRET} dbname=x"}, ""),
        ({"FLOXY_DSN": f"postgresql://postgres:{SECRET}@127.0.0.1:{port}/x"}, ""),
        (
            {
                "FLOXY_DB_HOST": "127.0.0.1",
                "FLOXY_DB_PORT": str(port),
                "FLOXY_DB_USER": "postgres",
                "FLOXY_DB_NAME": "x",
                "PG_PASSWORD": SECRET,
            },
            "",
        ),
        ({}, SECRET + "\n"),  # -W reads it (no terminal here, so from stdin)
    ]
    for env, stdin in attempts:
        args = ["status"]
        if not env:
            args += ["--host", "127.0.0.1", "--port", str(port), "--database", "x", "-W"]
        result = floxyctl(*args, dsn=None, env=env, stdin=stdin)
        line = usage_error(result)
        assert "cannot connect to the database at 127.0.0.1" in line
        assert "Connection refused" in line
        assert SECRET not in result.stdout + result.stderr
    # A malformed DSN must not echo its pieces either.
    bad = floxyctl("status", dsn=f"host=127.0.0.1 password={SECRET} oops")
    assert "invalid DSN" in usage_error(bad)
    assert SECRET not in bad.stderr


def test_wrong_database_through_the_real_server_hides_the_password(pg_cluster: Cluster) -> None:
    base = pg_cluster.admin_dsn.rpartition("dbname=")[0]
    result = floxyctl("status", dsn=f"{base}password={SECRET} dbname=no_such_db")
    line = usage_error(result)
    assert 'database "no_such_db" does not exist' in line
    assert SECRET not in result.stdout + result.stderr


def test_scrub_masks_passwords_by_structure() -> None:
    """The password of a URL or conninfo is masked; the same letters elsewhere are left alone."""
    from floxyctl.db import DbSettings

    settings = DbSettings(conninfo="", where="h:5432/db")
    text = "e: postgresql://u:p%40ss@h/db\n\tpassword='p ss' e ?password=x&a=1"
    assert settings.scrub(text) == "e: postgresql://u:***@h/db password=*** e ?password=***&a=1"
