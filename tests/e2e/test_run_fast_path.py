"""`floxyctl run` parses plain command lines without typer; it must mean exactly what typer
would, and leave everything else to typer."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer.main

from floxyctl import app as cli
from floxyctl import run_cmd
from floxyctl.options import fast_run_args
from tests.e2e.conftest import floxyctl_exe

FLOW = """
handlers:
  - {name: a, exec: "echo '{\\"ok\\": true}'"}
flows:
  - name: fast
    steps: [a]
"""

PLAIN = [
    ["-f", "wf.yaml"],
    ["--file", "wf.yaml", "-i", "in.json", "--flow", "fast"],
    ["--file=wf.yaml", "--input=in.json", "--output=json", "-D"],
    ["-f", "wf.yaml", "-w", "7", "--worker-interval", "5ms", "--completion-timeout", "2s"],
    ["-f", "a.yaml", "-f", "wf.yaml", "-w", "2", "-w", "9"],
    ["-f", "wf.yaml", "--decide", "h=confirm", "--decide=g=reject", "--status-check-interval=1s"],
    ["-f", "wf.yaml", "--output", "text", "--debug", "--flow=-odd-name"],
    ["wf.yaml"],
    ["-w", "2", "wf.yaml", "-i", "-"],
    ["wf.yaml", "--input", '{"a": [1, 2]}', "--flow", "-"],
]


@pytest.fixture(scope="module")
def group() -> Any:
    cli._register_commands("run")
    return typer.main.get_command(cli.app)


def typer_params(group: Any, args: list[str], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The arguments typer's `run` passes to `run_cmd.execute` for `floxyctl run ARGS`."""
    seen: dict[str, Any] = {}

    def capture(**kwargs: Any) -> int:
        seen.update(kwargs)
        return 0

    monkeypatch.setattr(run_cmd, "execute", capture)
    with pytest.raises(SystemExit) as done:
        group.main(["run", *args], prog_name="floxyctl", standalone_mode=False)
    assert done.value.code == 0
    return seen


@pytest.mark.parametrize("args", PLAIN, ids=" ".join)
@pytest.mark.parametrize(
    "env",
    [{}, {"FLOXY_WORKERS": "5", "FLOXY_WORKER_INTERVAL": "20ms", "FLOXY_NO_PLUGINS": "yes"}],
    ids=["no-env", "env"],
)
def test_fast_path_means_what_typer_means(
    args: list[str], env: dict[str, str], group: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("FLOXY_WORKERS", "FLOXY_WORKER_INTERVAL", "FLOXY_NO_PLUGINS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    fast = fast_run_args(args, dict(env))
    assert fast is not None
    assert fast.pop("no_plugins") is bool(env)
    assert fast == typer_params(group, args, monkeypatch)


@pytest.mark.parametrize(
    ("args", "env"),
    [
        ([], {}),
        (["--help"], {}),
        (["-f"], {}),
        (["-fwf.yaml"], {}),
        (["-f", "wf.yaml", "extra"], {}),
        (["wf.yaml", "-f", "wf.yaml"], {}),
        (["wf.yaml", "other.yaml"], {}),
        ([" wf.yaml"], {}),
        (["-f", "wf.yaml", "--nope"], {}),
        (["-f", "wf.yaml", "-w", "x"], {}),
        (["-f", "wf.yaml", "-w", "-1"], {}),
        (["-f", "wf.yaml", "--output", "JSON"], {}),
        (["-f", "wf.yaml", "--debug=1"], {}),
        (["-f", "wf.yaml", "-i", " in.json"], {}),
        (["-f", "wf.yaml", "--", "x"], {}),
        (["-f", "wf.yaml"], {"FLOXY_WORKERS": "many"}),
        (["-f", "wf.yaml"], {"FLOXY_NO_PLUGINS": "maybe"}),
    ],
)
def test_anything_unusual_goes_to_typer(args: list[str], env: dict[str, str]) -> None:
    assert fast_run_args(args, env) is None


def _ctl(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*floxyctl_exe(), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "FLOXY_NO_PLUGINS": "1", "NO_COLOR": "1"},
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize(
    "args",
    [
        ["--output", "json"],
        ["--workers", "0"],
        ["--worker-interval", "soon"],
        ["--decide", "a=maybe"],
        ["--flow", "other"],
    ],
    ids=" ".join,
)
def test_both_paths_give_the_same_result(args: list[str], tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(FLOW)
    fast = _ctl("run", "-f", "wf.yaml", *args, cwd=tmp_path)
    slow = _ctl("--no-plugins", "run", "-f", "wf.yaml", *args, cwd=tmp_path)
    assert fast.returncode == slow.returncode
    assert fast.stderr == slow.stderr
    if "json" in args:
        assert fast.returncode == 0
        assert '"ok": true' in fast.stdout
    else:
        assert fast.returncode == 2
        assert fast.stderr.startswith("floxyctl: error: ")


def test_run_imports_neither_typer_nor_the_database_code(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(FLOW)
    heavy = [
        "typer",
        "psycopg",
        "httpx",
        "floxy_core.storage.postgres",
        "ruamel",
        "jsonschema",
        "dataclasses",
        "logging",
        "hashlib",
        "pluggy",
    ]
    # `run` leaves through os._exit (no teardown), so the probe reports from there.
    probe = (
        "import os, sys\n"
        f"heavy = {heavy!r}\n"
        "leave = os._exit\n"
        "def report(code):\n"
        "    print('LOADED', [m for m in heavy if m in sys.modules], flush=True)\n"
        "    leave(code)\n"
        "os._exit = report\n"
        "sys.argv = ['floxyctl', 'run', '-f', 'wf.yaml']\n"
        "from floxyctl.__main__ import main\n"
        "main()\n"
    )
    # The first run fills the spec cache (and imports the YAML loader); the second is a hit.
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-c", probe],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            env={
                "PATH": "/usr/bin:/bin",
                "FLOXY_CACHE_DIR": str(tmp_path / "cache"),
                "FLOXY_NO_PLUGINS": "1",  # pluggy is loaded only for third-party plugins
            },
        )
        assert done.returncode == 0, done.stderr
    assert "LOADED []" in done.stdout


@pytest.mark.parametrize("unbuffered", ["", "1"], ids=["buffered", "unbuffered"])
@pytest.mark.parametrize(
    "args",
    [
        ["run", "-f", "wf.yaml"],
        ["run", "-f", "wf.yaml", "--output", "json"],
        ["--no-plugins", "run", "-f", "wf.yaml"],
        ["validate", "-f", "wf.yaml"],
    ],
    ids=" ".join,
)
def test_a_reader_that_went_away_ends_floxyctl_quietly_with_141(
    args: list[str], unbuffered: str, tmp_path: Path
) -> None:
    (tmp_path / "wf.yaml").write_text(FLOW)
    read_end, write_end = os.pipe()
    os.close(read_end)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = unbuffered
    try:
        done = subprocess.run(
            [*floxyctl_exe(), *args],
            cwd=tmp_path,
            stdout=write_end,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            timeout=60,
            env={**env, "FLOXY_NO_PLUGINS": "1", "NO_COLOR": "1"},
        )
    finally:
        os.close(write_end)
    # quietly: no message about the pipe; only run's progress lines (stderr is not a terminal)
    assert done.returncode == 141, done.stderr
    noise = [ln for ln in done.stderr.splitlines() if not re.match(r"\d\d:\d\d:\d\dZ ", ln)]
    assert noise == [], done.stderr
