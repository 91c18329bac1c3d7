"""Real floxyd processes and a call ledger written by a real bash handler, for
test_floxyd_done.py.

`Floxyd` is one `python -m floxyd FILE` process with its own log, tech server port and ledger
file; `start_floxyd` starts one and waits for `/health/ready`. `WORK_SH` is the handler every
ledger flow uses: it appends one line per call phase to `$LEDGER` (one file per daemon, O_APPEND
writes), and plays the failure, slowness and pause planned by the step input (its top-level
fields arrive as upper-case variables):

    <phase> <instance> <step> <idempotency key> <attempt> <compensation> <pid> <epoch seconds>

phase is `start`, then `ok` or `fail`; attempt is `$FLOXY_RETRY_COUNT`. A successful call prints
its input, so the plan travels down the flow.

    fail_step / fail_times   the step fails while attempt < fail_times
    slow_step / slow_seconds the step's first call (any daemon, any attempt) sleeps that long
    pause                    every call sleeps that long (seconds) before it succeeds
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.test_floxyd import base_env, http
from tests.support import free_port, wait_for

WORK_SH = r"""#!/usr/bin/env bash
# Ledger handler of test_floxyd_done.py (see floxyd_procs.py).
comp=${FLOXY_COMPENSATION:-false}
line() {
  echo "$1 $FLOXY_INSTANCE_ID $FLOXY_STEP_NAME $FLOXY_IDEMPOTENCY_KEY $FLOXY_RETRY_COUNT" \
    "$comp $$ $EPOCHREALTIME" >>"$LEDGER"
}
line start
if [ "$comp" = false ]; then
  if [ "$FLOXY_STEP_NAME" = "${SLOW_STEP:-}" ]; then
    mark="$MARKS/slow-$FLOXY_INSTANCE_ID-$FLOXY_STEP_NAME"
    if [ ! -e "$mark" ]; then
      : >"$mark"
      sleep "$SLOW_SECONDS"
    fi
  fi
  if [ "$FLOXY_STEP_NAME" = "${FAIL_STEP:-}" ] && [ "$FLOXY_RETRY_COUNT" -lt "${FAIL_TIMES:-0}" ]
  then
    line fail
    echo "planned failure of $FLOXY_STEP_NAME (attempt $FLOXY_RETRY_COUNT)" >&2
    exit 1
  fi
fi
sleep "${PAUSE:-0}"
line ok
echo "$INPUT"
"""


@dataclass(frozen=True)
class Call:
    """One ledger line."""

    phase: str
    instance: int
    step: str
    key: str
    attempt: int
    compensation: bool
    pid: int
    at: float
    daemon: str


@dataclass
class Floxyd:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    ledger: Path

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def health(self) -> int:
        """HTTP status of /health (0 when the tech server does not answer)."""
        try:
            return http(self.url("/health"))[0]
        except OSError:
            return 0

    def calls(self) -> list[Call]:
        found = []
        text = self.ledger.read_text() if self.ledger.exists() else ""
        for line in text.splitlines():
            parts = line.split()
            if len(parts) != 8:
                continue  # cannot happen with O_APPEND writes of short lines; be safe
            phase, iid, step, key, attempt, comp, pid, at = parts
            found.append(
                Call(
                    phase, int(iid), step, key, int(attempt), comp == "true", int(pid),
                    float(at), self.name,
                )
            )  # fmt: skip
        return found

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait for the exit code."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        return self.wait_exit(timeout)

    def wait_exit(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"floxyd {self.name} did not exit within {timeout}s:\n{self.log()}")

    def kill9(self) -> float:
        """SIGKILL; returns when it happened (time.time())."""
        self.proc.kill()
        killed = time.time()
        self.proc.wait(10)
        return killed


def spawn_floxyd(
    name: str, file: Path, dsn: str, workdir: Path, *, ready: bool = True, **env: str
) -> Floxyd:
    """floxyd on `file` with its ledger `workdir/ledger-NAME.txt`; once /health/ready says 200."""
    port = free_port()
    log_path = workdir / f"floxyd-{name}.log"
    ledger = workdir / f"ledger-{name}.txt"
    ledger.touch()
    marks = workdir / "marks"
    marks.mkdir(exist_ok=True)
    environment = base_env(
        FLOXY_DSN=dsn,
        FLOXY_TECH_ADDR=f"127.0.0.1:{port}",
        LEDGER=str(ledger),
        MARKS=str(marks),
        **env,
    )
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "floxyd", str(file)],
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )
    daemon = Floxyd(name, proc, port, log_path, ledger)
    if ready:
        wait_ready(daemon)
    return daemon


def wait_ready(daemon: Floxyd, timeout: float = 30.0) -> None:
    def is_ready() -> bool:
        if not daemon.alive():
            pytest.fail(
                f"floxyd {daemon.name} exited with {daemon.proc.returncode}:\n{daemon.log()}"
            )
        try:
            return http(daemon.url("/health/ready"))[0] == 200
        except OSError:
            return False

    wait_for(f"floxyd {daemon.name} to be ready", is_ready, timeout)


def all_calls(daemons: list[Floxyd]) -> list[Call]:
    return sorted((c for d in daemons for c in d.calls()), key=lambda c: c.at)


def duplicate_starts(calls: list[Call]) -> dict[tuple[int, str, int, bool], int]:
    """(instance, step, attempt, compensation) keys started more than once, with their count."""
    counts = Counter(
        (c.instance, c.step, c.attempt, c.compensation) for c in calls if c.phase == "start"
    )
    return {k: n for k, n in counts.items() if n > 1}


def handler_pids(calls: list[Call], script: Path) -> list[int]:
    """PIDs of handler calls still running `script` (checked: a PID may have been reused)."""
    found = []
    for pid in sorted({c.pid for c in calls}):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if str(script).encode() in cmdline and state not in ("Z", "X"):
            found.append(pid)
    return found


def kill_handler_groups(calls: list[Call], script: Path) -> list[int]:
    """SIGKILL the process groups of handler calls still running `script` (orphans of a
    kill -9); returns their PIDs. A PID is checked first: it may have been reused."""
    killed = []
    for pid in sorted({c.pid for c in calls}):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if str(script).encode() not in cmdline:
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(os.getpgid(pid), signal.SIGKILL)  # the group its guard leads
            killed.append(pid)
    return killed
