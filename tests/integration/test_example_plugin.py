"""The example plugin package (examples/plugins/floxy-example-plugin), installed into the test
venv and found through its `floxy` entry point by real floxyctl and floxyd processes."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import free_port

ROOT = Path(__file__).resolve().parents[2]
PLUGIN_DIR = ROOT / "examples" / "plugins" / "floxy-example-plugin"
GREET = PLUGIN_DIR / "greet.yaml"
DIST = "floxy-example-plugin"
FLOXYCTL = str(Path(sys.executable).with_name("floxyctl"))
INPUT = {"name": "Ada", "order": {"id": "A-1", "total": 12.5}}
OUTPUT = {**INPUT, "greeting": "HELLO, ADA!", "summary": "order A-1: 12.50 EUR"}


@pytest.fixture(scope="session")
def example_plugin(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of a process that finds the example plugin: built and installed into a
    private directory on PYTHONPATH, never into the venv that runs the tests (every later command
    there would load it). Offline: hatchling comes from the dev extra (`--no-build-isolation`)."""
    site = tmp_path_factory.mktemp("example-plugin-site")
    command = [
        sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q",
        "--target", str(site), str(PLUGIN_DIR),
    ]  # fmt: skip
    if importlib.util.find_spec("hatchling") is None:
        pytest.fail("the example plugin needs hatchling to build: `pip install -e '.[dev]'`")
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if done.returncode != 0 or not list(site.glob("floxy_example_plugin-*.dist-info")):
        pytest.fail(
            f"could not build the example plugin ({' '.join(command)}): exit "
            f"{done.returncode}\n{done.stdout}{done.stderr}"
        )
    return {"PYTHONPATH": str(site)}


def _env(base: dict[str, str], **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOXY_", "PG"))}
    env.update(NO_COLOR="1", **base, **extra)
    return env


def _floxyctl(*args: str, env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FLOXYCTL, *args], env=env, input=stdin, capture_output=True, text=True, timeout=60
    )


