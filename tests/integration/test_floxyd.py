"""floxyd as real processes against real PostgreSQL (spec §8, §14; DECISIONS.md).

Each test starts `python -m floxyd FILE` with FLOXY_DSN pointing at a fresh database and a free
FLOXY_TECH_ADDR, drives it from the test process (PostgresStore + Runtime start and cancel
instances), and waits on conditions with deadlines.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from floxy_core.runtime import Runtime
from floxy_core.spec import load_workflow_file
from floxy_core.storage.postgres.store import PostgresStore
from floxyd.maintenance import LOCK_KEY as MAINTENANCE_LOCK
from tests.pgcluster import Cluster
from tests.support import free_port, wait_for

SECRET = "Sup3r-Secret-Pw"
"""Added to every DSN (the test cluster trusts local connections): it must never be printed."""
TERMINAL = ("completed", "failed", "cancelled", "aborted")


def http(url: str, method: str = "GET") -> tuple[int, str]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read().decode()


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOXY_", "PG"))}
    env.update(FLOXY_STATS_INTERVAL="0", FLOXY_MAINTENANCE_INTERVAL="0", FLOXY_NO_PLUGINS="1")
    env.update(extra)
    return env


def run_floxyd(args: list[str], env: dict[str, str], timeout: float = 30) -> tuple[int, str]:
    """Run floxyd to completion: (exit code, stdout + stderr)."""
    done = subprocess.run(
        [sys.executable, "-m", "floxyd", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return done.returncode, done.stdout + done.stderr


@dataclass
class Daemon:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, text: str, timeout: float = 15.0) -> None:
        wait_for(f"{text!r} in the floxyd log", lambda: text in self.log(), timeout)

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait_exit(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"floxyd did not exit within {timeout}s; log:\n{self.log()}")


@pytest.fixture
def floxyd(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    """Start floxyd processes; each is killed at teardown if still running."""
    started: list[Daemon] = []

    def start(file: Path, dsn: str, **env: str) -> Daemon:
        """floxyd on `file`, once /health/ready says 200."""
        port = free_port()
        log_path = tmp_path / f"floxyd-{len(started) + 1}.log"
        environment = base_env(
            FLOXY_DSN=f"{dsn} password={SECRET}", FLOXY_TECH_ADDR=f"127.0.0.1:{port}", **env
        )
        with log_path.open("wb") as log_file:
            proc = subprocess.Popen(
                [sys.executable, "-m", "floxyd", str(file)],
                env=environment,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        daemon = Daemon(proc, port, log_path)
        started.append(daemon)

        def is_ready() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"floxyd exited with {proc.returncode}:\n{daemon.log()}")
            try:
                return http(daemon.url("/health/ready"))[0] == 200
            except OSError:
                return False

        wait_for("floxyd to be ready", is_ready, timeout=30)
        return daemon

    yield start
    for daemon in started:
        if daemon.proc.poll() is None:
            daemon.proc.kill()
            daemon.proc.wait(10)
        assert SECRET not in daemon.log(), "the database password leaked into the log"


@pytest.fixture
def orphans(tmp_path: Path) -> Iterator[Path]:
    """A file where test scripts append their PID; those process groups are killed at the end."""
    path = tmp_path / "pids"
    yield path
    if path.exists():
        for line in path.read_text().split():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(os.getpgid(int(line)), signal.SIGKILL)  # its guard leads the group


@pytest.fixture
def store(pg_dsn: str) -> Iterator[PostgresStore]:
    s = PostgresStore(pg_dsn, max_size=2)
    try:
        yield s
    finally:
        s.close()


def write_yaml(tmp_path: Path, text: str, name: str = "flow.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def start(store: PostgresStore, workflow_id: str, data: Any = None) -> int:
    return Runtime(store, {}).start_instance(workflow_id, data if data is not None else {})


def wait_status(store: PostgresStore, instance_id: int, timeout: float = 20.0) -> str:
    def terminal() -> str | None:
        status = store.get_instance(instance_id).status.value
        return status if status in TERMINAL else None

    return str(wait_for(f"instance {instance_id} to finish", terminal, timeout))


def steps(store: PostgresStore, instance_id: int) -> dict[str, Any]:
    return {s.step_name: s for s in store.get_steps(instance_id)}


def pids(path: Path) -> list[int]:
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def parent_of(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return None
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))


def gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


TWO_STEPS = """\
handlers:
  - name: a
    exec: |
      # the floxyd that runs this: the parent of the script's guard (bash.py `_guarded`)
      echo "{\\"by\\": $(cut -d' ' -f4 /proc/$PPID/stat)}"
  - name: b
    exec: |
      echo "{\\"by\\": $(cut -d' ' -f4 /proc/$PPID/stat), \\"seen\\": $INPUT}"
