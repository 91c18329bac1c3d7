"""A stop, a crash or a clock meeting a running handler (issue 12, processes, clocks and leases),
with real floxyd processes, real bash handlers and the test PostgreSQL:

* a handler process dies with its SIGKILLed floxyd, grandchildren included;
* a daemon whose clock runs 30 s ahead (`faketime`) neither takes over a running step nor keeps a
  step it has no handler for away from the daemon that has it;
* SIGTERM past the grace fails a `no_idempotent` step (and compensates it) instead of handing it
  back to be called again;
* a frozen worker (SIGSTOP past its lease): its `no_idempotent` step is compensated only after the
  call has surely ended (lease + timeout + margin), and its late result is refused.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from floxy_core.runtime import Runtime
from floxy_core.storage.postgres.store import PostgresStore
from tests.chaos.chaos import faketime_env
from tests.integration.floxyd_procs import Floxyd, spawn_floxyd
from tests.integration.test_floxyd import TERMINAL, gone
from tests.support import wait_for

AHEAD = faketime_env(30)
"""A wall clock 30 s ahead (tests/chaos/chaos.py `faketime_env`)."""
LEASE = "2s"


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


@pytest.fixture
def daemons() -> Iterator[list[Floxyd]]:
    started: list[Floxyd] = []
    yield started
    for daemon in started:
        if daemon.alive():
            daemon.proc.send_signal(signal.SIGCONT)
            daemon.proc.kill()
            daemon.proc.wait(10)


def flow(workdir: Path, body: str) -> Path:
    path = workdir / "flow.yaml"
    path.write_text(body.replace("$DIR", str(workdir)))
    return path


def start(dsn: str, workflow_id: str, data: object = None) -> int:
    store = PostgresStore(dsn, max_size=1)
    try:
        return Runtime(store, {}).start_instance(workflow_id, data or {})
    finally:
        store.close()


def lines(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def status_of(dsn: str, instance: int) -> tuple[str, dict[str, str]]:
    store = PostgresStore(dsn, max_size=1)
    try:
        steps = {s.step_name: s.status.value for s in store.get_steps(instance)}
        return store.get_instance(instance).status.value, steps
    finally:
        store.close()


def wait_end(dsn: str, instance: int, timeout: float) -> str:
    def done() -> str | None:
        status = status_of(dsn, instance)[0]
        return status if status in TERMINAL else None

    return str(wait_for(f"instance {instance} to end", done, timeout))


def alive(pid: int) -> bool:
    return not gone(pid)


# --------------------------------------------------------------------------------------------
# Handlers die with their worker

ORPHAN_FLOW = """\
handlers:
  - name: long
    exec: |
      sleep 30 &
      echo "$$ $!" >> $DIR/pids
      wait
      echo late >> $DIR/effects
      echo '{}'
flows:
  - name: orphan
    steps:
      - {name: long, handler: long}
"""


def test_a_sigkilled_daemons_handler_and_its_children_die_with_it(
    pg_dsn: str, workdir: Path, daemons: list[Floxyd]
) -> None:
    daemon = spawn_floxyd("victim", flow(workdir, ORPHAN_FLOW), pg_dsn, workdir)
    daemons.append(daemon)
    start(pg_dsn, "orphan-v1")
    script, child = map(int, wait_for("the handler", lambda: lines(workdir / "pids"))[0])
    daemon.kill9()
    wait_for("the script to die with its daemon", lambda: gone(script), timeout=5)
    wait_for("its background child too", lambda: gone(child), timeout=5)
    assert not (workdir / "effects").exists()


# --------------------------------------------------------------------------------------------
# Clocks: every comparison is the database's

SLOW_FLOW = """\
handlers:
  - name: slow
    exec: |
      echo "start $$" >> $DIR/calls
      sleep 6
      echo '{}'
flows:
  - name: slow
    steps:
      - {name: slow, handler: slow}
"""


def test_a_daemon_30s_ahead_does_not_take_over_a_running_step(
    pg_dsn: str, workdir: Path, daemons: list[Floxyd]
) -> None:
    file = flow(workdir, SLOW_FLOW)
    daemons.append(spawn_floxyd("normal", file, pg_dsn, workdir, FLOXY_LEASE=LEASE))
    instance = start(pg_dsn, "slow-v1")
    wait_for("the slow step to start", lambda: lines(workdir / "calls"))
    ahead = spawn_floxyd("ahead", file, pg_dsn, workdir, **AHEAD, FLOXY_LEASE=LEASE)
    daemons.append(ahead)
    assert wait_end(pg_dsn, instance, timeout=30) == "completed"
    assert len(lines(workdir / "calls")) == 1, lines(workdir / "calls")


def test_faketime_shifts_the_daemons_clock_not_the_databases(workdir: Path) -> None:
    """What the clock tests rely on: libfaketime moves Python's time.time() in the child."""
    code = "import time; print(time.time())"
    env = {**os.environ, **AHEAD}
    shifted = subprocess.run(["python3", "-c", code], env=env, capture_output=True, text=True)
    assert float(shifted.stdout) - time.time() > 25


TWO_HANDLERS = """\
handlers:
  - name: a
    exec: |
      echo '{"by": "a"}'
  - name: b
    exec: |
      echo '{"by": "b"}'
flows:
  - name: pair
    steps:
      - {name: first, handler: a}
      - {name: second, handler: b}
"""


