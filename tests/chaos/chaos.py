"""Chaos driver: mixed flows on several floxyd processes that are killed, stopped and frozen at
random (one with its clock 30 s ahead), a PostgreSQL restart in the middle, then a check of the
invariants every run must keep.

    python -m tests.chaos.chaos --instances 1000 --minutes 10          # the long form
    python -m tests.chaos.chaos --instances 60 --minutes 0.75 --seed 7 # about the CI short form

What it does:

* starts its own throwaway PostgreSQL (initdb in a temporary directory; it must be restartable,
  so the shared test cluster is not used), creates and migrates one database;
* writes one workflow file with six flows (a sequential saga with compensations, a
  `no_idempotent` step and a savepoint; a fork/join with a condition inside a branch and one after
  the join; a parallel block followed by a fork with an `any` join; a DLQ-mode flow; a saga of
  HTTP steps, a `no_idempotent` one among them, with a parallel block mixing HTTP and bash; a flow
  with a human step that has a timeout), served by one bash handler, `work.sh`, and one HTTP
  service run by the driver (`remote.py`), whose planned failures are 500s, 503s, bodies that are
  not JSON, empty bodies and dropped connections;
* runs N floxyd processes on it (short leases, short shutdown grace; daemon 0 with its wall clock
  `--skew` seconds ahead through libfaketime; PostgreSQL with password authentication), starts
  the instances over the first part of the run, and every few seconds SIGKILLs a random daemon
  (restarted), SIGTERMs one (restarted once it has exited) or SIGSTOPs one for a few seconds,
  past its lease (then SIGCONT); cancels or aborts a few random instances through
  `Runtime.cancel`/`Runtime.abort`, and a few more caught rolling back a failure (in some plans
  every compensation takes a second, so that rollbacks last); answers human steps as each plan
  says (confirm, reject, or not at all so that the step times out; sometimes twice); requeues
  DLQ-parked instances with a plan that no longer fails, and stops PostgreSQL (`pg_ctl stop -m
  fast`) and starts it again on the same port and data directory once, half-way;
* waits (with a deadline) for every instance to settle, stops the daemons, and checks the
  invariants against the database and the handlers' ledger.

Handler failures are planned by a seeded generator: each instance's input carries
`{"plan": {"fail": {"step": n, "comp:step": m}, "sleep": s, "route": r}}`, and `work.sh` fails
attempt k of a step while k < n (`FLOXY_RETRY_COUNT`), so the outcome of every instance is a
function of the seed, except for what the chaos itself may change (a cancel, or a `no_idempotent`
step refused after its worker was lost).

The ledger: `work.sh` appends one line per call phase (`start`, then `ok` or `fail`) to the file
named by `$CHAOS_LEDGER` (one file per daemon process, O_APPEND writes):
`<time> <phase> <call-id> <instance> <step> <idempotency key> <attempt> <compensation> <pid>`,
and every successful call puts its call id into its output, so a step's output can be traced to
the one attempt that produced it. A skewed daemon's lines are moved back by its skew, so every
time is on one clock. Some `charge` calls (`no_idempotent`, timeout 5 s) take 2.5 s, longer than
the lease and the shutdown grace, so that stops meet running calls.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.chaos.remote import Remote
from tests.pgcluster import server_bindir
from tests.support import free_port

TERMINAL = ("completed", "failed", "cancelled", "aborted")
PAUSED = ("dlq",)
MAX_RETRIES = 2
"""Flow-level `max_retries` of the chaos flows (3 calls in all), except `parked`."""
PARKED_RETRIES = 1
COMP_RETRIES = 2
COMP_REASONS = ("compensation_success", "rolled_back_no_compensation")
REFUSED = "not re-run"
"""Error text of a no_idempotent step whose worker was lost (engine `claim`)."""


# --------------------------------------------------------------------------------------------
# The workflows and the handler


WORK_SH = r"""#!/usr/bin/env bash
# Chaos handler: plays the failure plan carried by the input and writes the ledger.
set -e
comp=${FLOXY_COMPENSATION:-false}
if [ "$comp" = true ]; then key="comp:$FLOXY_STEP_NAME"; else key="$FLOXY_STEP_NAME"; fi
# The plan travels in every output; after a join it is found in the branch outputs.
IFS=$'\t' read -r plan fails pause route < <(jq -rc --arg k "$key" '
  (.plan // ([(.outputs // {})[] | objects | .plan | objects] | first) // {}) as $p
  | [($p | tojson), ($p | .fail[$k] // 0),
     (($p.slow // {})[$k] // (if ($k | startswith("comp:")) then $p.slow_comp else null end)
      // $p.sleep // 0.1),
     ($p.route // 0)] | @tsv' <<<"$INPUT")
call="$$.${EPOCHREALTIME/./}"
line() {
  echo "$EPOCHREALTIME $1 $call $FLOXY_INSTANCE_ID $FLOXY_STEP_NAME" \
    "$FLOXY_IDEMPOTENCY_KEY $FLOXY_RETRY_COUNT $comp $$" >> "$CHAOS_LEDGER"
}
line start
sleep "$pause"
if [ "$FLOXY_RETRY_COUNT" -lt "$fails" ]; then
  line fail
  echo "planned failure of $key (attempt $FLOXY_RETRY_COUNT)" >&2
  exit 1
fi
line ok
printf '{"plan":%s,"route":%s,"step":"%s","key":"%s","attempt":%s,"call":"%s","comp":%s}\n' \
  "$plan" "$route" "$FLOXY_STEP_NAME" "$FLOXY_IDEMPOTENCY_KEY" "$FLOXY_RETRY_COUNT" "$call" "$comp"
"""


def _comp(name: str, handler: str) -> dict[str, Any]:
    return {"handler": handler, "name": name, "max_retries": COMP_RETRIES, "retry_delay": "100ms"}


def _task(
    name: str, undo: str | None = None, handler: str = "work", **options: Any
) -> dict[str, Any]:
    step: dict[str, Any] = {"name": name, "handler": handler, "retry_delay": "100ms", **options}
    if undo:
        step["on_failure"] = _comp(undo, handler)
    return step


def _http(name: str, undo: str | None = None, **options: Any) -> dict[str, Any]:
    return _task(name, undo, "api", **options)


def workflow_file(script: Path, remote_port: int) -> dict[str, Any]:
    """The chaos workflow file (written as JSON, which is YAML)."""
    return {
        "handlers": [
            {"name": "work", "exec": str(script)},
            # ${CHAOS_INC} is the calling daemon's incarnation: the service's ledger of it
            {"name": "api", "exec": f"http://127.0.0.1:{remote_port}/call/${{CHAOS_INC}}"},
        ],
        "flows": [
            {
                "name": "saga",
                "max_retries": MAX_RETRIES,
                "steps": [
                    _task("reserve", "release"),
                    # the timeout bounds a lost worker's call: its lease holds past it
                    _task("charge", "refund", no_idempotent=True, timeout=f"{CHARGE_TIMEOUT:g}s"),
                    {"type": "savepoint", "name": "paid"},
                    _task("pack", "unpack"),
                    _task("ship", "unship"),
                    _task("notify"),
                ],
            },
            {
                "name": "fanout",
                "max_retries": MAX_RETRIES,
                "steps": [
                    _task("prepare", "unprepare"),
                    {"type": "savepoint", "name": "prepared"},
                    {
                        "type": "fork",
                        "name": "fan",
                        "branches": [
                            [_task("left1", "unleft1"), _task("left2", "unleft2")],
                            [
                                _task("right1", "unright1"),
                                {
                                    "type": "condition",
                                    "name": "right_route",
                                    "expr": "{{ gt .route 4 }}",
                                    "else": [_task("right_slow", "unright_slow")],
                                },
                                _task("right_fast"),
                            ],
                        ],
                        "join": {"name": "fan_join", "strategy": "all"},
                    },
                    _task("merge", "unmerge"),
                    {
                        "type": "condition",
                        "name": "big",
                        "expr": "{{ ge .route 7 }}",
                        "else": [_task("small_finish")],
                    },
                    _task("big_finish", "unbig"),
                ],
            },
            {
                "name": "quotes",
                "max_retries": MAX_RETRIES,
                "steps": [
                    {
                        "type": "parallel",
                        "name": "quote",
                        "tasks": [_task("q1", "unq1"), _task("q2", "unq2")],
                    },
                    _task("pick", "unpick"),
                    {
                        "type": "fork",
                        "name": "race",
                        "branches": [[_task("r1", "unr1")], [_task("r2", "unr2"), _task("r3")]],
                        "join": {"name": "race_join", "strategy": "any"},
                    },
                    _task("book", "unbook"),
                ],
            },
            {
                "name": "parked",
                "dlq": True,
                "max_retries": PARKED_RETRIES,
                "steps": [_task("p1"), _task("p2"), _task("p3")],
            },
            {
                "name": "remote",
                "max_retries": MAX_RETRIES,
                "steps": [
                    _http("h_reserve", "h_release"),
                    {
                        "type": "parallel",
                        "name": "h_quote",
                        "tasks": [_http("h_q1", "h_unq1"), _task("h_q2", "h_unq2")],
                    },
                    _http(
                        "h_charge", "h_refund", no_idempotent=True, timeout=f"{CHARGE_TIMEOUT:g}s"
                    ),
                    _http("h_ship", "h_unship"),
                ],
            },
            {
                "name": "approval",
                "max_retries": MAX_RETRIES,
                "steps": [
                    _task("a_prepare", "a_unprepare"),
                    {"type": "human", "name": "approve", "timeout": f"{HUMAN_TIMEOUT:g}s"},
                    _task("a_after", "a_unafter"),
                    _http("a_finish"),
                ],
            },
        ],
    }


FLOW_WEIGHTS = {"saga": 4, "fanout": 3, "quotes": 3, "parked": 1, "remote": 3, "approval": 2}
TASKS = {
    "saga": ["reserve", "charge", "pack", "ship", "notify"],
    "fanout": [
        "prepare", "left1", "left2", "right1", "right_slow", "right_fast", "merge",
        "small_finish", "big_finish",
    ],
    "quotes": ["q1", "q2", "pick", "r1", "r2", "r3", "book"],
    "parked": ["p1", "p2", "p3"],
    "remote": ["h_reserve", "h_q1", "h_q2", "h_charge", "h_ship"],
    "approval": ["a_prepare", "a_after", "a_finish"],
}  # fmt: skip
NO_IDEMPOTENT = {"charge", "h_charge"}
HUMAN_TIMEOUT = 4.0
"""Seconds a human step waits (database clock); the driver decides within about 2 s."""
HUMAN_ANSWERS = {"confirm": 6, "reject": 2, "timeout": 2}
SLOW_ROLLBACK_SHARE = 0.3
SLOW_COMP = 1.0
"""Seconds every compensation of a slow-rollback plan takes: long enough for a cancel or an
abort to arrive during the rollback."""
SLOW_SHARE = 0.3
SLOW_CHARGE = 2.5
"""Seconds a slow `charge` call takes (the chaos lease is 2 s)."""
CHARGE_TIMEOUT = 5.0
ORPHAN_SLACK = 0.25
"""Seconds after its daemon's SIGKILL a handler may still write: its guard gets SIGTERM at once."""


def retries_of(flow: str, step: str) -> int:
    if step in NO_IDEMPOTENT:
        return 0
    return PARKED_RETRIES if flow == "parked" else MAX_RETRIES


def make_plan(rng: random.Random, flow: str) -> dict[str, Any]:
    """Per-step failures: mostly none, some retried, a few for good; some undos fail once."""
    fail: dict[str, int] = {}
    for step in TASKS[flow]:
        r = rng.random()
        if r < 0.035:
            fail[step] = 9  # fails for good
        elif r < 0.13:
            fail[step] = 1
        elif r < 0.16:
            fail[step] = 2
        if rng.random() < 0.15:
            fail["comp:" + step] = 1
    plan: dict[str, Any] = {
        "flow": flow,
        "fail": fail,
        "sleep": round(rng.uniform(0.05, 0.35), 3),
        "route": rng.randint(0, 9),
    }
    if flow in ("saga", "remote") and rng.random() < SLOW_SHARE:
        # longer than the lease and the shutdown grace, within its timeout: a stop meets it
        plan["slow"] = {"h_charge" if flow == "remote" else "charge": SLOW_CHARGE}
    if rng.random() < SLOW_ROLLBACK_SHARE:
        plan["slow_comp"] = SLOW_COMP
    if flow == "approval":
        answers = list(HUMAN_ANSWERS)
        plan["human"] = rng.choices(answers, [HUMAN_ANSWERS[a] for a in answers])[0]
        plan["decide_after"] = round(rng.uniform(0.0, 1.5), 3)
        plan["twice"] = rng.random() < 0.3  # a second decision follows (it must be refused)
    return plan


@dataclass(frozen=True)
class Expected:
    status: str
    completed: frozenset[str]
    """Task steps a completed instance must have completed (and no other task step)."""
    may_fail: frozenset[str] = frozenset()
    """Task steps of a completed instance that end `failed` (a losing branch of an `any` join)."""


def expected_outcome(plan: dict[str, Any]) -> Expected:
    flow, fail, route = plan["flow"], plan["fail"], plan["route"]

    def broken(step: str) -> bool:
        return int(fail.get(step, 0)) > retries_of(flow, step)

    if flow == "saga":
        path = TASKS["saga"]
        return Expected("failed" if any(map(broken, path)) else "completed", frozenset(path))
    if flow == "fanout":
        path = [
            "prepare", "left1", "left2", "right1",
            "right_fast" if route > 4 else "right_slow",
            "merge",
            "big_finish" if route >= 7 else "small_finish",
        ]  # fmt: skip
        return Expected("failed" if any(map(broken, path)) else "completed", frozenset(path))
    if flow == "quotes":
        first_ok = not broken("r1")
        second_ok = not broken("r2") and not broken("r3")
        done = {"q1", "q2", "pick", "book"}
        failing: set[str] = set()
        for step, ran in (("r1", True), ("r2", True), ("r3", not broken("r2"))):
            if ran:
                (failing if broken(step) else done).add(step)
        ok = not any(map(broken, ("q1", "q2", "pick", "book"))) and (first_ok or second_ok)
        return Expected("completed" if ok else "failed", frozenset(done), frozenset(failing))
    if flow == "remote":
        path = TASKS["remote"]
        return Expected("failed" if any(map(broken, path)) else "completed", frozenset(path))
    if flow == "approval":
        path = TASKS["approval"]
        if broken("a_prepare"):
            return Expected("failed", frozenset(path))
        if plan.get("human") != "confirm":
            return Expected("aborted", frozenset(path))
        return Expected("failed" if any(map(broken, path)) else "completed", frozenset(path))
    path = TASKS["parked"]
    return Expected("dlq" if any(map(broken, path)) else "completed", frozenset(path))


# --------------------------------------------------------------------------------------------
# PostgreSQL that can be stopped and started again


def faketime_env(skew: float) -> dict[str, str]:
    """Environment that shifts a process's wall clock by `skew` seconds (libfaketime preloaded
    directly: the `faketime` command would stand between the caller and the process, and take
    its signals). Only the wall clock moves, as on a machine whose clock is off: a shifted
    monotonic clock would make Python's timed waits oversleep."""
    libs = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    if not libs:
        raise RuntimeError("libfaketime is not installed (Debian package faketime)")
    return {
        "LD_PRELOAD": libs[0],
        "FAKETIME": f"{skew:+g}s",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }


def _as_postgres(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


class PgServer:
    """A private PostgreSQL cluster (no fsync) on a fixed port, restartable; trust auth, or
    password auth (SCRAM) for the user `postgres` when a `password` is given."""

    def __init__(self, password: str | None = None) -> None:
        self.bindir = server_bindir()
        self.password = password
        self.root = tempfile.mkdtemp(prefix="floxy-chaos-pg-")
        os.chmod(self.root, 0o777)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self.datadir = os.path.join(self.root, "data")
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.admin_dsn = self.dsn("postgres")
        auth = ["-A", "trust"]
        if password is not None:
            pwfile = os.path.join(self.root, "pwfile")
            Path(pwfile).write_text(password + "\n")
            if os.geteuid() == 0:
                shutil.chown(pwfile, "postgres", "postgres")
            auth = ["-A", "scram-sha-256", f"--pwfile={pwfile}"]
        subprocess.run(
            _as_postgres(
                [
                    str(self.bindir / "initdb"),
                    *("-D", self.datadir, "-U", "postgres", *auth),
                    *("--no-sync", "-E", "UTF8"),
                ]
            ),
            check=True,
            capture_output=True,
        )

    def dsn(self, dbname: str) -> str:
        dsn = f"host=127.0.0.1 port={self.port} user=postgres dbname={dbname}"
        return dsn if self.password is None else f"{dsn} password={self.password}"

    def start(self, timeout: float = 60.0) -> None:
        import psycopg

        settings = {
            "listen_addresses": "127.0.0.1",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "300",
            "shared_buffers": "128MB",
        }
        args = [str(self.bindir / "postgres"), "-D", self.datadir, "-p", str(self.port)]
        args += ["-k", self.root]
        for key, value in settings.items():
            args += ["-c", f"{key}={value}"]
        with open(os.path.join(self.root, "postgres.log"), "ab") as log:
            self.process = subprocess.Popen(_as_postgres(args), stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.admin_dsn, connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"the chaos PostgreSQL exited at start-up; see {self.root}/postgres.log"
                    ) from None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        """Fast shutdown (what SIGINT does): active transactions are rolled back."""
        if self.process is None:
            return
        if self.process.poll() is None:
            subprocess.run(
                _as_postgres(
                    [str(self.bindir / "pg_ctl"), "stop", "-D", self.datadir, "-m", "fast", "-w"]
                ),
                capture_output=True,
                timeout=60,
            )
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.send_signal(signal.SIGINT)
                self.process.wait(30)
        self.process = None

    def create_database(self, name: str) -> str:
        import psycopg

        from floxy_core.storage.postgres.migrations import migrate

        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        dsn = self.dsn(name)
        with psycopg.connect(dsn, autocommit=True) as conn:
            migrate(conn)
        return dsn

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# floxyd processes


@dataclass
class Incarnation:
    """One floxyd process: slot `slot`, `gen`-th start of that slot."""

    slot: int
    gen: int
    proc: subprocess.Popen[bytes]
    log: Path
    ledger: Path
    started: float
    skew: float = 0.0
    """Seconds its wall clock (and its handlers') runs ahead (`faketime`)."""
    killed: float | None = None
    """When it was SIGKILLed (test clock)."""
    terminated: float | None = None
    """When it was sent SIGTERM (test clock)."""
    frozen: list[tuple[float, float]] = field(default_factory=list)
    """(SIGSTOP, SIGCONT) times."""
    exit_code: int | None = None

    @property
    def name(self) -> str:
        return f"{self.slot}-{self.gen}"

    @property
    def http_ledger(self) -> Path:
        """The HTTP service's lines for the calls this incarnation made (driver clock)."""
        return self.ledger.with_suffix(".http.txt")

    def gone_by(self) -> float | None:
        """When it stopped running handlers for good: killed, or exited after SIGTERM."""
        return self.killed if self.killed is not None else self.terminated


class Daemons:
    def __init__(
        self,
        workdir: Path,
        yaml: Path,
        dsn: str,
        workers: int,
        lease: str,
        skews: dict[int, float] | None = None,
    ) -> None:
        self.workdir = workdir
        self.yaml = yaml
        self.dsn = dsn
        self.workers = workers
        self.lease = lease
        self.skews = skews or {}
        """Slot → seconds its clock runs ahead."""
        self.all: list[Incarnation] = []
        self.current: dict[int, Incarnation] = {}
        self.unexpected_exits: list[Incarnation] = []

    def ledger_of(self, name: str) -> Path | None:
        """The HTTP ledger of the incarnation called `name` (`slot-gen`), if there is one."""
        inc = next((i for i in self.all if i.name == name), None)
        return None if inc is None else inc.http_ledger

    def env(self, ledger: Path, name: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOXY_", "PG"))}
        env.update(
            FLOXY_DSN=self.dsn,
            FLOXY_WORKERS=str(self.workers),
            FLOXY_LEASE=self.lease,
            FLOXY_SHUTDOWN_GRACE="200ms",
            FLOXY_WORKER_INTERVAL="100ms",
            FLOXY_CONNECT_TIMEOUT="120s",
            FLOXY_TECH_ADDR="off",
            FLOXY_STATS_INTERVAL="0",
            FLOXY_MAINTENANCE_INTERVAL="0",
            FLOXY_NO_PLUGINS="1",
            CHAOS_LEDGER=str(ledger),
            CHAOS_INC=name,
        )
        return env

    def start(self, slot: int) -> Incarnation:
        gen = sum(1 for i in self.all if i.slot == slot) + 1
        log = self.workdir / f"floxyd-{slot}-{gen}.log"
        ledger = self.workdir / f"ledger-{slot}-{gen}.txt"
        ledger.touch()
        ledger.with_suffix(".http.txt").touch()
        skew = self.skews.get(slot, 0.0)
        env = {**self.env(ledger, f"{slot}-{gen}"), **(faketime_env(skew) if skew else {})}
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "floxyd", str(self.yaml)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
            )
        inc = Incarnation(slot, gen, proc, log, ledger, time.time(), skew)
        self.all.append(inc)
        self.current[slot] = inc
        return inc

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        for inc in self.current.values():
            while "floxyd started with" not in inc.log.read_text(errors="replace"):
                if inc.proc.poll() is not None:
                    raise RuntimeError(
                        f"floxyd exited with {inc.proc.returncode}:\n{inc.log.read_text()}"
                    )
                if time.monotonic() > deadline:
                    raise RuntimeError(f"floxyd not ready after {timeout}s:\n{inc.log.read_text()}")
                time.sleep(0.05)

    def ready(self, slot: int) -> bool:
        """Whether the slot's daemon has started its workers (faults hit running daemons)."""
        return "floxyd started with" in self.current[slot].log.read_text(errors="replace")

    def kill(self, slot: int) -> Incarnation:
        inc = self.current.pop(slot)
        if inc.proc.poll() is None:
            inc.proc.kill()
            inc.killed = time.time()
        inc.exit_code = inc.proc.wait(10)
        return inc

    def terminate(self, slot: int) -> Incarnation:
        """SIGTERM: it stops claiming, gives running steps the grace, then exits (reaped)."""
        inc = self.current[slot]
        if inc.proc.poll() is None:
            inc.proc.send_signal(signal.SIGTERM)
            inc.terminated = time.time()
        return inc

    def freeze(self, slot: int) -> Incarnation:
        inc = self.current[slot]
        inc.proc.send_signal(signal.SIGSTOP)
        inc.frozen.append((time.time(), float("inf")))
        return inc

    def thaw(self, slot: int) -> None:
        inc = self.current.get(slot)
        if inc is not None and inc.frozen and inc.frozen[-1][1] == float("inf"):
            inc.proc.send_signal(signal.SIGCONT)
            inc.frozen[-1] = (inc.frozen[-1][0], time.time())

    def reap(self) -> list[int]:
        """Slots whose daemon exited: after a SIGTERM as asked (exit code 0 expected), else on
        its own (recorded as unexpected exits)."""
        gone = []
        for slot, inc in list(self.current.items()):
            if inc.proc.poll() is not None:
                inc.exit_code = inc.proc.returncode
                if inc.terminated is None or inc.exit_code != 0:
                    self.unexpected_exits.append(inc)
                del self.current[slot]
                gone.append(slot)
        return gone

    def terminate_all(self, timeout: float = 20.0) -> None:
        for slot in list(self.current):
            self.thaw(slot)
        for inc in self.current.values():
            if inc.proc.poll() is None:
                inc.proc.send_signal(signal.SIGTERM)
        for inc in self.current.values():
            try:
                inc.exit_code = inc.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                inc.proc.kill()
                inc.exit_code = inc.proc.wait(10)
        self.current.clear()

    def kill_all(self) -> None:
        for inc in self.all:
            if inc.proc.poll() is None:
                inc.proc.send_signal(signal.SIGCONT)
                inc.proc.kill()
                inc.proc.wait(10)


def handler_processes(script: Path) -> list[int]:
    """PIDs of bash handlers still running `script` (orphans of killed daemons)."""
    found = []
    needle = str(script).encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in cmdline and state not in ("Z", "X"):
            found.append(int(entry))
    return found


# --------------------------------------------------------------------------------------------
# The run


@dataclass
class Config:
    instances: int = 200
    duration: float = 90.0
    """Seconds of chaos (kills, cancels, the PostgreSQL restart); instances start in the first
    70% of it."""
    daemons: int = 3
    workers: int = 4
    kill_every: tuple[float, float] = (3.0, 6.0)
    """Seconds between two faults; each is one of `faults`, on a random daemon."""
    faults: tuple[str, ...] = ("kill", "term", "stop")
    """SIGKILL; SIGTERM (the daemon exits after the shutdown grace and is restarted); SIGSTOP
    for `freeze_for` seconds (past the lease), then SIGCONT."""
    freeze_for: tuple[float, float] = (3.0, 6.0)
    skew: float = 30.0
    """Daemon slot 0 runs with its wall clock this many seconds ahead (`faketime`; 0: none)."""
    password: str | None = "chaos-secret"
    """PostgreSQL password authentication (SCRAM) with this password; None: trust."""
    requeues: bool = True
    """Requeue instances parked in the DLQ (with a plan that no longer fails) now and then."""
    restart_after: float = 0.5
    pg_restart: bool = True
    pg_down_for: float = 2.0
    cancels: int = 5
    """Random stops of mid-run instances; one in three is an abort, the rest cancels."""
    rollback_stops: int = 4
    """Stops (cancel and abort in turn) sent to instances caught rolling back a failure."""
    seed: int = 20240601
    lease: str = "2s"
    settle_timeout: float = 120.0
    workdir: Path | None = None
    keep: bool = False
    log: Callable[[str], None] = print


@dataclass
class Decision:
    """What the driver answered a human step, and what the engine made of it."""

    answer: str
    at: float
    """When the first answer was sent (driver clock)."""
    accepted: bool
    second_refused: bool | None = None
    """For a plan with `twice`: whether the second answer was refused, as it must be."""


@dataclass
class Stats:
    started: int = 0
    kills: int = 0
    terms: int = 0
    freezes: int = 0
    requeued: list[int] = field(default_factory=list)
    cancels_in_rollback: list[int] = field(default_factory=list)
    aborts_in_rollback: list[int] = field(default_factory=list)
    aborts: list[int] = field(default_factory=list)
    decisions: dict[int, Decision] = field(default_factory=dict)
    remote_calls: int = 0
    remote_unknown: int = 0
    submitted: dict[int, float] = field(default_factory=dict)
    """Instance → when the driver started it (wall clock)."""
    daemon_restarts: int = 0
    pg_restarts: int = 0
    pg_restart_window: tuple[float, float] | None = None
    cancels: list[int] = field(default_factory=list)
    cancel_conflicts: int = 0
    settle_seconds: float = 0.0
    duration: float = 0.0
    orphans_killed: int = 0


@dataclass
class Check:
    name: str
    checked: int = 0
    violations: list[str] = field(default_factory=list)

    def add(self, ok: bool, message: str) -> None:
        self.checked += 1
        if not ok:
            self.violations.append(message)


@dataclass
class Report:
    config: Config
    stats: Stats
    checks: list[Check]
    figures: dict[str, Any]
    workdir: Path

    @property
    def violations(self) -> int:
        return sum(len(c.violations) for c in self.checks)

    def table(self, details: int = 10) -> str:
        width = max(len(c.name) for c in self.checks)
        lines = [f"{'invariant':<{width}}  {'checked':>8}  {'violations':>10}"]
        lines.append("-" * len(lines[0]))
        for c in self.checks:
            lines.append(f"{c.name:<{width}}  {c.checked:>8}  {len(c.violations):>10}")
        lines.append("")
        for key, value in self.figures.items():
            lines.append(f"{key}: {value}")
        for c in self.checks:
            for message in c.violations[:details]:
                lines.append(f"VIOLATION [{c.name}] {message}")
            if len(c.violations) > details:
                lines.append(f"VIOLATION [{c.name}] ... and {len(c.violations) - details} more")
        return "\n".join(lines)


def _retry(what: str, fn: Callable[[], Any], timeout: float = 90.0) -> Any:
    """Call `fn` until the database answers (it is restarted during the run)."""
    import psycopg

    from floxy_core.errors import StoreError

    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except (StoreError, psycopg.OperationalError) as exc:
            if (
                isinstance(exc, StoreError)
                and not isinstance(exc.__cause__, psycopg.OperationalError)
                and "unavailable" not in str(exc)
            ):
                raise
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what}: database unavailable for {timeout}s") from exc
            time.sleep(0.2)


def run(config: Config) -> Report:
    """Run the chaos scenario and check the invariants; see the module docstring."""
    from floxy_core.runtime import Runtime
    from floxy_core.storage.postgres.store import PostgresStore

    say = config.log
    rng = random.Random(config.seed)
    owned_workdir = config.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="floxy-chaos-")) if owned_workdir else config.workdir
    assert workdir is not None
    workdir.mkdir(parents=True, exist_ok=True)
    script = workdir / "work.sh"
    script.write_text(WORK_SH)
    daemons: Daemons | None = None
    remote = Remote(lambda name: None if daemons is None else daemons.ledger_of(name))
    yaml = workdir / "chaos.yaml"
    yaml.write_text(json.dumps(workflow_file(script, remote.port), indent=1))

    stats = Stats()
    began = time.monotonic()
    pg = PgServer(password=config.password)
    store: PostgresStore | None = None
    try:
        remote.start()
        pg.start()
        dsn = pg.create_database("chaos")
        say(f"chaos: PostgreSQL on port {pg.port}, work directory {workdir}")
        skews = {0: config.skew} if config.skew else {}
        daemons = Daemons(workdir, yaml, dsn, config.workers, config.lease, skews)
        for slot in range(config.daemons):
            daemons.start(slot)
        daemons.wait_ready()
        store = PostgresStore(dsn, max_size=4, connect_timeout=30)
        runtime = Runtime(store, {})

        flows = list(FLOW_WEIGHTS)
        weights = [FLOW_WEIGHTS[f] for f in flows]
        inputs = []
        for _ in range(config.instances):
            flow = rng.choices(flows, weights)[0]
            inputs.append((f"{flow}-v1", {"plan": make_plan(rng, flow)}))
        window = config.duration * 0.7
        submit_at = [window * i / max(1, config.instances) for i in range(config.instances)]
        cancel_at = sorted(rng.uniform(0.1, 0.8) * config.duration for _ in range(config.cancels))
        pg_restart_at = config.duration * 0.5 if config.pg_restart else None
        next_kill = rng.uniform(*config.kill_every)
        thaw_at: dict[int, float] = {}
        restarts: list[tuple[float, int]] = []
        started_ids: list[int] = []
        plans: dict[int, dict[str, Any]] = {}
        waiting: dict[int, float] = {}
        """Instance → when to answer its human step (elapsed seconds)."""
        next_poll = 0.0
        next_rollback_stop = config.duration * 0.1
        rollback_stops = config.rollback_stops
        t0 = time.monotonic()

        def elapsed() -> float:
            return time.monotonic() - t0

        say(
            f"chaos: {config.instances} instances, {config.daemons} daemons x {config.workers} "
            f"workers, {config.duration:.0f}s of chaos, seed {config.seed}"
        )
        while True:
            now = elapsed()
            while stats.started < config.instances and (
                submit_at[stats.started] <= now or now >= config.duration
            ):
                workflow_id, data = inputs[stats.started]
                iid = _retry("start", lambda w=workflow_id, d=data: runtime.start_instance(w, d))
                started_ids.append(iid)
                plans[iid] = data["plan"]
                stats.submitted[iid] = time.time()
                stats.started += 1
            if now >= config.duration and stats.started >= config.instances:
                break
            if now >= next_kill:
                able = [
                    s
                    for s in sorted(daemons.current)
                    if s not in thaw_at
                    and daemons.current[s].terminated is None
                    and daemons.ready(s)
                ]
                if able:
                    slot = rng.choice(able)
                    fault = rng.choice(config.faults)
                    pid = daemons.current[slot].proc.pid
                    if fault == "kill":
                        inc = daemons.kill(slot)
                        stats.kills += 1
                        restarts.append((now + config.restart_after, slot))
                    elif fault == "term":
                        inc = daemons.terminate(slot)
                        stats.terms += 1
                    else:
                        inc = daemons.freeze(slot)
                        stats.freezes += 1
                        thaw_at[slot] = now + rng.uniform(*config.freeze_for)
                    signame = {"kill": "SIGKILL", "term": "SIGTERM", "stop": "SIGSTOP"}[fault]
                    say(f"chaos: t={now:5.1f}s {signame} floxyd {slot}.{inc.gen} (pid {pid})")
                next_kill = now + rng.uniform(*config.kill_every)
            for slot, when in list(thaw_at.items()):
                if when <= now:
                    del thaw_at[slot]
                    daemons.thaw(slot)
                    say(f"chaos: t={now:5.1f}s SIGCONT floxyd {slot}")
            for slot in daemons.reap():
                inc = next(i for i in reversed(daemons.all) if i.slot == slot)
                how = "after SIGTERM" if inc.terminated is not None else "by itself"
                say(f"chaos: t={now:5.1f}s floxyd {slot}.{inc.gen} exited {how} ({inc.exit_code})")
                restarts.append((now + config.restart_after, slot))
            for entry in [r for r in restarts if r[0] <= now]:
                restarts.remove(entry)
                daemons.start(entry[1])
                stats.daemon_restarts += 1
            if pg_restart_at is not None and now >= pg_restart_at:
                pg_restart_at = None
                say(f"chaos: t={now:5.1f}s stopping PostgreSQL (pg_ctl stop -m fast)")
                down = time.time()
                pg.stop()
                time.sleep(config.pg_down_for)
                pg.start()
                stats.pg_restarts += 1
                stats.pg_restart_window = (down, time.time())
                say(f"chaos: t={elapsed():5.1f}s PostgreSQL is back on port {pg.port}")
            if now >= next_poll:
                next_poll = now + 0.5
                for iid in _retry("waiting", lambda: _waiting(store)):
                    if iid not in waiting and iid not in stats.decisions and iid in plans:
                        waiting[iid] = now + float(plans[iid].get("decide_after", 0.0))
                if rollback_stops and now >= next_rollback_stop:
                    rolling = [
                        i
                        for i in _retry("rolling back", lambda: _rolling_back(store))
                        if i in plans and i not in stats.cancels and i not in stats.aborts
                    ]
                    if rolling:
                        victim = rng.choice(rolling)
                        how = "abort" if rollback_stops % 2 else "cancel"
                        rollback_stops -= 1
                        next_rollback_stop = now + config.duration * 0.6 / config.rollback_stops
                        _stop(runtime, victim, how, stats, say, now, "rolling_back")
            for iid, when in sorted(waiting.items(), key=lambda kv: kv[1]):
                if when <= now:
                    del waiting[iid]
                    stats.decisions[iid] = _answer(runtime, iid, plans[iid], say, now)
            while cancel_at and cancel_at[0] <= now:
                cancel_at.pop(0)
                # Mid-run instances among the latest started (not those paused in the DLQ);
                # those caught rolling back get the rollback stops above.
                candidates = [i for i in started_ids[-30:] if i not in stats.cancels]
                active = _retry(
                    "active instances",
                    lambda c=candidates: {
                        i: status
                        for i in c
                        if (status := store.get_instance(i).status.value)
                        in ("running", "rolling_back")
                    },
                )
                if config.requeues:
                    _requeue_one(store, runtime, started_ids, stats, say, now)
                if not active:
                    continue
                victim = rng.choice(sorted(active))
                how = "abort" if rng.random() < 1 / 3 else "cancel"
                _stop(runtime, victim, how, stats, say, now, active[victim])
            time.sleep(0.05)

        # Calm: every daemon thawed and up, then wait for every instance to settle.
        for slot in list(thaw_at):
            daemons.thaw(slot)
        thaw_at.clear()
        for _, slot in restarts:
            daemons.start(slot)
            stats.daemon_restarts += 1
        for slot in daemons.reap():
            daemons.start(slot)
            stats.daemon_restarts += 1
        settle_from = time.monotonic()
        say(f"chaos: chaos over after {elapsed():.0f}s; waiting for the instances to settle")
        deadline = settle_from + config.settle_timeout
        while time.monotonic() < deadline:
            left = _retry("unsettled", lambda: _unsettled(store))
            if left == 0:
                break
            for slot in daemons.reap():
                daemons.start(slot)
                stats.daemon_restarts += 1
            time.sleep(0.5)
        stats.settle_seconds = time.monotonic() - settle_from
        # Handlers die with their daemon (bash.py `_guarded`): any left now are orphans, counted.
        orphan_deadline = time.monotonic() + 2
        while handler_processes(script) and time.monotonic() < orphan_deadline:
            time.sleep(0.1)
        for pid in handler_processes(script):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
                stats.orphans_killed += 1
        daemons.terminate_all()
        stats.duration = time.monotonic() - began
        stats.remote_calls, stats.remote_unknown = remote.calls, remote.unknown
        say(f"chaos: settled in {stats.settle_seconds:.1f}s; checking the invariants")
        checks, figures = check_invariants(store, dsn, workdir, daemons, stats, config)
        return Report(config, stats, checks, figures, workdir)
    finally:
        remote.stop()
        if store is not None:
            store.close()
        if daemons is not None:
            daemons.kill_all()
            for pid in handler_processes(script):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
        pg.destroy()
        if owned_workdir and not config.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def _requeue_one(
    store: Any,
    runtime: Any,
    started: list[int],
    stats: Stats,
    say: Callable[[str], None],
    now: float,
) -> None:
    """Requeue the oldest instance parked in the DLQ, with a plan that no longer fails."""
    from floxy_core.errors import FloxyError

    records = _retry("dlq", lambda: store.get_dlq(limit=50))
    for record in sorted(records, key=lambda r: r.id):
        if record.instance_id in stats.requeued or record.instance_id not in started:
            continue
        plan = dict((record.input or {}).get("plan") or {})
        plan["fail"] = {}
        try:
            _retry("requeue", lambda r=record, p=plan: runtime.requeue(r.id, {"plan": p}))
        except FloxyError as exc:
            say(f"chaos: t={now:5.1f}s requeue of instance {record.instance_id} refused: {exc}")
            return
        stats.requeued.append(record.instance_id)
        say(f"chaos: t={now:5.1f}s requeued instance {record.instance_id} from the DLQ")
        return


def _stop(
    runtime: Any, iid: int, how: str, stats: Stats, say: Callable[[str], None], now: float, was: str
) -> None:
    """Cancel or abort an instance whose status was `was`, and record what became of it. A
    cancel that meets a failure's rollback is refused, as it would change nothing."""
    from floxy_core.errors import ConflictError

    act = runtime.abort if how == "abort" else runtime.cancel
    try:
        _retry(how, lambda: act(iid, "chaos", f"random {how}"))
    except ConflictError as exc:
        if how == "cancel" and "rolling back after a failure" in str(exc):
            stats.cancels_in_rollback.append(iid)
            say(f"chaos: t={now:5.1f}s cancel of instance {iid} during its rollback: {exc}")
        else:
            stats.cancel_conflicts += 1
        return
    (stats.aborts if how == "abort" else stats.cancels).append(iid)
    if how == "abort" and was == "rolling_back":
        stats.aborts_in_rollback.append(iid)
    done = "aborted" if how == "abort" else "cancelled"
    say(f"chaos: t={now:5.1f}s {done} instance {iid} ({was})")


def _answer(
    runtime: Any, iid: int, plan: dict[str, Any], say: Callable[[str], None], now: float
) -> Decision:
    """Answer a waiting human step as planned (`timeout`: not at all); maybe answer twice."""
    from floxy_core.errors import FloxyError

    answer = str(plan.get("human"))
    if answer == "timeout":
        return Decision(answer, time.time(), accepted=False)
    at = time.time()

    def decide() -> None:
        word = {"confirm": "confirmed", "reject": "rejected"}[answer]
        runtime.decide(iid, "approve", word, "chaos", f"planned {answer}")

    try:
        _retry("decide", decide)
    except FloxyError as exc:
        say(f"chaos: t={now:5.1f}s {answer} of instance {iid} refused: {exc}")
        return Decision(answer, at, accepted=False)
    decision = Decision(answer, at, accepted=True)
    if plan.get("twice"):
        try:
            _retry("decide again", decide)
            decision.second_refused = False
        except FloxyError:
            decision.second_refused = True
    return decision


def _waiting(store: Any) -> list[int]:
    with store.pool.connection() as conn:
        rows = conn.execute(
            "SELECT instance_id FROM workflows.workflow_steps WHERE status = 'waiting_decision'"
        ).fetchall()
    return [int(r[0]) for r in rows]


def _rolling_back(store: Any) -> list[int]:
    with store.pool.connection() as conn:
        rows = conn.execute(
            "SELECT id FROM workflows.workflow_instances WHERE status = 'rolling_back'"
        ).fetchall()
    return [int(r[0]) for r in rows]


def _unsettled(store: Any) -> int:
    with store.pool.connection() as conn:
        row = conn.execute(
            "SELECT count(*) FROM workflows.workflow_instances "
            "WHERE status NOT IN ('completed', 'failed', 'cancelled', 'aborted', 'dlq')"
        ).fetchone()
    return int(row[0])


# --------------------------------------------------------------------------------------------
# The invariants


@dataclass(frozen=True)
class Call:
    at: float
    phase: str
    call: str
    instance: int
    step: str
    key: str
    attempt: int
    compensation: bool
    pid: int
    incarnation: Incarnation
    remote: bool = False
    """Written by the HTTP service (its call outlives a killed daemon, as a service's does)."""


def read_ledger(daemons: Daemons) -> list[Call]:
    calls = []
    for inc in daemons.all:
        for path, remote in ((inc.ledger, False), (inc.http_ledger, True)):
            for line in path.read_text().splitlines():
                parts = line.split()
                if len(parts) != 9:
                    continue  # a line cut by a kill cannot happen with O_APPEND, but be safe
                at, phase, call, iid, step, key, attempt, comp, pid = parts
                # One clock for every line: a daemon's handlers share its shifted wall clock;
                # the service writes on the driver's.
                calls.append(
                    Call(
                        float(at) - (0.0 if remote else inc.skew), phase, call, int(iid), step,
                        key, int(attempt), comp == "true", int(pid), inc, remote,
                    )
                )  # fmt: skip
    calls.sort(key=lambda c: c.at)
    return calls


def _epoch(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def check_invariants(
    store: Any, dsn: str, workdir: Path, daemons: Daemons, stats: Stats, config: Config
) -> tuple[list[Check], dict[str, Any]]:
    """Read the database and the ledger; return the checks and the figures of the run."""
    import psycopg

    from floxy_core.graph import graph_of

    with psycopg.connect(dsn) as conn:
        instances = {
            r[0]: {"id": r[0], "workflow_id": r[1], "status": r[2], "input": r[3], "error": r[4]}
            for r in conn.execute(
                "SELECT id, workflow_id, status, input, error FROM workflows.workflow_instances"
            )
        }
        steps: dict[int, dict[str, dict[str, Any]]] = defaultdict(dict)
        step_rows: Counter[tuple[int, str]] = Counter()
        for r in conn.execute(
            "SELECT instance_id, step_name, step_type, status, output, error, retry_count, "
            "compensation_retry_count, idempotency_key, completed_at, id, input, started_at "
            "FROM workflows.workflow_steps ORDER BY id"
        ):
            steps[r[0]][r[1]] = {
                "name": r[1], "type": r[2], "status": r[3], "output": r[4], "error": r[5],
                "retry_count": r[6], "comp_retry_count": r[7], "key": str(r[8]),
                "completed_at": _epoch(r[9]), "id": r[10], "input": r[11],
                "started_at": _epoch(r[12]),
            }  # fmt: skip
            step_rows[(r[0], r[1])] += 1
        events: dict[int, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
        ended_at: dict[int, float] = {}
        for r in conn.execute(
            "SELECT instance_id, event_type, payload, created_at FROM workflows.workflow_events "
            "ORDER BY id"
        ):
            events[r[0]].append((r[1], r[2] or {}))
            if r[1] in {f"workflow_{s}" for s in TERMINAL}:
                ended_at.setdefault(r[0], r[3].timestamp())
        queue = Counter(
            r[0] for r in conn.execute("SELECT instance_id FROM workflows.workflow_queue")
        )
        dlq: dict[int, list[tuple[str, str]]] = defaultdict(list)
        for r in conn.execute("SELECT instance_id, step_name, reason FROM workflows.workflow_dlq"):
            dlq[r[0]].append((r[1], r[2]))

    definitions = {
        wid: store.get_definition(wid) for wid in {i["workflow_id"] for i in instances.values()}
    }
    calls = read_ledger(daemons)
    by_step: dict[tuple[int, str, bool], list[Call]] = defaultdict(list)
    by_call: dict[str, Call] = {}
    for c in calls:
        by_step[(c.instance, c.step, c.compensation)].append(c)
        if c.phase == "ok":
            by_call[c.call] = c

    settled = Check("every instance terminal or visibly paused (dlq)")
    outcome = Check("outcome as planned by the seed (cancel/refusal aside)")
    once = Check("completed step: output from one successful attempt")
    retries = Check("completed step: retries as planned, one step_retry event each")
    comps = Check("failed/cancelled: compensated after savepoint, reverse order")
    at_most_once = Check("no_idempotent step never called twice")
    leftovers = Check("terminal instance: no queue row, no running/pending step")
    events_check = Check("every state change has its event")
    exactly_once = Check("state transitions recorded exactly once")
    started_undone = Check(
        "rolled back: every started step compensated, whatever became of its call"
    )
    undo_after = Check("a compensation starts only after every call it undoes has ended")
    no_overlap = Check("two calls of one step never overlap")
    outlived = Check("no handler runs on after its daemon was SIGKILLed")
    rollback_kept = Check(
        "a cancel during a failure's rollback changes nothing: the instance ends failed"
    )
    human = Check(
        "human step: confirm continues once with its input; reject and timeout abort; "
        "a second answer is refused"
    )
    abort_honest = Check("aborted: no interrupted compensation reported done")
    human_waits: list[float] = []
    dup_success = 0
    dup_success_steps = 0
    dup_comp = 0
    refusals = 0
    refused_after_ok = 0
    refused_live = 0
    timed_out_frozen = 0
    lease = _seconds(config.lease)
    cancelled_by_us = set(stats.cancels)
    aborted_by_us = set(stats.aborts)
    in_rollback = set(stats.cancels_in_rollback)
    requeued = set(stats.requeued)

    started_at = {c.call: c.at for c in calls if c.phase == "start"}
    spawn_race: set[str] = set()
    for c in calls:
        killed = c.incarnation.killed
        if c.remote:
            continue  # a service finishes what it was asked whatever became of the client
        if killed is not None and started_at.get(c.call, c.at) > killed:
            # Spawned as the daemon died, before its guard set the parent-death signal: the
            # known gap of `_guarded` (docs/reliability.md), counted apart.
            spawn_race.add(c.call)
        elif killed is not None:
            outlived.add(
                c.at <= killed + ORPHAN_SLACK,
                f"instance {c.instance} step {c.step}: `{c.phase}` at {c.at:.3f} from a handler of "
                f"daemon {c.incarnation.slot}.{c.incarnation.gen}, SIGKILLed at {killed:.3f}",
            )

    for iid, inst in sorted(instances.items()):
        status = inst["status"]
        plan = (inst["input"] or {}).get("plan", {})
        flow = plan.get("flow", inst["workflow_id"].rsplit("-v", 1)[0])
        definition = definitions[inst["workflow_id"]]
        rows = steps.get(iid, {})
        evs = events.get(iid, [])
        where = f"instance {iid} ({flow}, {status})"

        # 1. settled
        ok = status in TERMINAL or (status in PAUSED and bool(dlq.get(iid)))
        settled.add(
            ok,
            f"{where} is stuck: steps "
            + ", ".join(f"{n}={r['status']}" for n, r in rows.items())
            + f"; queue rows {queue.get(iid, 0)}",
        )

        # 2. outcome as planned
        expected = expected_outcome(plan)
        refused = [r for r in rows.values() if r["error"] and REFUSED in r["error"]]
        refusals += len(refused)
        # A call whose daemon was frozen (SIGSTOP) past the step's timeout fails when it wakes.
        frozen_timeouts = [
            r
            for r in rows.values()
            if r["error"]
            and "timed out" in r["error"]
            and any(
                c.phase == "start" and a < c.at + CHARGE_TIMEOUT and b > c.at
                for c in by_step.get((iid, r["name"], False), [])
                for a, b in c.incarnation.frozen
            )
        ]
        timed_out_frozen += len(frozen_timeouts)
        for r in refused:
            ran = [c for c in by_step.get((iid, r["name"], False), [])]
            if any(c.phase == "ok" for c in ran):
                refused_after_ok += 1
            for c in ran:
                inc = c.incarnation
                gone = inc.gone_by()
                frozen = any(c.at - 1.0 <= a <= c.at + lease + 3.0 for a, _ in inc.frozen)
                lost = frozen or (gone is not None and gone <= c.at + lease + 3.0)
                if c.phase == "start" and not lost:
                    refused_live += 1
                    config.log(
                        f"chaos: {where}: no_idempotent {r['name']} refused although daemon "
                        f"{inc.slot}.{inc.gen} that ran it at {c.at:.3f} was neither stopped "
                        f"nor frozen within lease+3s (gone {gone})"
                    )
        decision = stats.decisions.get(iid)
        if iid in aborted_by_us:
            ok = status == "aborted"
        elif iid in in_rollback:
            ok = status == "failed"
            rollback_kept.add(
                ok and "random cancel" not in (inst["error"] or ""),
                f"{where}: cancelled during its rollback (error {inst['error']!r})",
            )
        elif iid in cancelled_by_us:
            ok = status == "cancelled"
        elif decision is not None and not decision.accepted:
            ok = status == "aborted"  # the step timed out (as planned, or before the answer)
        elif refused or frozen_timeouts:
            ok = status in ("failed", "cancelled")
        elif iid in requeued:
            ok = status == "completed"
        else:
            ok = status == expected.status
        outcome.add(ok, f"{where}: expected {expected.status} from plan {plan}")
        if status == "completed" and iid not in cancelled_by_us | aborted_by_us:
            tasks = {n for n, r in rows.items() if r["type"] == "task"}
            done = {n for n in tasks if rows[n]["status"] == "completed"}
            failed = {n for n in tasks if rows[n]["status"] == "failed"}
            outcome.add(
                done == set(expected.completed) and failed <= set(expected.may_fail),
                f"{where}: completed tasks {sorted(done)}, failed {sorted(failed)}; "
                f"expected {sorted(expected.completed)} (may fail {sorted(expected.may_fail)})",
            )

        # 3. output provenance; duplicate successes are at-least-once evidence
        for name, r in rows.items():
            if r["type"] != "task" or r["status"] not in ("completed", "rolled_back"):
                continue
            if r["status"] == "rolled_back" and r["output"] is None:
                continue
            out = r["output"] if isinstance(r["output"], dict) else {}
            call = by_call.get(str(out.get("call")))
            once.add(
                call is not None
                and call.instance == iid
                and call.step == name
                and call.key == r["key"]
                and not call.compensation
                and call.attempt == r["retry_count"],
                f"{where}: step {name} output {out.get('call')!r} (attempt "
                f"{out.get('attempt')}) does not match one successful call with key {r['key']} "
                f"at attempt {r['retry_count']}",
            )
            oks = [c for c in by_step.get((iid, name, False), []) if c.phase == "ok"]
            if len(oks) > 1:
                dup_success += len(oks) - 1
                dup_success_steps += 1

        # 4. retries as planned (only the plan decides how many attempts fail)
        for name, r in rows.items():
            if r["type"] != "task" or r["status"] != "completed" or iid in requeued:
                continue
            planned = int(plan.get("fail", {}).get(name, 0))
            retry_events = sum(
                1 for t, p in evs if t == "step_retry" and p.get("step_name") == name
            )
            retries.add(
                r["retry_count"] == planned and retry_events == planned,
                f"{where}: step {name} retry_count {r['retry_count']}, step_retry events "
                f"{retry_events}, planned failures {planned}",
            )

        # 5. compensations of failed and cancelled instances
        if status in ("failed", "cancelled"):
            scope: set[str] | None = None
            savepoints = [n for n, d in definition.steps.items() if d.type.value == "save_point"]
            for sp in savepoints:
                if status == "failed" and rows.get(sp, {}).get("status") == "completed":
                    scope = set(graph_of(definition).descendants(sp))
            first_ok: list[tuple[float, str]] = []
            for name, r in rows.items():
                d = definition.steps[name]
                comp_calls = by_step.get((iid, name, True), [])
                comp_oks = [c for c in comp_calls if c.phase == "ok"]
                in_scope = scope is None or name in scope
                if len(comp_oks) > 1:
                    dup_comp += len(comp_oks) - 1
                if not in_scope:
                    comps.add(
                        not comp_calls and r["status"] == "completed",
                        f"{where}: step {name} before the savepoint is {r['status']} with "
                        f"{len(comp_calls)} compensation calls",
                    )
                    continue
                if r["status"] == "completed":
                    comps.add(False, f"{where}: step {name} completed but never compensated")
                elif r["status"] == "rolled_back":
                    if d.on_failure:
                        comps.add(
                            bool(comp_oks),
                            f"{where}: step {name} rolled back without a successful "
                            f"compensation call",
                        )
                        if comp_oks:
                            first_ok.append((comp_oks[0].at, name))
                    else:
                        comps.add(True, "")
                elif r["status"] == "failed" and any(
                    s == name and reason == "compensation max retries exceeded"
                    for s, reason in dlq.get(iid, [])
                ):
                    comps.add(True, "")
                elif not by_step.get((iid, name, False)):
                    # Only a step whose handler never started goes without compensation.
                    comps.add(
                        not comp_oks,
                        f"{where}: step {name} is {r['status']}, never started, yet was "
                        f"compensated {len(comp_oks)} times",
                    )
                if in_scope and d.on_failure and by_step.get((iid, name, False)):
                    parked = any(
                        s == name and reason == "compensation max retries exceeded"
                        for s, reason in dlq.get(iid, [])
                    )
                    started_undone.add(
                        bool(comp_oks) or parked,
                        f"{where}: step {name} ({r['status']}) was started "
                        f"{sum(1 for c in by_step[(iid, name, False)] if c.phase == 'start')} "
                        "times but never compensated",
                    )
            first_ok.sort()
            order = [n for _, n in first_ok]
            # The failed step's own compensation first, then newest completion first.
            with_error = [n for n in order if rows[n]["error"]]
            without = [n for n in order if not rows[n]["error"]]
            times = [rows[n]["completed_at"] or 0.0 for n in without]
            reverse = all(a >= b for a, b in itertools.pairwise(times))
            comps.add(
                order == with_error + without and reverse,
                f"{where}: compensation order {order}; completion times "
                + ", ".join(f"{n}={rows[n]['completed_at']}" for n in order),
            )

        # 5b. a compensation after every call it undoes; no two calls of a step at once
        for name in rows:
            task_calls = by_step.get((iid, name, False), [])
            undo_calls = [c for c in by_step.get((iid, name, True), []) if c.phase == "start"]
            ended = {c.call: c.at for c in task_calls if c.phase in ("ok", "fail")}
            if undo_calls:
                first_undo = undo_calls[0].at
                late = [
                    f"{c.phase} at {c.at:.3f}"
                    for c in task_calls
                    if c.phase in ("ok", "fail") and c.at > first_undo
                ]
                undo_after.add(
                    not late,
                    f"{where}: step {name} compensated from {first_undo:.3f} but a call of it "
                    f"ended later ({', '.join(late)})",
                )
            starts = [c for c in task_calls if c.phase == "start"]
            for a, b in itertools.pairwise(starts):
                end = ended.get(a.call)
                no_overlap.add(
                    end is None or end <= b.at,
                    f"{where}: step {name}: a call started at {b.at:.3f} (daemon "
                    f"{b.incarnation.slot}.{b.incarnation.gen}) while the one started at "
                    f"{a.at:.3f} (daemon {a.incarnation.slot}.{a.incarnation.gen}) ran until "
                    f"{end}",
                )

        # 5c. human steps (instances nobody cancelled or aborted)
        if (
            flow == "approval"
            and decision is not None
            and iid not in cancelled_by_us | aborted_by_us
        ):
            approve, after = rows.get("approve", {}), rows.get("a_after")
            undos = [c for c in calls if c.instance == iid and c.compensation]
            if decision.accepted and decision.answer == "confirm":
                human.add(
                    approve.get("status") in ("completed", "rolled_back")
                    and after is not None
                    and step_rows[(iid, "a_after")] == 1
                    and after["input"] == approve.get("input"),
                    f"{where}: confirmed, yet approve is {approve.get('status')}, a_after rows "
                    f"{step_rows[(iid, 'a_after')]}, a_after input "
                    f"{None if after is None else after['input']!r} vs approve input "
                    f"{approve.get('input')!r}",
                )
            elif decision.accepted:
                human.add(
                    status == "aborted"
                    and "rejected by chaos" in (inst["error"] or "")
                    and after is None
                    and not undos,
                    f"{where}: rejected, error {inst['error']!r}, a_after "
                    f"{'ran' if after else 'absent'}, {len(undos)} compensation calls",
                )
            else:
                # The timeout is a queue row like any other: never early (database clock, whatever
                # the daemons' clocks say), and as late as the queue's backlog makes it.
                waited = (ended_at.get(iid) or 0.0) - (approve.get("started_at") or 0.0)
                human_waits.append(waited)
                human.add(
                    status == "aborted"
                    and "decision timeout expired" in (inst["error"] or "")
                    and waited >= HUMAN_TIMEOUT - 0.05
                    and after is None
                    and not undos,
                    f"{where}: unanswered ({decision.answer}), error {inst['error']!r}, ended "
                    f"{waited:.2f}s after approve began waiting (timeout {HUMAN_TIMEOUT:g}s), "
                    f"{len(undos)} compensation calls",
                )
            if decision.second_refused is not None:
                human.add(decision.second_refused, f"{where}: a second answer was accepted")

        # 5d. an abort never reports an interrupted compensation as done
        if status == "aborted":
            for name, r in rows.items():
                d = definition.steps[name]
                if r["status"] == "rolled_back" and d.on_failure:
                    undone = [c for c in by_step.get((iid, name, True), []) if c.phase == "ok"]
                    abort_honest.add(
                        bool(undone), f"{where}: step {name} rolled_back without a finished undo"
                    )

        # 6. no_idempotent at most once
        for name in TASKS.get(flow, []):
            if name not in NO_IDEMPOTENT or name not in rows:
                continue
            starts = [c for c in by_step.get((iid, name, False), []) if c.phase == "start"]
            at_most_once.add(
                len(starts) <= 1, f"{where}: no_idempotent {name} called {len(starts)} times"
            )

        # 7. nothing left behind by a terminal instance
        if status in TERMINAL:
            active = [n for n, r in rows.items() if r["status"] in ("running", "pending")]
            leftovers.add(
                not queue.get(iid) and not active,
                f"{where}: {queue.get(iid, 0)} queue rows, active steps {active}",
            )

        # 8. every state change has its event
        def has(
            type_: str,
            name: str | None = None,
            test: Callable[[dict[str, Any]], bool] = lambda p: True,
            evs: list[tuple[str, dict[str, Any]]] = evs,
        ) -> bool:
            return any(
                t == type_ and (name is None or p.get("step_name") == name) and test(p)
                for t, p in evs
            )

        events_check.add(
            sum(1 for t, _ in evs if t == "workflow_started") == 1,
            f"{where}: workflow_started events != 1",
        )
        if status in TERMINAL:
            events_check.add(has(f"workflow_{status}"), f"{where}: no workflow_{status} event")
        if status == "dlq":
            events_check.add(
                has("step_failed", test=lambda p: p.get("reason") == "dlq"),
                f"{where}: dlq without a step_failed(reason=dlq) event",
            )
        for name, r in rows.items():
            st = r["status"]
            if st == "completed":
                ok = has("step_completed", name, lambda p: p.get("reason") not in COMP_REASONS)
                if r["type"] == "task":
                    ok = ok and has("step_started", name)
            elif st == "failed":
                ok = has("step_failed", name)
            elif st == "rolled_back":
                ok = has("step_completed", name, lambda p: p.get("reason") in COMP_REASONS)
            elif st == "skipped":
                ok = has("step_failed", name)
            elif st == "paused":
                ok = has("step_failed", name, lambda p: p.get("reason") == "dlq") or status == "dlq"
            else:
                ok = True
            what = f"{where}: step {name} is {st} without its event"
            if st == "rolled_back" and r["error"]:
                what += f" (the failed step itself, error {r['error']!r}; no step_completed event)"
            events_check.add(ok, what)

        # 9. exactly-once transitions
        ends = [t for t, _ in evs if t in {f"workflow_{s}" for s in TERMINAL}]
        exactly_once.add(
            len(ends) == (1 if status in TERMINAL else 0)
            and (not ends or ends[0] == f"workflow_{status}"),
            f"{where}: terminal events {ends}",
        )
        for name in rows:
            plain = sum(
                1 for t, p in evs
                if t == "step_completed" and p.get("step_name") == name
                and p.get("reason") not in COMP_REASONS
            )  # fmt: skip
            undone = sum(
                1 for t, p in evs
                if t == "step_completed" and p.get("step_name") == name
                and p.get("reason") in COMP_REASONS
            )  # fmt: skip
            exactly_once.add(
                plain <= 1 and undone <= 1,
                f"{where}: step {name}: {plain} step_completed and {undone} rollback events",
            )

    if config.keep:
        dump = {
            iid: {**inst, "steps": steps.get(iid, {}), "events": events.get(iid, [])}
            for iid, inst in instances.items()
        }
        (workdir / "state.json").write_text(json.dumps(dump, indent=1, default=str))
    statuses = Counter(i["status"] for i in instances.values())
    first_call: dict[int, float] = {}
    for c in calls:
        if c.phase == "start":
            first_call.setdefault(c.instance, c.at)
    lags = sorted(first_call[i] - at for i, at in stats.submitted.items() if i in first_call) or [
        0.0
    ]
    figures = {
        "instances": len(instances),
        "by status": dict(sorted(statuses.items())),
        "daemons": config.daemons,
        "SIGKILLs": stats.kills,
        "daemon restarts": stats.daemon_restarts,
        "unexpected daemon exits": len(daemons.unexpected_exits),
        "PostgreSQL restarts": stats.pg_restarts,
        "cancels": f"{len(stats.cancels)} (+{stats.cancel_conflicts} refused: already terminal)",
        "handler calls": sum(1 for c in calls if c.phase == "start"),
        "compensation calls": sum(1 for c in calls if c.phase == "start" and c.compensation),
        "duplicate successful calls (at-least-once)": f"{dup_success} on {dup_success_steps} steps",
        "duplicate successful compensations (at-least-once)": dup_comp,
        "no_idempotent steps refused after a lost worker": (
            f"{refusals} ({refused_after_ok} whose call had succeeded; "
            f"{refused_live} run by a daemon not stopped or frozen within lease+3s)"
        ),
        "steps timed out while their daemon was frozen (failed as they must)": timed_out_frozen,
        "handlers spawned as their daemon was SIGKILLed (guard race, ran on)": len(spawn_race),
        "faults": (
            f"{stats.kills} SIGKILL, {stats.terms} SIGTERM, {stats.freezes} SIGSTOP; "
            f"daemon clocks ahead: {sorted(daemons.skews.items()) or 'none'}"
        ),
        "cancels during a rollback": len(stats.cancels_in_rollback),
        "aborts": f"{len(stats.aborts)} ({len(stats.aborts_in_rollback)} during a rollback)",
        "human answers": dict(
            sorted(
                Counter(
                    d.answer + ("" if d.accepted or d.answer == "timeout" else " (refused)")
                    for d in stats.decisions.values()
                ).items()
            )
        ),
        f"human steps timed out after (s, timeout {HUMAN_TIMEOUT:g}s; later under a backlog)": (
            f"{min(human_waits):.1f} to {max(human_waits):.1f}" if human_waits else "none"
        ),
        "queue backlog (first call of an instance after its start, median / max)": (
            f"{lags[len(lags) // 2]:.1f}s / {lags[-1]:.1f}s"
        ),
        "HTTP calls": f"{stats.remote_calls} ({stats.remote_unknown} from an unknown daemon)",
        "DLQ requeues": len(stats.requeued),
        "PostgreSQL auth": "password (scram-sha-256)" if config.password else "trust",
        "orphaned handler processes killed at the end": stats.orphans_killed,
        "settle time": f"{stats.settle_seconds:.1f}s",
        "duration": f"{stats.duration:.0f}s",
        "seed": config.seed,
    }
    checks = [
        settled,
        outcome,
        once,
        retries,
        comps,
        at_most_once,
        leftovers,
        events_check,
        exactly_once,
        started_undone,
        undo_after,
        no_overlap,
        outlived,
        rollback_kept,
        human,
        abort_honest,
    ]
    return checks, figures


def _seconds(text: str) -> float:
    from floxy_core.durations import parse_duration_ms

    return parse_duration_ms(text) / 1000.0


# --------------------------------------------------------------------------------------------
# Command line


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.chaos.chaos",
        description="Kill floxyd processes and restart PostgreSQL under load; check invariants.",
    )
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--minutes", type=float, default=10.0, help="minutes of chaos")
    parser.add_argument("--daemons", type=int, default=3)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--kill-every", default="3,8", help="seconds between faults: MIN,MAX")
    parser.add_argument(
        "--faults", default="kill,term,stop", help="faults to draw from: kill, term, stop"
    )
    parser.add_argument("--freeze", default="3,6", help="seconds a SIGSTOP lasts: MIN,MAX")
    parser.add_argument(
        "--skew", type=float, default=30.0, help="seconds daemon 0's clock runs ahead (0: none)"
    )
    parser.add_argument("--trust", action="store_true", help="no PostgreSQL password auth")
    parser.add_argument("--no-requeues", action="store_true", help="no DLQ requeues")
    parser.add_argument("--cancels", type=int, default=None, help="default: instances / 40")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--no-pg-restart", action="store_true")
    parser.add_argument("--settle", type=float, default=300.0, help="settle deadline, seconds")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(list(argv) if argv is not None else None)
    low, high = (float(x) for x in args.kill_every.split(","))
    freeze_low, freeze_high = (float(x) for x in args.freeze.split(","))
    faults = tuple(f for f in args.faults.split(",") if f)
    if not faults or set(faults) - {"kill", "term", "stop"}:
        parser.error("--faults takes kill, term and stop, comma-separated")
    config = Config(
        instances=args.instances,
        duration=args.minutes * 60,
        daemons=args.daemons,
        workers=args.workers,
        kill_every=(low, high),
        faults=faults,
        freeze_for=(freeze_low, freeze_high),
        skew=args.skew,
        password=None if args.trust else Config.password,
        requeues=not args.no_requeues,
        cancels=args.cancels if args.cancels is not None else max(3, args.instances // 40),
        seed=args.seed,
        pg_restart=not args.no_pg_restart,
        settle_timeout=args.settle,
        keep=args.keep,
        log=lambda m: print(m, flush=True),
    )
    report = run(config)
    print(report.table(details=30), flush=True)
    if config.keep:
        print(f"work directory kept: {report.workdir}")
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
