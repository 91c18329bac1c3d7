"""The "Done means" list of issue 5 (floxyd), proven with real processes: floxyd daemons
(`python -m floxyd`), the real `floxyctl` console script, real bash handlers and a real
PostgreSQL (the throwaway test cluster; a private restartable one for the restart test).

* every example flow runs to its documented end through `floxyctl register` / `start` /
  `decide` against floxyd: the end-to-end tests of `floxyctl run` in tests/e2e/test_examples.py
  are replayed with their `floxyctl_run` swapped for a database-mode driver, so the inputs,
  decisions and expected end states are theirs;
* three daemons run 300 instances and a ledger written by the handler proves every call is
  counted once per attempt;
* kill -9 in the middle of a step: another daemon takes over after the lease with the same
  idempotency key; a `no_idempotent` step is failed and compensated instead of re-run;
* PostgreSQL restarted under load: `/health` says 503, then 200, the daemons stay up and every
  instance ends;
* SIGTERM during a 5-second step: the step completes, nothing is left `running`.

The ledger handler and the daemon wrapper live in floxyd_procs.py.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import signal
import subprocess
import textwrap
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import tests.e2e.test_examples as examples_e2e
from floxy_core.runtime import Runtime
from floxy_core.storage.postgres.store import PostgresStore
from floxyctl.run_cmd import _exit_code
from tests.chaos.chaos import PgServer
from tests.integration.floxyd_procs import (
    WORK_SH,
    Call,
    Floxyd,
    all_calls,
    duplicate_starts,
    handler_pids,
    kill_handler_groups,
    spawn_floxyd,
)
from tests.integration.test_floxyd import TERMINAL, gone, long_step, pids
from tests.pgcluster import Cluster
from tests.support import wait_for

# --------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


@pytest.fixture
def script(workdir: Path) -> Path:
    path = workdir / "work.sh"
    path.write_text(WORK_SH)
    return path


@pytest.fixture
def daemons(workdir: Path, script: Path) -> Iterator[list[Floxyd]]:
    """The daemons a test starts (append them); killed at teardown, with their orphans."""
    started: list[Floxyd] = []
    yield started
    for daemon in started:
        if daemon.alive():
            daemon.proc.kill()
            daemon.proc.wait(10)
    kill_handler_groups(all_calls(started), script)


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def db_rows(dsn: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return list(conn.execute(sql, params).fetchall())


def statuses(dsn: str) -> dict[int, str]:
    rows = db_rows(dsn, "SELECT id, status FROM workflows.workflow_instances")
    return {int(i): str(s) for i, s in rows}


def step_rows(dsn: str) -> dict[int, dict[str, dict[str, Any]]]:
    """instance → step name → {type, status, retry_count, key, error}."""
    rows: dict[int, dict[str, dict[str, Any]]] = defaultdict(dict)
    for iid, name, type_, status, retries, key, error in db_rows(
        dsn,
        "SELECT instance_id, step_name, step_type, status, retry_count, idempotency_key, error "
        "FROM workflows.workflow_steps ORDER BY id",
    ):
        rows[iid][name] = {
            "type": type_, "status": status, "retry_count": retries, "key": str(key),
            "error": error,
        }  # fmt: skip
    return rows


def wait_terminal(dsn: str, ids: list[int], timeout: float) -> dict[int, str]:
    def settled() -> dict[int, str] | None:
        now = statuses(dsn)
        return now if all(now.get(i) in TERMINAL for i in ids) else None

    deadline = time.monotonic() + timeout
    while True:
        now = settled()
        if now is not None:
            return now
        if time.monotonic() > deadline:
            left = {i: s for i, s in statuses(dsn).items() if s not in TERMINAL}
            pytest.fail(f"{len(left)} instances not terminal after {timeout}s: {left}")
        time.sleep(0.2)


def leftovers(dsn: str, ids: list[int]) -> list[tuple[Any, ...]]:
    """Steps still running or pending, and queue rows, of the given instances."""
    found = db_rows(
        dsn,
        "SELECT instance_id, step_name, status FROM workflows.workflow_steps "
        "WHERE instance_id = ANY(%s) AND status IN ('running', 'pending')",
        ids,
    )
    found += db_rows(
        dsn,
        "SELECT instance_id, step_id, 'queued' FROM workflows.workflow_queue "
        "WHERE instance_id = ANY(%s)",
        ids,
    )
    return found


def by_step(calls: list[Call]) -> dict[tuple[int, str, bool], list[Call]]:
    grouped: dict[tuple[int, str, bool], list[Call]] = defaultdict(list)
    for c in calls:
        grouped[(c.instance, c.step, c.compensation)].append(c)
    return grouped


# --------------------------------------------------------------------------------------------
# 1. Every example flow through floxyctl register / start / decide against floxyd

CTL_TIMEOUT = 60
DB_MODE_UNSUPPORTED = {
    "test_retries_needs_flow_choice": (
        "checks `floxyctl run`'s usage error when a file has several flows and --flow is "
        "missing; in database mode `start -o` always names the flow, so there is no end state "
        "to reach (both flows of retries.yaml are run by the other retries tests)"
    ),
}
"""End-to-end example tests that are not about an example's end state."""


