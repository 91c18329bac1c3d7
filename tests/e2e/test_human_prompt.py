"""The interactive human-decision prompt of `floxyctl run`, driven through a pseudo-terminal.

`floxyctl run` asks on a terminal when no `--decide` answers a human step. These tests give it
a real one: stdin and stderr are the slave side of a pty that is the process's controlling
terminal, so typing `\\x03` on the master is a real Ctrl-C (the terminal sends SIGINT to the
foreground process group), exactly as at a keyboard. stdout is a pipe carrying the
`--output json` document.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import FlowRun, Ledger, floxyctl_exe

PROMPT = "[c/r]"

# Make the inherited pty the controlling terminal of the new session, then become floxyctl.
TAKE_TERMINAL = (
    "import fcntl, os, sys, termios; "
    "fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)

APPROVAL = """
handlers:
  - name: prepare
    exec: |
      echo "prepare" >> "$LEDGER"
      jq -c '{refund: "RF-1", amount: .amount}' <<<"$INPUT"
  - name: pay
    exec: |
      echo "pay $INPUT" >> "$LEDGER"
      jq -c '. + {paid: true}' <<<"$INPUT"
  - name: undo_prepare
    exec: |
      echo "undo_prepare started" >> "$LEDGER"
      sleep "${UNDO_SLEEP:-0}"
      echo "undo_prepare done" >> "$LEDGER"
      echo '{}'
flows:
  - name: approval
    steps:
      - {name: prepare, on_failure: undo_prepare}
      - {type: human, name: approve%s}
      - pay