flows:
  - name: demo
    steps:
      - {name: first, handler: a}
      - {name: second, handler: b}
"""


def long_step(pid_file: Path, seconds: int = 30, *, rerun_is_quick: bool = False) -> str:
    """A flow whose step `long` records its PID in `pid_file`, then sleeps `seconds`; with
    `rerun_is_quick` only its first run sleeps (a re-run after a takeover is quick)."""
    sleep = f"sleep {seconds}"
    if rerun_is_quick:
        sleep = f'if [ "$(wc -l < {pid_file})" -lt 2 ]; then sleep {seconds}; fi'
    return f"""\
handlers:
  - name: long
    exec: |
      echo $$ >> {pid_file}
      {sleep}
      echo '{{"slept": {seconds}}}'
  - name: after
    exec: |
      echo '{{"after": true}}'
flows:
  - name: slow
    steps:
      - {{name: long, handler: long, max_retries: 0}}
      - {{name: after, handler: after}}
"""


# --- configuration and start-up errors: exit 2 ---------------------------------------------


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "FLOXY_DB_HOST"),
        ({"FLOXY_DSN": "host=x dbname=y", "FLOXY_WORKERS": "abc"}, "FLOXY_WORKERS"),
        ({"FLOXY_DSN": "host=x dbname=y", "FLOXY_WORKERS": "0"}, "FLOXY_WORKERS"),
        ({"FLOXY_DSN": "host=x dbname=y", "FLOXY_SHUTDOWN_GRACE": "soon"}, "FLOXY_SHUTDOWN_GRACE"),
        ({"FLOXY_DSN": "host=x dbname=y", "FLOXY_LOG_FORMAT": "xml"}, "FLOXY_LOG_FORMAT"),
    ],
)
def test_bad_settings_exit_2_naming_the_variable(
    tmp_path: Path, env: dict[str, str], expected: str
) -> None:
    file = write_yaml(tmp_path, TWO_STEPS)
    code, output = run_floxyd([str(file)], base_env(**env))
    assert code == 2, output
    lines = output.strip().splitlines()
    assert lines and all(line.startswith("floxyd: error: ") for line in lines), output
    assert expected in output


def test_help_documents_settings_and_exit_codes() -> None:
    code, output = run_floxyd(["--help"], base_env())
    assert code == 0
    for text in ("FLOXY_WORKERS", "FLOXY_TECH_ADDR", "FLOXY_SHUTDOWN_GRACE", "Exit codes", "130"):
        assert text in output
    code, output = run_floxyd(["--version"], base_env())
    assert code == 0 and output.startswith("floxyd version ")


def test_bad_yaml_exits_2_with_file_and_line(tmp_path: Path) -> None:
    file = write_yaml(
        tmp_path,
        """\
        handlers:
          - name: a
            exec: |
              echo '{}'
        flows:
          - name: demo
            steps:
              - name: first
                handler: a
                retries: 3
        """,
    )
    # The file is checked before the database: an unreachable DSN does not matter.
    env = base_env(FLOXY_DSN=f"host=127.0.0.1 port={free_port()} dbname=x")
    code, output = run_floxyd([str(file)], env)
    assert code == 2, output
    assert f"{file}:10:" in output
    assert "retries" in output


def test_unreachable_database_exits_2_after_retrying_without_the_password(
    tmp_path: Path,
) -> None:
    file = write_yaml(tmp_path, TWO_STEPS)
    env = base_env(
        FLOXY_DB_HOST="127.0.0.1",
        FLOXY_DB_PORT=str(free_port()),
        FLOXY_DB_USER="floxy",
        FLOXY_DB_PASSWORD=SECRET,
        FLOXY_DB_NAME="floxy",
        FLOXY_CONNECT_TIMEOUT="1s",
        FLOXY_TECH_ADDR="off",
    )
    started = time.monotonic()
    code, output = run_floxyd([str(file)], env)
    assert code == 2, output
    assert time.monotonic() - started < 15
    assert "not reachable yet" in output and "retrying" in output
    assert "FLOXY_CONNECT_TIMEOUT" in output
    assert SECRET not in output
    assert "(with a password)" in output


def test_unknown_role_fails_at_once_without_the_password(
    tmp_path: Path, pg_cluster: Cluster
) -> None:
    file = write_yaml(tmp_path, TWO_STEPS)
    dsn = pg_cluster.admin_dsn.replace("user=postgres", "user=nobody_here")
    env = base_env(FLOXY_DSN=f"{dsn} password={SECRET}", FLOXY_TECH_ADDR="off")
    code, output = run_floxyd([str(file)], env)
    assert code == 2, output
    assert 'role "nobody_here" does not exist' in output
    assert "retrying" not in output
    assert SECRET not in output


def test_plain_libpq_variables_say_where_to_connect_as_for_floxyctl(
    tmp_path: Path, pg_cluster: Cluster
) -> None:
    """Only PGHOST/PGPORT/PGUSER/PGDATABASE set: floxyd connects where psql would (issue 15)."""
    from psycopg.conninfo import conninfo_to_dict

    file = write_yaml(tmp_path, TWO_STEPS)
    admin = conninfo_to_dict(pg_cluster.admin_dsn)
    env = base_env(
        PGHOST=str(admin["host"]),
        PGPORT=str(admin["port"]),
        PGUSER="nobody_from_pguser",
        PGDATABASE="postgres",
        FLOXY_TECH_ADDR="off",
    )
    code, output = run_floxyd([str(file)], env)
    assert code == 2, output
    assert 'role "nobody_from_pguser" does not exist' in output  # it reached that server
    assert f"host={admin['host']}" in output and "retrying" not in output


def test_changed_flow_under_the_same_version_is_refused(
    tmp_path: Path, pg_dsn: str, store: PostgresStore
) -> None:
    store.save_definition(load_workflow_file(write_yaml(tmp_path, TWO_STEPS, "v1.yaml")).flows[0])
    changed = write_yaml(tmp_path, TWO_STEPS.replace("handler: b", "handler: a"), "changed.yaml")
    env = base_env(FLOXY_DSN=pg_dsn, FLOXY_TECH_ADDR="off")
    code, output = run_floxyd([str(changed)], env)
    assert code == 2, output
    assert "demo-v1" in output and "bump `version`" in output


# --- running flows -------------------------------------------------------------------------


def test_runs_a_flow_end_to_end_and_serves_metrics_and_health(
    tmp_path: Path, pg_dsn: str, store: PostgresStore, floxyd: Callable[..., Daemon]
) -> None:
    daemon = floxyd(write_yaml(tmp_path, TWO_STEPS), pg_dsn, FLOXY_MAINTENANCE_INTERVAL="1h")
    log = daemon.log()
    assert "registered workflow demo-v1 (version 1)" in log
    assert "floxyd started with 3 workers" in log
    daemon.wait_log("partition maintenance done")

    instance = start(store, "demo-v1", {"n": 1})
    assert wait_status(store, instance) == "completed"
    rows = steps(store, instance)
    assert rows["first"].output == {"by": daemon.proc.pid}
    assert rows["second"].output == {"by": daemon.proc.pid, "seen": {"by": daemon.proc.pid}}

    assert http(daemon.url("/health")) == (200, '{"status": "healthy"}\n')
    assert http(daemon.url("/health/live"))[0] == 200
    assert http(daemon.url("/health/ready"))[0] == 200
    assert http(daemon.url("/nope"))[0] == 404
    assert http(daemon.url("/health"), method="POST")[0] == 405

    def metrics_show_the_run() -> str | None:
        status, text = http(daemon.url("/metrics"))
        assert status == 200
        return text if 'floxy_workflows_completed_total{workflow="demo-v1"} 1.0' in text else None

    text = wait_for("the completed run in /metrics", metrics_show_the_run, timeout=5)
    for line in (
        'floxy_steps_started_total{step="first",workflow="demo-v1"} 1.0',
        'floxy_steps_completed_total{step="second",workflow="demo-v1"} 1.0',
        'floxy_step_duration_seconds_count{kind="task",step="first",workflow="demo-v1"} 1.0',
        "floxy_queue_ready_steps 0.0",
        "floxy_workers 3.0",
        "floxy_workers_busy 0.0",
        "floxy_database_errors_total 0.0",
    ):
        assert line in text
    assert "floxy_queue_oldest_ready_age_seconds" in text
    assert "instance" not in text.replace("floxy_instances_active", "")

    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit(15) == 0
    assert "floxyd stopped" in daemon.log()


def test_two_daemons_with_different_handlers_complete_a_flow_together(
    tmp_path: Path, pg_dsn: str, store: PostgresStore, floxyd: Callable[..., Daemon]
) -> None:
    file = write_yaml(tmp_path, TWO_STEPS)
    hourly = {"FLOXY_MAINTENANCE_INTERVAL": "1h"}
    # While another daemon holds the maintenance lock, partition maintenance is skipped.
    with psycopg.connect(pg_dsn, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (MAINTENANCE_LOCK,))
        only_a = floxyd(file, pg_dsn, FLOXY_HANDLERS="a", **hourly)
        only_b = floxyd(file, pg_dsn, FLOXY_HANDLERS="b", FLOXY_LOG_FORMAT="json", **hourly)
        only_a.wait_log("partition maintenance skipped: another daemon is running it")
        only_b.wait_log("partition maintenance skipped: another daemon is running it")
    assert "handler b (used by demo-v1) is not provided by this daemon" in only_a.log()
    assert "already registered, unchanged" in only_b.log()

    instances = [start(store, "demo-v1", {"n": n}) for n in range(2)]
    for instance in instances:
        assert wait_status(store, instance) == "completed"
        rows = steps(store, instance)
        assert rows["first"].output["by"] == only_a.proc.pid
        assert rows["second"].output["by"] == only_b.proc.pid

    records = [json.loads(line) for line in only_b.log().splitlines() if line.strip()]
    assert {"time", "level", "logger", "message"} <= set(records[0])
    assert any("handler a (used by demo-v1)" in r["message"] for r in records)
    # one info line per step transition of a call, with its fields
    calls = [r for r in records if r["logger"] == "floxyd.steps" and "attempt" in r]
    assert {(r["instance_id"], r["step"], r["status"], r["attempt"]) for r in calls} == {
        (instance, "second", "completed", 1) for instance in instances
    }
    assert all(r["level"] == "info" and r["duration_ms"] >= 0 for r in calls)
    # and one per instance transition this daemon made (it ran the last step of each)
    ended = [r for r in records if r["logger"] == "floxyd.steps" and "event" in r]
    assert {(r["instance_id"], r["event"], r["status"]) for r in ended} == {
        (instance, "workflow_completed", "completed") for instance in instances
    }


def test_sigterm_lets_the_running_step_finish_then_exits_0(
    tmp_path: Path,
    pg_dsn: str,
    store: PostgresStore,
    floxyd: Callable[..., Daemon],
    orphans: Path,
) -> None:
    daemon = floxyd(write_yaml(tmp_path, long_step(orphans, 2)), pg_dsn)
    instance = start(store, "slow-v1")
    wait_for("the long step to start", lambda: pids(orphans))
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit(15) == 0
    rows = steps(store, instance)
    assert rows["long"].status.value == "completed"
    assert rows["long"].output == {"slept": 2}
    assert "after" not in rows or rows["after"].status.value == "pending"
    assert "no new steps are claimed; 1 running step(s)" in daemon.log()


def test_grace_period_over_releases_the_step_for_another_daemon(
    tmp_path: Path,
    pg_dsn: str,
    store: PostgresStore,
    floxyd: Callable[..., Daemon],
    orphans: Path,
) -> None:
    file = write_yaml(tmp_path, long_step(orphans, 30, rerun_is_quick=True))
    first = floxyd(file, pg_dsn, FLOXY_SHUTDOWN_GRACE="500ms")
    instance = start(store, "slow-v1")
    wait_for("the long step to start", lambda: pids(orphans))
    first.signal(signal.SIGTERM)
    assert first.wait_exit(15) == 0
    assert "grace period over: releasing long (instance" in first.log()
    assert wait_for("the interrupted script to stop", lambda: gone(pids(orphans)[0]), 3)
    # The step was handed back, not failed, and nothing is left running: another daemon runs it
    # at once (no lease wait).
    assert steps(store, instance)["long"].status.value == "pending"
    floxyd(file, pg_dsn)
    assert wait_status(store, instance, timeout=10) == "completed"
    assert len(pids(orphans)) == 2


def test_a_second_signal_exits_at_once(
    tmp_path: Path,
    pg_dsn: str,
    store: PostgresStore,
    floxyd: Callable[..., Daemon],
    orphans: Path,
) -> None:
    daemon = floxyd(write_yaml(tmp_path, long_step(orphans, 30)), pg_dsn)
    start(store, "slow-v1")
    wait_for("the long step to start", lambda: pids(orphans))
    daemon.signal(signal.SIGTERM)
    daemon.wait_log("no new steps are claimed")
    sent = time.monotonic()
    daemon.signal(signal.SIGINT)
    assert daemon.wait_exit(5) == 130
    assert time.monotonic() - sent < 2


def test_leases_are_renewed_and_a_killed_daemons_step_is_taken_over(
    tmp_path: Path,
    pg_dsn: str,
    store: PostgresStore,
    floxyd: Callable[..., Daemon],
    orphans: Path,
) -> None:
    file = write_yaml(tmp_path, long_step(orphans, 30, rerun_is_quick=True))
    daemons = [floxyd(file, pg_dsn, FLOXY_LEASE="2s") for _ in range(2)]
    instance = start(store, "slow-v1")
    script = wait_for("the long step to start", lambda: pids(orphans))[0]
    guard = parent_of(script)  # bash.py `_guarded`
    runner = next(d for d in daemons if guard is not None and d.proc.pid == parent_of(guard))
    # The runner renews its lease: for two lease periods nobody else starts the step. (A 1 s
    # lease was too tight on a loaded 2-core machine.)
    quiet_until = time.monotonic() + 4.0
    while time.monotonic() < quiet_until:
        assert len(pids(orphans)) == 1
        time.sleep(0.1)
    runner.proc.kill()
    runner.wait_exit(5)
    killed = time.monotonic()
    assert wait_status(store, instance, timeout=15) == "completed"
    assert len(pids(orphans)) == 2
    second_guard = parent_of(pids(orphans)[1])
    others = [d.proc.pid for d in daemons if d is not runner]
    assert second_guard is None or parent_of(second_guard) in (None, *others)
    assert time.monotonic() - killed >= 0.3  # taken over only once the lease has expired


def test_cancel_interrupts_the_running_handler_within_a_second(
    tmp_path: Path,
    pg_dsn: str,
    store: PostgresStore,
    floxyd: Callable[..., Daemon],
    orphans: Path,
) -> None:
    daemon = floxyd(
        write_yaml(tmp_path, long_step(orphans, 30)), pg_dsn, FLOXY_STATS_INTERVAL="300ms"
    )
    instance = start(store, "slow-v1")
    pid = wait_for("the long step to start", lambda: pids(orphans))[0]
    daemon.wait_log(f"active instance {instance}: workflow slow-v1, status running, step long")
    cancelled = time.monotonic()
    Runtime(store, {}).cancel(instance, "test", "no longer needed")
    wait_for("the handler's process to be killed", lambda: gone(pid), timeout=1.5)
    assert time.monotonic() - cancelled < 1.5
    assert wait_status(store, instance, timeout=10) == "cancelled"
    assert steps(store, instance)["long"].status.value == "rolled_back"  # started: interrupted


def test_floxyctl_cancel_compensates_the_step_floxyd_runs_once_its_handler_is_gone(
    tmp_path: Path,
    pg_dsn: str,
    store: PostgresStore,
    floxyd: Callable[..., Daemon],
    orphans: Path,
) -> None:
    undone = tmp_path / "undone"
    flow = f"""\