def _example_cases() -> list[str]:
    """Every test of test_examples.py that runs an example with `floxyctl_run`, grouped by the
    example file it starts with (so that one floxyd per file serves consecutive cases)."""
    cases = []
    for name, fn in vars(examples_e2e).items():
        if not name.startswith("test_") or not callable(fn) or name in DB_MODE_UNSUPPORTED:
            continue
        source = inspect.getsource(fn)
        if "floxyctl_run(" not in source:
            continue
        assert list(inspect.signature(fn).parameters) == ["tmp_path"], name
        cases.append(name)
    return sorted(cases, key=lambda n: (_first_example(n), n))


def _first_example(test_name: str) -> str:
    found = re.search(r'"(\w+\.yaml)"', inspect.getsource(getattr(examples_e2e, test_name)))
    return found.group(1) if found else ""


EXAMPLE_CASES = _example_cases()


def _ctl_env(dsn: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOXY_", "PG"))}
    env["FLOXY_DSN"] = dsn
    return env


class ExamplesInDatabaseMode:
    """One database; one floxyd at a time, serving the example file the current case uses;
    `run` stands in for test_examples.floxyctl_run and drives floxyctl in database mode."""

    def __init__(self, dsn: str, workdir: Path) -> None:
        self.dsn = dsn
        self.workdir = workdir
        self.daemon: Floxyd | None = None
        self.serving: str | None = None
        self.flows: dict[str, list[dict[str, Any]]] = {}
        self.examples_run: set[str] = set()
        self.served = 0

    def ctl(self, *args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [*examples_e2e.FLOXYCTL, *args],
            cwd=cwd,
            env=_ctl_env(self.dsn),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=CTL_TIMEOUT,
        )
        if check:
            assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        return proc

    def serve(self, example: str) -> None:
        """floxyd on `example` (the previous daemon stops with SIGTERM and must exit 0)."""
        if self.serving == example:
            assert self.daemon is not None and self.daemon.alive(), (
                self.daemon and self.daemon.log()
            )
            return
        if self.daemon is not None:
            assert self.daemon.stop() == 0, self.daemon.log()
        self.served += 1
        self.daemon = spawn_floxyd(
            f"{self.served}-{example.removesuffix('.yaml')}",
            examples_e2e.EXAMPLES / example,
            self.dsn,
            self.workdir,
        )
        self.serving = example
        if example not in self.flows:
            # Registered by floxyd at start-up already: floxyctl must find it unchanged.
            done = self.ctl(
                "register", "-f", str(examples_e2e.EXAMPLES / example), "--output", "json",
                cwd=self.workdir,
            )  # fmt: skip
            self.flows[example] = json.loads(done.stdout)["workflows"]
            assert {f["result"] for f in self.flows[example]} == {"unchanged"}, done.stdout

    def workflow_id(self, example: str, flow: str | None) -> str:
        flows = self.flows[example]
        if flow is not None:
            flows = [f for f in flows if f["name"] == flow]
        assert len(flows) == 1, (example, flow, flows)
        return str(flows[0]["id"])

    def run(
        self,
        cwd: Path,
        example: str,
        *args: str,
        input_file: Path | None = None,
        input_data: dict[str, Any] | None = None,
        output: str = "json",
    ) -> examples_e2e.Run:
        self.serve(example)
        self.examples_run.add(example)
        flow, decisions = _parse_run_args(args)
        start = ["start", "-o", self.workflow_id(example, flow), "--wait"]
        start += ["--completion-timeout", "30s", "--status-check-interval", "50ms"]
        if output == "json":
            start += ["--output", "json"]
        if input_data is not None:
            input_file = cwd / f"db-input-{len(list(cwd.glob('db-input-*.json')))}.json"
            input_file.write_text(json.dumps(input_data))
        if input_file is not None:
            start += ["-i", str(input_file)]
        proc = self.ctl(*start, cwd=cwd, check=False)
        if not decisions:
            return examples_e2e.Run(proc)
        # Paused on the human step: answer it with `floxyctl decide`, then follow to the end.
        assert proc.returncode == 4, (proc.returncode, proc.stdout, proc.stderr)
        instance = str(json.loads(proc.stdout)["instance_id"])
        for step, answer in decisions:
            self.ctl("decide", instance, "--step", step, answer, cwd=cwd)
        return self._follow(instance, cwd)

    def _follow(self, instance: str, cwd: Path) -> examples_e2e.Run:
        from floxy_core.status import InstanceStatus

        deadline = time.monotonic() + 30
        while True:
            proc = self.ctl("inspect", instance, "--output", "json", cwd=cwd)
            status = InstanceStatus(json.loads(proc.stdout)["status"])
            if status.terminal:
                return examples_e2e.Run(
                    subprocess.CompletedProcess(proc.args, _exit_code(status), proc.stdout, "")
                )
            assert time.monotonic() < deadline, f"instance {instance} still {status}"
            time.sleep(0.05)

    def close(self) -> None:
        if self.daemon is not None and self.daemon.alive():
            code = self.daemon.stop()
            assert code == 0, self.daemon.log()


def _parse_run_args(args: tuple[str, ...]) -> tuple[str | None, list[tuple[str, str]]]:
    """`--flow NAME` and `--decide STEP=ANSWER` of a `floxyctl run` command line."""
    flow = None
    decisions = []
    rest = list(args)
    while rest:
        option = rest.pop(0)
        if option == "--flow":
            flow = rest.pop(0)
        elif option == "--decide":
            step, _, answer = rest.pop(0).partition("=")
            decisions.append((step, answer))
        else:
            pytest.fail(f"the database-mode driver does not know `floxyctl run {option}`")
    return flow, decisions


@pytest.fixture(scope="module")
def examples_db(
    pg_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ExamplesInDatabaseMode]:
    dsn = pg_cluster.create_database()
    driver = ExamplesInDatabaseMode(dsn, tmp_path_factory.mktemp("examples-db"))
    try:
        yield driver
        driver.close()
    finally:
        if driver.daemon is not None and driver.daemon.alive():
            driver.daemon.proc.kill()
            driver.daemon.proc.wait(10)
        pg_cluster.drop_database(dsn)


def test_every_example_file_has_a_database_mode_case() -> None:
    covered = {_first_example(name) for name in EXAMPLE_CASES}
    assert covered >= set(examples_e2e.ALL_EXAMPLES), set(examples_e2e.ALL_EXAMPLES) - covered


@pytest.mark.parametrize("case", EXAMPLE_CASES)
def test_example_reaches_its_end_through_floxyd(
    case: str,
    examples_db: ExamplesInDatabaseMode,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """test_examples.<case>, with `floxyctl run` replaced by register/start/decide + floxyd."""
    monkeypatch.setattr(examples_e2e, "floxyctl_run", examples_db.run)
    getattr(examples_e2e, case)(tmp_path)
    assert examples_db.examples_run, "the case ran no example"
    examples_db.examples_run.clear()


# --------------------------------------------------------------------------------------------
# 2. Three daemons, 300 instances: every handler call counted once per attempt

LEDGER_FLOW = """\
handlers:
  - name: work
    exec: {script}
  - name: undo
    exec: {script}
flows:
  - name: batch
    max_retries: 2
    steps:
      - {{name: reserve, handler: work, retry_delay: 20ms, on_failure: undo}}
      - {{name: charge, handler: work, retry_delay: 20ms, on_failure: undo}}
      - {{name: ship, handler: work, retry_delay: 20ms, on_failure: undo}}
      - type: parallel
        name: fan
        tasks:
          - {{name: pack, handler: work, retry_delay: 20ms}}
          - {{name: label, handler: work, retry_delay: 20ms}}
"""
TASKS = ("reserve", "charge", "ship", "pack", "label")
UNDONE = ("reserve", "charge", "ship")


def plan(n: int) -> dict[str, Any]:
    """Instance n's input: most run straight through, some steps fail once or twice (retried),
    every tenth fails for good in `ship` (3 calls, then ship, charge, reserve are undone)."""
    if n % 10 == 3:
        return {"n": n, "fail_step": "ship", "fail_times": 9}
    if n % 5 == 1:
        return {"n": n, "fail_step": "charge", "fail_times": 1}
    if n % 5 == 2:
        return {"n": n, "fail_step": "ship", "fail_times": 2}
    if n % 7 == 0:
        return {"n": n, "fail_step": "pack", "fail_times": 1}
    return {"n": n}


def test_three_daemons_run_300_instances_and_count_every_call_once_per_attempt(
    pg_dsn: str, workdir: Path, script: Path, daemons: list[Floxyd]
) -> None:
    file = write(workdir / "batch.yaml", LEDGER_FLOW.format(script=script))
    for name in ("a", "b", "c"):
        daemons.append(spawn_floxyd(name, file, pg_dsn, workdir, FLOXY_WORKERS="4"))
    store = PostgresStore(pg_dsn, max_size=2)
    try:
        runtime = Runtime(store, {})
        ids = {runtime.start_instance("batch-v1", plan(n)): n for n in range(300)}
    finally:
        store.close()
    final = wait_terminal(pg_dsn, list(ids), timeout=60)
    assert all(d.alive() for d in daemons), [d.log() for d in daemons if not d.alive()]

    expected = {i: "failed" if n % 10 == 3 else "completed" for i, n in ids.items()}
    assert {i: final[i] for i in ids} == expected
    calls = all_calls(daemons)
    assert not duplicate_starts(calls), duplicate_starts(calls)
    rows = step_rows(pg_dsn)
    grouped = by_step(calls)
    problems = []
    for iid, n in ids.items():
        steps = rows[iid]
        want = plan(n)
        for name in TASKS:
            row = steps.get(name)
            starts = [c for c in grouped[(iid, name, False)] if c.phase == "start"]
            oks = [c for c in grouped[(iid, name, False)] if c.phase == "ok"]
            if row is None:
                if starts:
                    problems.append(f"{iid} {name}: called {len(starts)}x but has no step row")
                continue
            # every attempt of the step was called exactly once, all with the step's key
            planned = want["fail_times"] if want.get("fail_step") == name else 0
            calls_planned = min(planned, 2) + 1  # max_retries 2: at most 3 calls
            attempts = sorted(c.attempt for c in starts)
            if attempts != list(range(calls_planned)):
                problems.append(f"{iid} {name}: attempts {attempts}, planned {calls_planned}")
            if {c.key for c in starts} != {row["key"]}:
                problems.append(f"{iid} {name}: keys {[c.key for c in starts]} != {row['key']}")
            # a completed step: exactly one successful call, the last attempt
            if row["status"] == "completed" and (
                [c.attempt for c in oks] != [planned] or row["retry_count"] != planned
            ):
                problems.append(f"{iid} {name}: {row}, successful calls {oks}")
            if row["status"] != "completed" and planned <= 2 and expected[iid] == "completed":
                problems.append(f"{iid} {name}: {row}")
        undo = {name: grouped[(iid, name, True)] for name in UNDONE}
        if expected[iid] == "completed":
            if any(undo.values()) or {steps[t]["status"] for t in TASKS} != {"completed"}:
                problems.append(f"{iid}: completed with steps {steps} and undo calls {undo}")
        else:
            undo_oks = {name: [c for c in undo[name] if c.phase == "ok"] for name in UNDONE}
            if any(len(v) != 1 for v in undo_oks.values()) or "pack" in steps or "label" in steps:
                problems.append(f"{iid}: failed with steps {steps} and undo calls {undo}")
            if len([c for c in grouped[(iid, "ship", False)] if c.phase == "start"]) != 3:
                problems.append(f"{iid}: ship not called 3 times (max_retries 2)")
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems[:30])
    assert not leftovers(pg_dsn, list(ids))
    by_daemon = {d.name: sum(1 for c in d.calls() if c.phase == "start") for d in daemons}
    assert all(by_daemon.values()), f"a daemon ran nothing: {by_daemon}"


# --------------------------------------------------------------------------------------------
# 3. kill -9 in the middle of a step

SAGA_FLOW = """\
handlers:
  - name: work
    exec: {script}
  - name: undo
    exec: {script}
flows:
  - name: saga
    steps:
      - {{name: reserve, handler: work, on_failure: undo}}
      - {{name: charge, handler: work, no_idempotent: true, on_failure: undo}}
      - {{name: ship, handler: work, on_failure: undo}}
      - {{name: notify, handler: work}}
"""
LEASE = 2.0  # 1 s is too tight on a loaded 2-core machine (see test_floxyd.py)


def test_kill_9_mid_step_another_daemon_takes_over_and_no_idempotent_is_compensated(
    pg_dsn: str, workdir: Path, script: Path, daemons: list[Floxyd]
) -> None:
    file = write(workdir / "saga.yaml", SAGA_FLOW.format(script=script))
    lease = {"FLOXY_LEASE": f"{LEASE:g}s", "FLOXY_SHUTDOWN_GRACE": "200ms"}
    victim = spawn_floxyd("victim", file, pg_dsn, workdir, **lease)
    daemons.append(victim)
    store = PostgresStore(pg_dsn, max_size=2)
    try:
        runtime = Runtime(store, {})
        # `ship` is idempotent: its first call hangs; `charge` is no_idempotent and hangs.
        resumed = runtime.start_instance("saga-v1", {"slow_step": "ship", "slow_seconds": 60})
        refused = runtime.start_instance("saga-v1", {"slow_step": "charge", "slow_seconds": 60})
    finally:
        store.close()

    def both_hang() -> bool:
        started = {(c.instance, c.step) for c in victim.calls() if c.phase == "start"}
        return {(resumed, "ship"), (refused, "charge")} <= started

    wait_for("both slow steps to be running on the victim", both_hang, timeout=20)
    survivor = spawn_floxyd("survivor", file, pg_dsn, workdir, **lease)
    daemons.append(survivor)
    time.sleep(2 * LEASE)  # the victim renews its leases: nothing is taken over meanwhile
    assert not survivor.calls(), survivor.calls()
    killed_at = victim.kill9()
    # Its handler processes die with it (bash.py `_guarded`): nothing is left to kill.
    wait_for(
        "the victim's handlers to die with it",
        lambda: not handler_pids(victim.calls(), script),
        timeout=5,
    )

    final = wait_terminal(pg_dsn, [resumed, refused], timeout=20)
    calls = all_calls(daemons)
    grouped = by_step(calls)
    rows = step_rows(pg_dsn)

    # The idempotent step: re-run by the survivor after the lease, with the same key.
    assert final[resumed] == "completed", rows[resumed]
    ship = grouped[(resumed, "ship", False)]
    assert [(c.phase, c.daemon) for c in ship] == [
        ("start", "victim"),
        ("start", "survivor"),
        ("ok", "survivor"),
    ], ship
    assert ship[0].key == ship[1].key == rows[resumed]["ship"]["key"]
    assert ship[1].at - killed_at >= LEASE / 3, "taken over before the lease could expire"
    assert rows[resumed]["ship"]["status"] == "completed"
    assert [c.phase for c in grouped[(resumed, "notify", False)]] == ["start", "ok"]
    assert not any(c.compensation for c in calls if c.instance == resumed)

    # The no_idempotent step: not run again, failed, and the completed step compensated.
    assert final[refused] == "failed", rows[refused]
    charge = grouped[(refused, "charge", False)]
    assert [(c.phase, c.daemon) for c in charge] == [("start", "victim")], charge
    assert "not re-run" in (rows[refused]["charge"]["error"] or ""), rows[refused]["charge"]
    assert rows[refused]["charge"]["status"] in ("failed", "rolled_back")
    # DECISIONS.md: the failed step's own on_failure first, then the completed steps in reverse;
    # each compensation called once, by the surviving daemon.
    undo = [(c.step, c.phase, c.daemon) for c in calls if c.instance == refused and c.compensation]
    assert undo == [
        ("charge", "start", "survivor"),
        ("charge", "ok", "survivor"),
        ("reserve", "start", "survivor"),
        ("reserve", "ok", "survivor"),
    ], undo
    reserve_undo = grouped[(refused, "reserve", True)][0]
    assert reserve_undo.key == rows[refused]["reserve"]["key"]
    assert rows[refused]["reserve"]["status"] == "rolled_back"
    assert "ship" not in rows[refused] and not grouped[(refused, "ship", False)]
    assert not leftovers(pg_dsn, [resumed, refused])
    assert survivor.alive()


# --------------------------------------------------------------------------------------------
# 4. PostgreSQL restarted while work is in flight

STEADY_FLOW = """\
handlers:
  - name: work
    exec: {script}
flows:
  - name: steady
    steps:
      - {{name: one, handler: work, retry_delay: 100ms}}
      - {{name: two, handler: work, retry_delay: 100ms}}
      - {{name: three, handler: work, retry_delay: 100ms}}
"""


@pytest.fixture
def private_pg() -> Iterator[PgServer]:
    """A PostgreSQL cluster of its own that the test may stop and start (tests/chaos/chaos.py)."""
    server = PgServer()
    try:
        server.start()
        yield server
    finally:
        server.destroy()


def test_postgres_restart_health_says_503_then_200_and_every_instance_ends(
    private_pg: PgServer, workdir: Path, script: Path, daemons: list[Floxyd]
) -> None:
    dsn = private_pg.create_database("floxy")
    file = write(workdir / "steady.yaml", STEADY_FLOW.format(script=script))
    env = {"FLOXY_LEASE": "3s", "FLOXY_CONNECT_TIMEOUT": "60s", "FLOXY_WORKERS": "3"}
    for name in ("one", "two"):
        daemons.append(spawn_floxyd(name, file, dsn, workdir, **env))
    assert [d.health() for d in daemons] == [200, 200]
    store = PostgresStore(dsn, max_size=2)
    try:
        runtime = Runtime(store, {})
        ids = [runtime.start_instance("steady-v1", {"n": n, "pause": 0.2}) for n in range(30)]
    finally:
        store.close()
    wait_for(
        "work in flight",
        lambda: sum(1 for c in all_calls(daemons) if c.phase == "ok") >= 10,
        timeout=20,
    )

    private_pg.stop()
    down_at = time.monotonic()
    outage = {
        d.name: wait_for(f"{d.name} /health 503", lambda d=d: d.health() == 503, 10)
        for d in daemons
    }
    while time.monotonic() - down_at < 2.0:  # stays 503 while PostgreSQL is down
        assert [d.health() for d in daemons] == [503, 503]
        time.sleep(0.2)
    assert outage and all(d.alive() for d in daemons), [d.log() for d in daemons]
    private_pg.start()

    for d in daemons:
        wait_for(f"{d.name} /health 200 again", lambda d=d: d.health() == 200, timeout=20)
    final = wait_terminal(dsn, ids, timeout=60)
    assert all(d.alive() for d in daemons), [d.log() for d in daemons if not d.alive()]
    assert set(final[i] for i in ids) == {"completed"}, final
    rows = step_rows(dsn)
    for iid in ids:
        assert {n: r["status"] for n, r in rows[iid].items()} == dict.fromkeys(
            ("one", "two", "three"), "completed"
        ), rows[iid]
    grouped = by_step(all_calls(daemons))
    for iid in ids:
        for name in ("one", "two", "three"):
            assert any(c.phase == "ok" for c in grouped[(iid, name, False)]), (iid, name)
    assert not leftovers(dsn, ids)
    for d in daemons:
        assert d.stop() == 0, d.log()


# --------------------------------------------------------------------------------------------
# 5. SIGTERM during a 5-second step


def test_sigterm_during_a_5_second_step_lets_it_complete_and_leaves_nothing_running(
    pg_dsn: str, workdir: Path, daemons: list[Floxyd], tmp_path: Path
) -> None:
    pid_file = tmp_path / "pids"
    file = write(workdir / "slow.yaml", long_step(pid_file, 5))
    daemon = spawn_floxyd("slow", file, pg_dsn, workdir)
    daemons.append(daemon)
    store = PostgresStore(pg_dsn, max_size=2)
    try:
        instance = Runtime(store, {}).start_instance("slow-v1", {})
    finally:
        store.close()
    wait_for("the 5-second step to start", lambda: pids(pid_file))
    signalled = time.monotonic()
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.wait_exit(timeout=15) == 0, daemon.log()
    assert time.monotonic() - signalled >= 3.0, "exited before the step could finish"
    assert gone(pids(pid_file)[0])
    rows = step_rows(pg_dsn)[instance]
    assert rows["long"]["status"] == "completed", rows
    assert "after" not in rows or rows["after"]["status"] == "pending", rows
    assert not [n for n, r in rows.items() if r["status"] == "running"], rows
    # Nothing was left holding a lease: the next daemon finishes the instance at once.
    daemons.append(spawn_floxyd("next", file, pg_dsn, workdir))
    assert wait_terminal(pg_dsn, [instance], timeout=10)[instance] == "completed"
    assert len(pids(pid_file)) == 1
