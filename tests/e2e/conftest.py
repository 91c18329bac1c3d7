"""Fixtures for end-to-end tests of `floxyctl run`: a real process, real YAML files, real bash.

* `run_flow(yaml_text, *args, ...)` writes the YAML to tmp_path and runs the installed console
  script (`floxyctl run -f FILE --output json ...`) to the end; it returns a `FlowRun` with the
  exit code, the parsed JSON document (or None), stdout, stderr and the wall time.
* `spawn_flow(yaml_text, *args, ...)` starts the same command with Popen (its own session) for
  tests that need to signal it; the process is killed at teardown if it is still running.
* `ledger` is a file in tmp_path whose path every run gets as the environment variable `LEDGER`,
  so handlers can record each call (`echo "step ..." >> "$LEDGER"`) and tests can see every call
  and its order. `ledger.wait_for(...)` polls with a deadline instead of sleeping.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest


def floxyctl_exe() -> list[str]:
    """The console script installed next to this interpreter (the real entry point)."""
    script = Path(sys.executable).with_name("floxyctl")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "floxyctl"]  # pragma: no cover - fallback only


class Ledger:
    """A file handlers append lines to; `LEDGER` in every run's environment points at it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __str__(self) -> str:
        return str(self.path)

    def lines(self) -> list[str]:
        if not self.path.exists():
            return []
        return [ln for ln in self.path.read_text().splitlines() if ln.strip()]

    def calls(self, prefix: str) -> list[str]:
        """Lines whose first word is `prefix`."""
        return [ln for ln in self.lines() if ln.split()[0] == prefix]

    def calls_except(self, prefix: str) -> list[str]:
        """Lines whose first word is not `prefix`."""
        return [ln for ln in self.lines() if ln.split()[0] != prefix]

    def wait_for(
        self, predicate: Callable[[list[str]], bool], timeout: float = 10.0, interval: float = 0.02
    ) -> list[str]:
        """Poll until predicate(lines) holds; fail the test at the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.lines()
            if predicate(lines):
                return lines
            if time.monotonic() >= deadline:
                pytest.fail(f"ledger condition not met within {timeout}s; ledger: {lines!r}")
            time.sleep(interval)


@dataclass
class FlowRun:
    code: int
    stdout: str
    stderr: str
    elapsed: float
    doc: dict[str, Any] | None = None
    yaml_path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    # ---- convenience accessors over the JSON document -------------------------------------
    @property
    def status(self) -> str | None:
        return None if self.doc is None else self.doc.get("status")

    @property
    def output(self) -> Any:
        assert self.doc is not None, self.describe()
        return self.doc["output"]

    def step(self, name: str) -> dict[str, Any]:
        """The (first) step row called `name`; fails the test if there is none."""
        assert self.doc is not None, self.describe()
        for row in self.doc["steps"]:
            if row["name"] == name:
                return row
        pytest.fail(f"no step {name!r} in {[s['name'] for s in self.doc['steps']]}")

    def steps_named(self, name: str) -> list[dict[str, Any]]:
        assert self.doc is not None, self.describe()
        return [row for row in self.doc["steps"] if row["name"] == name]

    def has_step(self, name: str) -> bool:
        return bool(self.doc) and any(r["name"] == name for r in self.doc["steps"])  # type: ignore[index]

    def statuses(self) -> dict[str, str]:
        assert self.doc is not None, self.describe()
        return {row["name"]: row["status"] for row in self.doc["steps"]}

    def events(self, type_: str | None = None) -> list[dict[str, Any]]:
        assert self.doc is not None, self.describe()
        return [e for e in self.doc["events"] if type_ is None or e["type"] == type_]

    def describe(self) -> str:
        doc = self.doc
        brief: Any = doc
        if doc is not None:
            brief = {
                "status": doc.get("status"),
                "error": doc.get("error"),
                "output": doc.get("output"),
                "steps": [
                    (s["name"], s["status"], s["retry_count"], s.get("error"))
                    for s in doc.get("steps", [])
                ],
                "dlq": doc.get("dlq"),
            }
        return (
            f"exit={self.code} elapsed={self.elapsed:.2f}s\n doc={brief!r}\n"
            f" stderr={self.stderr[-2000:]!r}\n stdout={self.stdout[:500] if doc is None else ''!r}"
        )


def _parse(stdout: str) -> dict[str, Any] | None:
    try:
        doc = json.loads(stdout)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger(tmp_path / "ledger.txt")


@pytest.fixture
def flow_env(ledger: Ledger) -> dict[str, str]:
    """The environment of every floxyctl process: ours, plus LEDGER; no inherited FLOXY_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOXY_")}
    env["LEDGER"] = str(ledger.path)
    env.pop("PYTHONWARNINGS", None)
    return env