handlers:
  - name: long
    exec: |
      echo $$ >> {orphans}
      sleep 30
      echo '{{}}'
  - name: undo
    exec: |
      pid=$(head -1 {orphans})
      state=$(awk '{{print $3}}' /proc/"$pid"/stat 2>/dev/null || true)  # a zombie runs nothing
      if [ -n "$state" ] && [ "$state" != Z ]; then echo "undo while $pid runs" >> {undone}; fi
      echo "undo for=$FLOXY_STEP_NAME" >> {undone}
      echo '{{}}'
flows:
  - name: slow
    steps:
      - {{name: long, handler: long, max_retries: 0, on_failure: undo}}
"""
    floxyd(write_yaml(tmp_path, flow), pg_dsn)
    instance = start(store, "slow-v1")
    wait_for("the long step to start", lambda: pids(orphans))
    cancel = subprocess.run(
        [str(Path(sys.executable).with_name("floxyctl")), "cancel", "-o", str(instance)],
        env={**base_env(FLOXY_DSN=pg_dsn)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cancel.returncode == 0, cancel.stderr
    assert wait_status(store, instance, timeout=15) == "cancelled"
    assert undone.read_text().splitlines() == ["undo for=long"]
    assert steps(store, instance)["long"].status.value == "rolled_back"


def test_health_turns_503_when_the_database_is_gone(
    tmp_path: Path, pg_dsn: str, pg_cluster: Cluster, floxyd: Callable[..., Daemon]
) -> None:
    daemon = floxyd(write_yaml(tmp_path, TWO_STEPS), pg_dsn)
    assert http(daemon.url("/health"))[0] == 200
    pg_cluster.drop_database(pg_dsn)
    status, body = http(daemon.url("/health"))
    assert status == 503, body
    payload = json.loads(body)
    assert payload["status"] == "unhealthy"
    assert payload["error"].startswith("database connection failed: ")
    assert SECRET not in body
    assert http(daemon.url("/health/ready"))[0] == 503
    assert http(daemon.url("/health/live"))[0] == 200
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit(20) == 0


def test_aborts_by_floxyctl_are_counted_in_the_metrics_of_floxyd(
    tmp_path: Path,
    pg_dsn: str,
    store: PostgresStore,
    floxyd: Callable[..., Daemon],
    orphans: Path,
) -> None:
    flow = long_step(orphans, 30) + textwrap.indent(
        textwrap.dedent("""\
        - name: approval
          steps:
            - {type: human, name: approve}
        """),
        "  ",
    )
    daemon = floxyd(write_yaml(tmp_path, flow), pg_dsn)
    floxyctl = str(Path(sys.executable).with_name("floxyctl"))

    def ctl(*args: str) -> None:
        done = subprocess.run(
            [floxyctl, *args],
            env=base_env(FLOXY_DSN=pg_dsn),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr

    slow = start(store, "slow-v1")
    wait_for("the long step to start", lambda: pids(orphans))
    ctl("abort", "-o", str(slow), "--reason", "runaway")
    assert wait_status(store, slow) == "aborted"
    approval = start(store, "approval-v1")
    wait_for(
        "the approval to wait",
        lambda: steps(store, approval)["approve"].status.value == "waiting_decision",
    )
    ctl("decide", str(approval), "reject")
    assert wait_status(store, approval) == "aborted"

    def aborted() -> dict[str, str]:
        status, text = http(daemon.url("/metrics"))
        assert status == 200
        prefix = "floxy_workflows_aborted_total{"
        return dict(line.rsplit(" ", 1) for line in text.splitlines() if line.startswith(prefix))

    expected = {
        'floxy_workflows_aborted_total{workflow="approval-v1"}': "1.0",
        'floxy_workflows_aborted_total{workflow="slow-v1"}': "1.0",
    }
    assert aborted() == expected
    # A counter never goes down: not when the aborted instance's partition is dropped at the
    # end of its retention.
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM workflows.workflow_instances WHERE id = %s", (slow,))
    assert aborted() == expected
