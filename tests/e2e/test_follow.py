"""Following an instance live: `start --wait` and `inspect --follow` show progress while a worker
elsewhere runs the steps. On a terminal the step table is redrawn in place (a pseudo-terminal
here); otherwise one line per change on stderr."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from floxy_core.ports import StepContext
from floxy_core.runtime import Runtime
from floxy_core.storage.postgres import PostgresStore
from tests.e2e.test_db_cli import _DB_VARS, FLOXYCTL, Py, registered_database
from tests.pgcluster import Cluster

FLOWS = """\
flows:
  - name: slowflow
    steps:
      - {name: first, handler: quick}
      - {name: slow, handler: slow}
      - {name: last, handler: quick}
"""
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture(scope="module")
def db(pg_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from registered_database(pg_cluster, tmp_path_factory, FLOWS)


class Gate:
    """The `slow` step's handler: it returns only once the test opens the gate."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.open = threading.Event()

    def __call__(self, ctx: StepContext, data: Any) -> Any:
        self.entered.set()
        assert self.open.wait(30), "the test never opened the gate"
        return data


@pytest.fixture
def worker(db: str) -> Iterator[Gate]:
    gate = Gate()
    store = PostgresStore(db, max_size=4)
    handlers = {"quick": Py("quick", lambda ctx, data: data), "slow": Py("slow", gate)}
    runtime = Runtime(store, handlers, workers=1, poll_interval=0.05)
    runtime.start()
    try:
        yield gate
    finally:
        gate.open.set()
        runtime.stop()
        store.close()


def _env(db: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _DB_VARS and k != "NO_COLOR"}
    return {**env, "FLOXY_DSN": db, **extra}


def _read_until(
    fd: int, seen: list[str], until: Callable[[str], bool], what: str, deadline_s: float = 20
) -> None:
    """Read `fd` into `seen` until `until(text so far)` holds, or fail after the deadline."""
    deadline = time.monotonic() + deadline_s
    while not until("".join(seen)):
        left = deadline - time.monotonic()
        assert left > 0, f"never saw {what}; output: {''.join(seen)[-3000:]!r}"
        ready, _, _ = select.select([fd], [], [], min(left, 0.2))
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the child closed the terminal
                chunk = b""
            if not chunk:
                assert until("".join(seen)), f"output ended without {what}: {''.join(seen)!r}"
                return
            seen.append(chunk.decode("utf-8", "replace"))


def _running_durations(text: str) -> set[str]:
    plain = ANSI.sub("", text)
    return set(re.findall(r"slow\s+task\s+running\s+\d+\s+(\d[\w.]*)", plain))


def test_start_wait_on_a_terminal_redraws_the_table_while_a_step_runs(
    db: str, worker: Gate
) -> None:
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [FLOXYCTL, "start", "-o", "slowflow", "--wait", "--status-check-interval", "50ms"],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env=_env(db, TERM="xterm-256color", COLUMNS="120", LINES="40"),
        start_new_session=True,
    )
    os.close(terminal)
    seen: list[str] = []
    try:
        # The table shows `slow` running, its time ticking (two different durations drawn),
        # and `last`, not reached yet, listed with `—`: all before the step may complete.
        _read_until(
            controller, seen, lambda t: len(_running_durations(t)) >= 2, "a ticking duration"
        )
        plain = ANSI.sub("", "".join(seen))
        assert re.search(r"last\s+task\s+—", plain), plain
        assert re.search(r"first\s+task\s+completed", plain), plain
        assert "\x1b[1A" in "".join(seen) or "\x1b[2K" in "".join(seen)  # redrawn in place
        assert proc.poll() is None
        worker.open.set()
        final = re.compile(r"completed in.*last\s+task\s+completed", re.DOTALL)
        _read_until(controller, seen, lambda t: bool(final.search(ANSI.sub("", t))), "the end")
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        os.close(controller)
    summary = ANSI.sub("", "".join(seen)).split("completed in", 1)[1]
    assert re.search(r"slow\s+task\s+completed", summary), summary


def test_piped_start_wait_and_inspect_follow_print_one_line_per_change(
    db: str, worker: Gate
) -> None:
    env = _env(db, NO_COLOR="1")
    args = ["--status-check-interval", "50ms"]
    waiting = subprocess.Popen(
        [FLOXYCTL, "start", "-o", "slowflow", "--wait", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
        start_new_session=True,
    )
    follower: subprocess.Popen[str] | None = None
    try:
        assert waiting.stderr is not None and waiting.stdout is not None
        lines: list[str] = []
        while not any(ln.endswith(" slow running") for ln in lines):
            line = waiting.stderr.readline()
            assert line, f"stderr ended early: {lines}"
            lines.append(line.rstrip("\n"))
        assert worker.entered.is_set()
        # a second follower joins halfway: it starts with where the instance is
        instance_id = int(waiting.stdout.readline().rsplit(" ", 1)[1])
        follower = subprocess.Popen(
            [FLOXYCTL, "inspect", str(instance_id), "--follow", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
            start_new_session=True,
        )
        assert follower.stderr is not None
        first = [follower.stderr.readline().rstrip("\n") for _ in range(3)]
        worker.open.set()
        out, err = waiting.communicate(timeout=30)
        f_out, f_err = follower.communicate(timeout=30)
    finally:
        for proc in (waiting, follower):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    assert waiting.returncode == 0 and follower.returncode == 0, (err, f_err)
    lines += err.splitlines()
    clock = r"\d\d:\d\d:\d\dZ"
    assert all(re.match(clock + " ", ln) for ln in lines), lines
    changes = [ln.split(" ", 1)[1] for ln in lines]
    # a quick step may start and end between two checks: then its end is its only change
    ends = [c.split()[0] for c in changes if re.fullmatch(r"\w+ completed \d[\w.]*", c)]
    assert ends == ["first", "slow", "last"], changes
    slow_end = next(c for c in changes if c.startswith("slow completed "))
    assert changes.index("slow running") < changes.index(slow_end), changes
    assert len(set(changes)) == len(changes), changes  # one line per change, never repeated
    assert changes[0] == f"instance {instance_id} running", changes
    assert changes[-1] == f"instance {instance_id} completed", changes
    assert f"Workflow slowflow-v1 (instance {instance_id}) completed" in out
    # inspect --follow began with the state it found, then the changes, then the summary
    found = [ln.split(" ", 1)[1] for ln in first]
    assert found[0] == f"instance {instance_id} running", first
    assert found[1].startswith("first completed ") and found[2] == "slow running", first
    assert f"Workflow slowflow-v1 (instance {instance_id}) completed" in f_out
    assert "last completed" in f_err
