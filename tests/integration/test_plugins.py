"""Third-party plugins found through the `floxy` entry-point group, in real floxyctl processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

FLOXYCTL = [str(Path(sys.executable).with_name("floxyctl"))]

PLUGIN = """
import atexit, json, os
from floxy_core.plugins import HandlerType, hookimpl

floxy_priority = {priority}
LOG = os.environ["PLUGIN_LOG"]


def _log(*parts):
    with open(LOG, "a") as f:
        f.write("{name}:" + ":".join(str(p) for p in parts) + "\\n")


if os.environ.get("PLUGIN_ATEXIT"):
    atexit.register(_log, "atexit")


class Echo:
    def __init__(self, name, prefix):
        self.name = name
        self.prefix = prefix

    def __call__(self, ctx, data):
        return {{"echo": self.prefix + json.dumps(data, sort_keys=True), "by": "{name}"}}


def build(spec, ctx):
    return Echo(spec.name, spec.config.get("prefix", ""))


@hookimpl
def floxy_handler_types():
    return [HandlerType("echo", build, schema={{
        "type": "object",
        "properties": {{"prefix": {{"type": "string"}}, "description": {{"type": "string"}}}},
        "additionalProperties": False,
    }})]


@hookimpl
def floxy_workflow_starting(workflow_id, input):
    if input.get("veto"):
        raise ValueError("vetoed by {name}")


@hookimpl
def floxy_step_completed(instance, step_name):
    _log("step_completed", step_name)


@hookimpl
def floxy_workflow_completed(instance, output):
    _log("workflow_completed", instance.workflow_id)
    if os.environ.get("PLUGIN_CRASH"):
        raise RuntimeError("plugin bug")
"""

WORKFLOW = """
handlers:
  - name: greet
    type: echo
    prefix: "hi "
flows:
  - name: plug
    steps:
      - greet
"""


def _install(site: Path, name: str, priority: int) -> None:
    module = f"floxy_test_{name}"
    (site / f"{module}.py").write_text(PLUGIN.format(name=name, priority=priority))
    info = site / f"{module}-1.2.{priority}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.2.{priority}\n"
    )
    (info / "entry_points.txt").write_text(f"[floxy]\n{name} = {module}\n")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    site = tmp_path / "site"
    site.mkdir()
    _install(site, "alpha", 10)
    _install(site, "beta", 90)
    (tmp_path / "wf.yaml").write_text(textwrap.dedent(WORKFLOW))
    environ = dict(os.environ)
    for name in ("FLOXY_PLUGINS", "FLOXY_NO_PLUGINS", "FLOXY_AUDIT_LOG"):
        environ.pop(name, None)
    environ.update(PYTHONPATH=str(site), PLUGIN_LOG=str(tmp_path / "log"), NO_COLOR="1")
    return environ


def _run(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FLOXYCTL, *args], env=env, input=stdin, capture_output=True, text=True, timeout=60
    )


def test_plugins_command_lists_builtin_and_installed(env: dict[str, str]) -> None:
    result = _run(env, "plugins", "--output", "json")
    assert result.returncode == 0, result.stderr
    rows = {p["name"]: p for p in json.loads(result.stdout)["plugins"]}
    assert rows["floxy-builtin"]["handler_types"] == ["bash", "http", "python"]
    assert rows["alpha"]["version"] == "1.2.10" and rows["alpha"]["handler_types"] == ["echo"]
    # Nothing else: the tests install no plugin into the venv (the example builds into a tmp dir).
    assert set(rows) == {"floxy-builtin", "alpha", "beta"}, "uninstall stray floxy plugins"


def test_plugin_handler_runs_and_higher_priority_wins(env: dict[str, str], tmp_path: Path) -> None:
    result = _run(env, "run", "-f", str(tmp_path / "wf.yaml"), "--output", "json", stdin='{"a":1}')
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["output"] == {"echo": 'hi {"a": 1}', "by": "beta"}
    log = (tmp_path / "log").read_text().splitlines()
    assert log == [
        "beta:step_completed:greet",
        "alpha:step_completed:greet",
        "beta:workflow_completed:plug-v1",
        "alpha:workflow_completed:plug-v1",
    ]


def test_floxy_plugins_restricts_and_no_plugins_disables(
    env: dict[str, str], tmp_path: Path
) -> None:
    only_alpha = {**env, "FLOXY_PLUGINS": "alpha"}
    result = _run(only_alpha, "run", "-f", str(tmp_path / "wf.yaml"), "--output", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["output"]["by"] == "alpha"
    result = _run(env, "--no-plugins", "run", "-f", str(tmp_path / "wf.yaml"))
    assert result.returncode == 2
    assert "unknown type 'echo'" in result.stderr and "Traceback" not in result.stderr
    missing = {**env, "FLOXY_PLUGINS": "gamma"}
    result = _run(missing, "plugins")
    assert result.returncode == 2 and "gamma" in result.stderr


def test_hook_errors_are_logged_and_a_veto_refuses_the_start(
    env: dict[str, str], tmp_path: Path
) -> None:
    crashing = {**env, "PLUGIN_CRASH": "1"}
    result = _run(crashing, "run", "-f", str(tmp_path / "wf.yaml"), "--output", "json")
    assert result.returncode == 0
    assert json.loads(result.stdout)["status"] == "completed"
    assert "plugin bug" in result.stderr
    result = _run(env, "run", "-f", str(tmp_path / "wf.yaml"), stdin='{"veto": true}')
    assert result.returncode == 2
    assert "refused to start: vetoed by beta" in result.stderr
    assert "Traceback" not in result.stderr


def test_plugin_schema_rejects_unknown_handler_keys(env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(WORKFLOW.replace('prefix: "hi "', "prefix: 3\n    colour: red"))
    result = _run(env, "run", "-f", str(bad))
    assert result.returncode == 2
    assert "handler 'greet' (echo)" in result.stderr
    assert "Additional properties are not allowed ('colour'" in result.stderr
    assert "prefix: 3 is not of type 'string'" in result.stderr


def test_a_plugins_exit_handlers_run_after_floxyctl_run(
    env: dict[str, str], tmp_path: Path
) -> None:
    env["PLUGIN_ATEXIT"] = "1"
    result = _run(env, "run", "-f", str(tmp_path / "wf.yaml"), stdin="{}")
    assert result.returncode == 0, result.stderr
    lines = (tmp_path / "log").read_text().splitlines()
    assert {"alpha:atexit", "beta:atexit"} <= set(lines)