def _write_yaml(tmp_path: Path, yaml_text: str, name: str) -> Path:
    path = tmp_path / name
    path.write_text(yaml_text)
    return path


def _command(
    yaml_path: Path, args: tuple[str, ...], json_output: bool, input_file: Path | None
) -> list[str]:
    cmd = [*floxyctl_exe(), "run", "-f", str(yaml_path)]
    if json_output:
        cmd += ["--output", "json"]
    if input_file is not None:
        cmd += ["-i", str(input_file)]
    cmd += list(args)
    return cmd


RunFlow = Callable[..., FlowRun]


@pytest.fixture
def run_flow(tmp_path: Path, flow_env: dict[str, str]) -> RunFlow:
    """Run `floxyctl run -f <yaml> --output json [args]` to the end.

    input: a dict/list (sent as JSON on stdin), a str/bytes (sent raw on stdin) or None (stdin is
    /dev/null). input_file: a dict written to a file passed with `-i`, or a Path.
    """

    def run(
        yaml_text: str,
        *args: str,
        input: Any = None,
        input_file: dict[str, Any] | Path | None = None,
        json_output: bool = True,
        env: dict[str, str] | None = None,
        timeout: float = 30.0,
        yaml_name: str = "flow.yaml",
        cwd: Path | None = None,
    ) -> FlowRun:
        yaml_path = _write_yaml(tmp_path, yaml_text, yaml_name)
        in_path: Path | None = None
        if isinstance(input_file, Path):
            in_path = input_file
        elif input_file is not None:
            in_path = tmp_path / "input.json"
            in_path.write_text(json.dumps(input_file))
        stdin_data: bytes | None = None
        if input is not None:
            if isinstance(input, bytes):
                stdin_data = input
            elif isinstance(input, str):
                stdin_data = input.encode()
            else:
                stdin_data = json.dumps(input).encode()
        full_env = dict(flow_env)
        if env:
            full_env.update(env)
        started = time.monotonic()
        proc = subprocess.run(
            _command(yaml_path, args, json_output, in_path),
            input=stdin_data,
            stdin=subprocess.DEVNULL if stdin_data is None else None,
            capture_output=True,
            env=full_env,
            cwd=cwd or tmp_path,
            timeout=timeout,
            check=False,
        )
        elapsed = time.monotonic() - started
        stdout = proc.stdout.decode(errors="replace")
        stderr = proc.stderr.decode(errors="replace")
        return FlowRun(
            code=proc.returncode,
            stdout=stdout,
            stderr=stderr,
            elapsed=elapsed,
            doc=_parse(stdout) if json_output else None,
            yaml_path=yaml_path,
        )

    return run


class SpawnedFlow:
    """A `floxyctl run` started with Popen in its own session."""

    def __init__(self, proc: subprocess.Popen[bytes], started: float) -> None:
        self.proc = proc
        self.started = started

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send_signal(self, sig: int = signal.SIGINT) -> None:
        """Signal the floxyctl process itself (what a terminal's Ctrl-C delivers to it)."""
        self.proc.send_signal(sig)

    def finish(self, timeout: float = 30.0) -> FlowRun:
        out, err = self.proc.communicate(timeout=timeout)
        stdout = out.decode(errors="replace")
        return FlowRun(
            code=self.proc.returncode,
            stdout=stdout,
            stderr=err.decode(errors="replace"),
            elapsed=time.monotonic() - self.started,
            doc=_parse(stdout),
        )

    def kill(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(ValueError, subprocess.TimeoutExpired):
            self.proc.communicate(timeout=10)


@pytest.fixture
def spawn_flow(tmp_path: Path, flow_env: dict[str, str]) -> Iterator[Callable[..., SpawnedFlow]]:
    spawned: list[SpawnedFlow] = []

    def spawn(yaml_text: str, *args: str, env: dict[str, str] | None = None) -> SpawnedFlow:
        yaml_path = _write_yaml(tmp_path, yaml_text, "flow.yaml")
        full_env = dict(flow_env)
        if env:
            full_env.update(env)
        started = time.monotonic()
        proc = subprocess.Popen(
            _command(yaml_path, args, True, None),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=full_env,
            cwd=tmp_path,
            start_new_session=True,
        )
        flow = SpawnedFlow(proc, started)
        spawned.append(flow)
        return flow

    yield spawn
    for flow in spawned:
        flow.kill()


def pid_alive(pid: int) -> bool:
    """True while a process with this pid exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - someone else's pid
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, interval: float = 0.02) -> bool:
    """Poll predicate until it holds or the deadline passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