def test_a_daemon_ahead_that_lacks_the_handler_does_not_keep_the_step(
    pg_dsn: str, workdir: Path, daemons: list[Floxyd]
) -> None:
    file = flow(workdir, TWO_HANDLERS)
    # Only the daemon ahead runs at first: it skips `first` (no handler a) and reschedules it.
    ahead = spawn_floxyd("ahead", file, pg_dsn, workdir, **AHEAD, FLOXY_HANDLERS="b")
    daemons.append(ahead)
    instance = start(pg_dsn, "pair-v1")
    time.sleep(1.5)
    assert status_of(pg_dsn, instance)[1]["first"] == "pending"
    daemons.append(spawn_floxyd("has-a", file, pg_dsn, workdir, FLOXY_HANDLERS="a"))
    assert wait_end(pg_dsn, instance, timeout=20) == "completed"


# --------------------------------------------------------------------------------------------
# no_idempotent across SIGTERM and a frozen worker

ONCE_FLOW = """\
handlers:
  - name: work
    exec: |
      echo "$FLOXY_STEP_NAME ${FLOXY_COMPENSATION:-false} start $$ $EPOCHREALTIME" >> $DIR/calls
      echo $$ > $DIR/$FLOXY_STEP_NAME.pid
      if [ "${FLOXY_COMPENSATION:-false}" = false ] && [ "$FLOXY_STEP_NAME" = charge ]; then
        sleep 30
      fi
      echo "$FLOXY_STEP_NAME ${FLOXY_COMPENSATION:-false} end $$ $EPOCHREALTIME" >> $DIR/calls
      echo '{}'
  - name: undo
    exec: |
      pid=$(cat $DIR/$FLOXY_STEP_NAME.pid)
      if [ -d /proc/$pid ] && ! grep -q '^State:.*Z' /proc/$pid/status; then live=1; else live=0; fi
      echo "$FLOXY_STEP_NAME true undo $$ $EPOCHREALTIME overlapping=$live" >> $DIR/calls
      echo '{}'
flows:
  - name: once
    steps:
      - {name: reserve, handler: work, on_failure: undo}
      - {name: charge, handler: work, no_idempotent: true, timeout: 3s, on_failure: undo}
      - {name: ship, handler: work}
"""


def charge_calls(workdir: Path) -> list[list[str]]:
    return [c for c in lines(workdir / "calls") if c[:3] == ["charge", "false", "start"]]


def test_sigterm_past_the_grace_fails_a_no_idempotent_step_instead_of_handing_it_back(
    pg_dsn: str, workdir: Path, daemons: list[Floxyd]
) -> None:
    file = flow(workdir, ONCE_FLOW)
    env = {"FLOXY_LEASE": LEASE, "FLOXY_SHUTDOWN_GRACE": "300ms"}
    first = spawn_floxyd("first", file, pg_dsn, workdir, **env)
    daemons.append(first)
    instance = start(pg_dsn, "once-v1")
    wait_for("charge to run", lambda: charge_calls(workdir))
    assert first.stop() == 0, first.log()
    daemons.append(spawn_floxyd("second", file, pg_dsn, workdir, **env))
    assert wait_end(pg_dsn, instance, timeout=30) == "failed"
    assert len(charge_calls(workdir)) == 1, lines(workdir / "calls")
    undos = [c[0] for c in lines(workdir / "calls") if c[2] == "undo"]
    assert undos == ["charge", "reserve"], lines(workdir / "calls")
    assert "failing charge (instance" in first.log()


def test_a_frozen_workers_no_idempotent_step_is_compensated_only_after_its_call_ended(
    pg_dsn: str, workdir: Path, daemons: list[Floxyd]
) -> None:
    file = flow(workdir, ONCE_FLOW)
    frozen = spawn_floxyd("frozen", file, pg_dsn, workdir, FLOXY_LEASE=LEASE)
    daemons.append(frozen)
    instance = start(pg_dsn, "once-v1")
    wait_for("charge to run", lambda: charge_calls(workdir))
    survivor = spawn_floxyd("survivor", file, pg_dsn, workdir, FLOXY_LEASE=LEASE)
    daemons.append(survivor)
    frozen.proc.send_signal(signal.SIGSTOP)
    stopped = time.time()
    try:
        assert wait_end(pg_dsn, instance, timeout=40) == "failed"
        calls = lines(workdir / "calls")
        undos = [c for c in calls if c[2] == "undo"]
        assert [c[0] for c in undos] == ["charge", "reserve"], calls
        # The charge call was still running when the worker froze: it was killed by its guard at
        # its timeout, and only after lease + timeout + margin was the step declared lost.
        assert undos[0][5] == "overlapping=0", calls
        assert float(undos[0][4]) - stopped >= 2 + 3, calls
        assert len(charge_calls(workdir)) == 1, calls
        assert not [c for c in calls if c[:3] == ["charge", "false", "end"]], calls
    finally:
        frozen.proc.send_signal(signal.SIGCONT)
    # Thawed, the frozen worker's late outcome is refused: nothing changes.
    time.sleep(1.0)
    assert status_of(pg_dsn, instance)[0] == "failed"
    assert frozen.alive()
    os.kill(frozen.proc.pid, signal.SIGTERM)
    assert frozen.wait_exit(15) == 0