"""


class Terminal:
    """`floxyctl run` on a pseudo-terminal; everything it shows there is kept in `screen`."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        self.master = master
        self._screen = bytearray()
        self._lock = threading.Lock()
        self.started = time.monotonic()
        exe, *rest = argv
        self.proc = subprocess.Popen(
            [sys.executable, "-c", TAKE_TERMINAL, exe, *rest],
            stdin=slave,
            stdout=subprocess.PIPE,
            stderr=slave,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        os.close(slave)
        self._stdout: list[bytes] = []
        self._readers = [
            threading.Thread(target=self._drain_terminal, daemon=True),
            threading.Thread(target=self._drain_stdout, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _drain_terminal(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 4096)
            except OSError:  # EIO: every slave descriptor is closed
                return
            if not chunk:
                return
            with self._lock:
                self._screen += chunk

    def _drain_stdout(self) -> None:
        assert self.proc.stdout is not None
        self._stdout.append(self.proc.stdout.read())

    @property
    def screen(self) -> str:
        with self._lock:
            return self._screen.decode(errors="replace")

    def wait_for(self, text: str, *, count: int = 1, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while self.screen.count(text) < count:
            if self.proc.poll() is not None or time.monotonic() >= deadline:
                pytest.fail(f"{text!r} not shown (exit {self.proc.poll()}); screen:\n{self.screen}")
            time.sleep(0.02)

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def finish(self, timeout: float = 20.0) -> FlowRun:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"floxyctl still running after {timeout}s; screen:\n{self.screen}")
        for reader in self._readers:
            reader.join(timeout=5)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        stdout = b"".join(self._stdout).decode(errors="replace")
        doc: Any = None
        with contextlib.suppress(ValueError):
            doc = json.loads(stdout)
        return FlowRun(
            code=code,
            stdout=stdout,
            stderr=self.screen,
            elapsed=time.monotonic() - self.started,
            doc=doc if isinstance(doc, dict) else None,
        )

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        if self.proc.stdout is not None and not self.proc.stdout.closed:
            for reader in self._readers:
                reader.join(timeout=5)
            self.proc.stdout.close()
        with contextlib.suppress(OSError):
            os.close(self.master)


@pytest.fixture
def terminal(tmp_path: Path, flow_env: dict[str, str]) -> Iterator[Any]:
    opened: list[Terminal] = []

    def open_terminal(yaml_text: str, *args: str, env: dict[str, str] | None = None) -> Terminal:
        path = tmp_path / "flow.yaml"
        path.write_text(yaml_text)
        (tmp_path / "input.json").write_text('{"amount": 120}')
        full_env = {**flow_env, "TERM": "xterm-256color", **(env or {})}
        full_env.pop("NO_COLOR", None)  # the live view is on, as at a real terminal
        argv = [*floxyctl_exe(), "run", "-f", str(path), "-i", "input.json", "--output", "json"]
        term = Terminal([*argv, *args], full_env, tmp_path)
        opened.append(term)
        return term

    yield open_terminal
    for term in opened:
        term.close()


def test_confirm_at_the_prompt_continues(terminal: Any, ledger: Ledger) -> None:
    term = terminal(APPROVAL % "")
    term.wait_for(PROMPT)
    assert "Step 'approve' waits for a human decision" in term.screen
    assert '"refund": "RF-1"' in term.screen  # the input the human decides on
    term.type(b"c\n")
    r = term.finish()
    assert r.code == 0, r.describe()
    assert r.status == "completed"
    (decided,) = [e for e in r.events("step_completed") if e["step"] == "approve"]
    assert decided["payload"]["decision"] == "confirmed"
    assert len(ledger.calls("pay")) == 1, ledger.lines()
    assert r.output == {"refund": "RF-1", "amount": 120, "paid": True}


def test_reject_at_the_prompt_aborts(terminal: Any, ledger: Ledger) -> None:
    term = terminal(APPROVAL % "")
    term.wait_for(PROMPT)
    term.type(b"r\n")
    r = term.finish()
    assert r.code == 5, r.describe()
    assert r.status == "aborted"
    assert r.step("approve")["status"] == "rejected"
    assert ledger.lines() == ["prepare"]


def test_an_unclear_answer_asks_again(terminal: Any, ledger: Ledger) -> None:
    term = terminal(APPROVAL % "")
    term.wait_for(PROMPT)
    term.type(b"maybe\n")
    term.wait_for(PROMPT, count=2)
    term.type(b"yes\n")
    r = term.finish()
    assert r.code == 0, r.describe()
    assert len(ledger.calls("pay")) == 1


def test_ctrl_c_at_the_prompt_cancels_and_compensates(terminal: Any, ledger: Ledger) -> None:
    term = terminal(APPROVAL % "")
    term.wait_for(PROMPT)
    pressed = time.monotonic()
    term.type(b"\x03")  # Ctrl-C
    r = term.finish()
    assert time.monotonic() - pressed < 5, r.describe()
    assert r.code == 5, r.describe()
    assert r.status == "cancelled", r.describe()
    assert "Ctrl-C: cancelling" in term.screen
    assert term.screen.count(PROMPT) == 1  # not asked again after Ctrl-C
    assert ledger.lines() == ["prepare", "undo_prepare started", "undo_prepare done"]
    assert r.step("prepare")["status"] == "rolled_back"
    assert r.step("approve")["status"] != "waiting_decision"
    assert not r.has_step("pay")


def test_second_ctrl_c_aborts_the_rollback(terminal: Any, ledger: Ledger) -> None:
    term = terminal(APPROVAL % "", env={"UNDO_SLEEP": "10"})
    term.wait_for(PROMPT)
    term.type(b"\x03")
    ledger.wait_for(lambda lines: "undo_prepare started" in lines)
    pressed = time.monotonic()
    term.type(b"\x03")
    r = term.finish()
    assert time.monotonic() - pressed < 5, r.describe()
    assert r.code == 5, r.describe()
    assert r.status == "aborted", r.describe()
    assert "Ctrl-C again: aborting" in term.screen
    assert "undo_prepare done" not in ledger.lines()
    assert not r.has_step("pay")


def test_a_decision_timeout_ends_the_prompt(terminal: Any, ledger: Ledger) -> None:
    term = terminal(APPROVAL % ", timeout: 2s")
    term.wait_for(PROMPT)
    r = term.finish(timeout=15)  # nobody answers
    assert r.code == 5, r.describe()
    assert r.status == "aborted"
    assert r.step("approve")["status"] == "rejected"
    assert not r.has_step("pay")