def _audit(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _events(records: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    return [(r["event"], r.get("step")) for r in records]


HAPPY_EVENTS = [
    ("workflow_started", None),
    ("step_started", "greet"),
    ("step_completed", "greet"),
    ("step_started", "shout"),
    ("step_completed", "shout"),
    ("workflow_completed", None),
]


# --- floxyctl ------------------------------------------------------------------------------------


def test_floxyctl_lists_the_example_plugin(example_plugin: dict[str, str]) -> None:
    result = _floxyctl("plugins", "--output", "json", env=_env(example_plugin))
    assert result.returncode == 0, result.stderr
    rows = {p["name"]: p for p in json.loads(result.stdout)["plugins"]}
    assert rows["example"] == {
        "name": "example",
        "version": "0.1.0",
        "builtin": False,
        "handler_types": ["template"],
    }


def test_floxyctl_runs_the_template_handler_and_writes_the_audit_log(
    example_plugin: dict[str, str], tmp_path: Path
) -> None:
    audit = tmp_path / "audit.jsonl"
    result = _floxyctl(
        "run", "-f", str(GREET), "--output", "json",
        env=_env(example_plugin, FLOXY_AUDIT_LOG=str(audit)), stdin=json.dumps(INPUT),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert (doc["status"], doc["output"]) == ("completed", OUTPUT)
    records = _audit(audit)
    assert _events(records) == HAPPY_EVENTS
    assert {(r["instance_id"], r["workflow_id"]) for r in records} == {(1, "greet-v1")}
    assert records[-1]["status"] == "completed"


def test_a_failing_step_is_audited_and_not_retried(
    example_plugin: dict[str, str], tmp_path: Path
) -> None:
    audit = tmp_path / "audit.jsonl"
    result = _floxyctl(
        "run", "-f", str(GREET), "--output", "json",
        env=_env(example_plugin, FLOXY_AUDIT_LOG=str(audit)),
        stdin='{"order": {"id": 1, "total": 2}}',
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    doc = json.loads(result.stdout)
    [greet] = [s for s in doc["steps"] if s["name"] == "greet"]
    assert greet["error"] == "fields.greeting: the input has no 'name'"
    # Non-retryable: called once although the step has the default max_retries of 3.
    assert [e["type"] for e in doc["events"]].count("step_started") == 1
    events = _events(_audit(audit))
    assert events[:3] == [
        ("workflow_started", None),
        ("step_started", "greet"),
        ("step_failed", "greet"),
    ]
    assert events[-1] == ("workflow_failed", None)


def test_a_hook_that_raises_does_not_break_the_workflow(
    example_plugin: dict[str, str], tmp_path: Path
) -> None:
    """The audit path is a directory: every hook call raises IsADirectoryError."""
    result = _floxyctl(
        "run", "-f", str(GREET), "--output", "json",
        env=_env(example_plugin, FLOXY_AUDIT_LOG=str(tmp_path)), stdin=json.dumps(INPUT),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["output"] == OUTPUT
    assert "plugin example failed in floxy_step_started: IsADirectoryError" in result.stderr
    assert "plugin example failed in floxy_workflow_completed" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_plugin_schema_and_templates_are_checked_when_building(
    example_plugin: dict[str, str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "handlers:\n"
        "  - {name: a, type: template, feilds: {x: y}}\n"
        "  - {name: b, type: template, fields: {x: '{name.__class__}'}}\n"
        "  - {name: c, type: template, fields: {x: 'open {'}}\n"
        "flows:\n"
        "  - {name: f, steps: [a, b, c]}\n"
    )
    result = _floxyctl("validate", "-f", str(bad), env=_env(example_plugin))
    assert result.returncode == 2
    assert "handler 'a' (template): 'fields' is a required property" in result.stderr
    assert "('feilds' was unexpected)" in result.stderr
    assert "failed to create handler 'b': fields.x: {name.__class__}: use a field" in result.stderr
    assert "failed to create handler 'c': fields.x: " in result.stderr
    result = _floxyctl("--no-plugins", "run", "-f", str(GREET), env=_env(example_plugin))
    assert result.returncode == 2
    assert "unknown type 'template'" in result.stderr


# --- floxyd --------------------------------------------------------------------------------------


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@pytest.fixture
def floxyd(example_plugin: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """Start `python -m floxyd FILE` with plugins enabled; returns its log. Killed at teardown."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(file: Path, dsn: str, **env: str) -> Path:
        port = free_port()
        log = tmp_path / f"floxyd-{len(procs) + 1}.log"
        environment = _env(
            example_plugin,
            FLOXY_DSN=dsn,
            FLOXY_TECH_ADDR=f"127.0.0.1:{port}",
            FLOXY_STATS_INTERVAL="0",
            FLOXY_MAINTENANCE_INTERVAL="0",
            **env,
        )
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "floxyd", str(file)],
                env=environment,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        procs.append(proc)
        deadline = time.monotonic() + 30
        while not _ready(f"http://127.0.0.1:{port}/health/ready"):
            if proc.poll() is not None:
                pytest.fail(f"floxyd exited with {proc.returncode}:\n{log.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"floxyd not ready after 30s:\n{log.read_text()}")
            time.sleep(0.05)
        return log

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def _start_and_wait(base: dict[str, str], dsn: str, **env: str) -> subprocess.CompletedProcess[str]:
    return _floxyctl(
        "start", "-o", "greet", "--wait", "--status-check-interval", "50ms",
        "--completion-timeout", "30s", "--output", "json",
        env=_env(base, FLOXY_DSN=dsn, **env), stdin=json.dumps(INPUT),
    )  # fmt: skip


def test_floxyd_loads_the_plugin_and_runs_its_handler(
    example_plugin: dict[str, str], pg_dsn: str, floxyd: Callable[..., Path], tmp_path: Path
) -> None:
    audit = tmp_path / "audit.jsonl"
    log = floxyd(GREET, pg_dsn, FLOXY_AUDIT_LOG=str(audit))
    assert "plugin example 0.1.0 loaded" in log.read_text()
    assert "registered handler greet (template)" in log.read_text()
    result = _start_and_wait(example_plugin, pg_dsn, FLOXY_AUDIT_LOG=str(audit))
    assert result.returncode == 0, result.stderr + log.read_text()
    doc = json.loads(result.stdout)
    assert (doc["status"], doc["output"]) == ("completed", OUTPUT)
    records = _audit(audit)
    assert _events(records) == HAPPY_EVENTS
    # The start is audited by floxyctl, the steps by the floxyd worker: two processes.
    started, *steps = records
    assert len({r["pid"] for r in steps}) == 1
    assert started["pid"] != steps[0]["pid"]


def test_floxyd_survives_a_hook_that_raises(
    example_plugin: dict[str, str], pg_dsn: str, floxyd: Callable[..., Path], tmp_path: Path
) -> None:
    log = floxyd(GREET, pg_dsn, FLOXY_AUDIT_LOG=str(tmp_path))  # a directory: hooks raise
    result = _start_and_wait(example_plugin, pg_dsn)
    assert result.returncode == 0, result.stderr + log.read_text()
    assert json.loads(result.stdout)["output"] == OUTPUT
    text = log.read_text()
    assert "plugin example failed in floxy_step_started" in text
    assert "plugin example failed in floxy_workflow_completed" in text
