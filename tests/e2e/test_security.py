"""Security checks on the real binaries: bash environment, conditions, passwords, SQL, tech server.

* Input cannot change how a bash handler runs (DECISIONS.md "Bash handler environment").
* A condition is data, never code, and costs bounded time (floxy_core/conditions.py limits).
* Database passwords appear in no output, log, error, `/metrics` or `/health` body.
* SQL is parameterised: hostile names and values round-trip through floxyd and PostgreSQL
  exactly and leave the schema intact; a source scan finds no SQL built from values.
* The tech server is read-only: other methods get 405, other paths (traversal included) 404.

One floxyd (module scope) serves the floxyd-backed tests; its database password is
`SECRET`, which the test cluster ignores (it trusts local connections), so everything works while
every output is searched for the password.
"""

from __future__ import annotations

import ast
import contextlib
import http.client
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest

from floxy_core.storage.postgres import store as postgres_store
from tests.pgcluster import Cluster
from tests.support import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
FLOXYCTL = str(Path(sys.executable).with_name("floxyctl"))
SECRET = "S3cret-Pa55"
PARALLEL = 4


CLOSED_PORT = free_port()


def clean_env(**extra: str) -> dict[str, str]:
    """Our environment without floxy or libpq settings, plus `extra`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FLOXY_", "PG")) and k not in ("PYTHONWARNINGS", "PG_PASSWORD")
    }
    env["NO_COLOR"] = "1"
    env.update(extra)
    return env


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str
    elapsed: float
    cpu: float = 0.0
    """CPU seconds of the process (where measured): unlike `elapsed`, the machine's load does
    not change it, so a bound on it catches a parser that loops, not a busy CI host."""

    def __str__(self) -> str:
        return (
            f"exit {self.code} after {self.elapsed:.2f}s\n--- stderr:\n{self.stderr[-3000:]}\n"
            f"--- stdout:\n{self.stdout[:3000]}"
        )


def ctl(
    *args: str,
    env: Mapping[str, str],
    stdin: bytes = b"",
    cwd: Path | None = None,
    timeout: float = 60,
) -> Result:
    """One real floxyctl process in its own session (no terminal to prompt on)."""
    started = time.monotonic()
    done = subprocess.run(
        [FLOXYCTL, *args],
        input=stdin,
        capture_output=True,
        env=dict(env),
        cwd=cwd,
        timeout=timeout,
        start_new_session=True,
        check=False,
    )
    return Result(
        done.returncode,
        done.stdout.decode(errors="replace"),
        done.stderr.decode(errors="replace"),
        time.monotonic() - started,
    )


def in_parallel(calls: Mapping[str, Callable[[], Result]]) -> dict[str, Result]:
    with ThreadPoolExecutor(PARALLEL) as pool:
        futures = {key: pool.submit(call) for key, call in calls.items()}
        return {key: future.result() for key, future in futures.items()}


def http_request(
    port: int, method: str, path: str, body: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection, the path sent exactly as given (no normalisation)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest(method, path, skip_host=False, skip_accept_encoding=True)
        if body is not None:
            conn.putheader("Content-Type", "application/json")
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        data = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data
    finally:
        conn.close()


def get(port: int, path: str) -> tuple[int, str]:
    status, _, body = http_request(port, "GET", path)
    return status, body.decode()


# ================================================================================================
# Bash handler environment
# ================================================================================================

ENV_DUMP = (
    '{env} -0 | {jq} -Rs \'split("\\u0000") | map(select(length > 0) | '
    'capture("^(?<key>[^=]*)=(?<value>.*)$"; "s")) | from_entries\''
)
"""Prints the script's whole environment as one JSON object (NUL-separated, so any value)."""

ENGINE_VARS = {
    "FLOXY_INSTANCE_ID",
    "FLOXY_WORKFLOW_ID",
    "FLOXY_STEP_NAME",
    "FLOXY_IDEMPOTENCY_KEY",
    "FLOXY_RETRY_COUNT",
    "FLOXY_DEBUG",
}
GUARDED = (
    "PATH",
    "HOME",
    "IFS",
    "SHELL",
    "ENV",
    "BASH_ENV",
    "BASHOPTS",
    "SHELLOPTS",
    "PS4",
    "CDPATH",
    "GLOBIGNORE",
    "BASH_XTRACEFD",
    "LD_PRELOAD",
    "LD_LIBRARY_PATH",
    "LD_AUDIT",
    "GCONV_PATH",
    "GLIBC_TUNABLES",
)


def env_dump_script() -> str:
    jq = shutil.which("jq")
    assert jq, "jq is needed (scripts/test.sh installs it)"
    return ENV_DUMP.format(env=shutil.which("env") or "/usr/bin/env", jq=jq)


def _hostile_fields(tmp_path: Path, markers: Path, evil: Path) -> dict[str, Any]:
    return {
        "path": "/nonexistent/evil-bin",
        "Path": "/nonexistent/evil-bin-2",
        "home": "/nonexistent/evil-home",
        "ifs": "/",
        "shell": "/nonexistent/evil-shell",
        "env": str(evil),
        "bash_env": str(evil),
        "bashopts": "extdebug",
        "shellopts": "xtrace",
        "ſhellopts": "xtrace",  # U+017F upper-cases to an ASCII S: SHELLOPTS again
        "ps4": f"$(touch {markers}/ps4)",
        "cdpath": "/nonexistent",
        "globignore": "*",
        "bash_xtracefd": "2",
        "ld_preload": str(tmp_path / "evil.so"),
        "LD_LIBRARY_PATH": "/nonexistent/evil-lib",
        "ld_audit": str(tmp_path / "evil.so"),
        "gconv_path": "/nonexistent",
        "glibc_tunables": "glibc.malloc.check=3",
        "input": "forged",
        "floxy_instance_id": "666",
        "floxy_step_name": "forged",
        "floxy_debug": "true",
        "floxy_retry_count": "99",
        "floxy_idempotency_key": "forged",
        "floxy_compensation": "true",
        "floxy_dsn": "host=evil",
        "floxy_anything": "x",
        "bash_func_echo%%": f"() {{ touch {markers}/function; }}",
        "plain_field": "kept",
        "number_field": 42,
    }


@pytest.mark.parametrize("kind", ["inline", "file"])
def test_input_cannot_change_the_bash_environment(tmp_path: Path, kind: str) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    evil = tmp_path / "evil.sh"
    evil.write_text(f'touch "{markers}/sourced-$$"\n')
    hostile = _hostile_fields(tmp_path, markers, evil)
    # The script names every field (a comment), so that the guards behind the allow-list are what
    # keeps these variables out (the allow-list itself: test_input_never_runs_code_through_*).
    script = env_dump_script() + " # " + " ".join(sorted(k.upper() for k in hostile))
    (tmp_path / "dump.sh").write_text(script + "\n")
    exec_line = json.dumps(script) if kind == "inline" else "./dump.sh"
    (tmp_path / "flow.yaml").write_text(
        f"handlers:\n  - name: dump\n    exec: {exec_line}\n"
        "flows:\n  - name: f\n    steps:\n      - {name: dump, handler: dump, max_retries: 0}\n"
    )
    parent = clean_env(
        BASH_ENV=str(evil),  # even a hostile parent BASH_ENV/ENV must not run before the script
        ENV=str(evil),
        FLOXY_COMPENSATION="true",
    )
    for name in ("HOME", "LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT", "IFS", "CDPATH"):
        parent.pop(name, None)  # absent in the parent: input must not fill the gap either

    result = ctl(
        "run",
        "-f",
        str(tmp_path / "flow.yaml"),
        "--output",
        "json",
        env=parent,
        stdin=json.dumps(hostile).encode(),
        cwd=tmp_path,
    )
    assert result.code == 0, result
    doc = json.loads(result.stdout)
    child: dict[str, str] = doc["output"]

    assert list(markers.iterdir()) == [], "a hostile BASH_ENV, ENV, PS4 or function ran"
    for name in GUARDED:
        # BASH_ENV and ENV are dropped even from the parent: nothing runs before the script.
        expected = None if name in ("BASH_ENV", "ENV") else parent.get(name)
        assert child.get(name) == expected, (name, child.get(name), expected)
    assert json.loads(child["INPUT"]) == hostile
    floxy = {k: v for k, v in child.items() if k.startswith("FLOXY_")}
    assert set(floxy) == ENGINE_VARS, floxy
    assert floxy["FLOXY_INSTANCE_ID"] == str(doc["instance_id"])
    assert floxy["FLOXY_STEP_NAME"] == "dump"
    assert floxy["FLOXY_DEBUG"] == "false"
    assert floxy["FLOXY_RETRY_COUNT"] == "0"
    assert floxy["FLOXY_IDEMPOTENCY_KEY"] != "forged"
    assert not [k for k in child if k.startswith("BASH_FUNC")]
    # Ordinary fields are still exported: the guard is not "export nothing".
    assert child["PLAIN_FIELD"] == "kept"
    assert child["NUMBER_FIELD"] == "42"


@pytest.mark.parametrize("program", ["python3", "perl", "node"])
def test_input_never_runs_code_through_the_programs_a_script_calls(
    tmp_path: Path, program: str
) -> None:
    """The issue's attacks through `floxyctl run`: scripts that only pass $INPUT to python3,
    perl or node, and input fields alone that made those programs run `id`."""
    from tests.integration.test_bash_hardening import attacks

    assert program != "node" or shutil.which("node"), "node is missing (test.sh installs it)"
    markers = tmp_path / "markers"
    markers.mkdir()
    script, fields = attacks(markers)[program]
    (tmp_path / "flow.yaml").write_text(
        json.dumps(
            {
                "handlers": [{"name": "h", "exec": script}],
                "flows": [{"name": "f", "steps": [{"name": "h", "max_retries": 0}]}],
            }
        )
    )
    data = {"order": 1, **fields}
    result = ctl(
        "run",
        "-f",
        str(tmp_path / "flow.yaml"),
        "--output",
        "json",
        env=clean_env(),
        stdin=json.dumps(data).encode(),
        cwd=tmp_path,
    )
    assert result.code == 0, result
    assert json.loads(result.stdout)["output"] == data
    assert list(markers.iterdir()) == [], f"input fields ran `id` through {program}"


# ================================================================================================
# Conditions
# ================================================================================================

CONDITIONS = {
    "nested-parens-1000": "{{ " + "(" * 1000 + "true" + ")" * 1000 + " }}",
    "nested-calls-40": "{{ " + "(not " * 40 + "true" + ")" * 40 + " }}",
    "pipeline-100-stages": "{{ true" + " | not" * 100 + " }}",
    "string-literal-1mb": '{{ eq .a "' + "x" * 1_000_000 + '" }}',
    "raw-string-1mb": "{{ eq .a `" + "x" * 1_000_000 + "` }}",
    "string-literal-2kb": '{{ eq .a "' + "x" * 2000 + '" }}',
    "expression-250kb": "{{ and " + "true " * 50_000 + "}}",
    "tokens-600": "{{ or " + "false " * 600 + "}}",
    "actions-5000": "{{ true }}" * 5000,
    "template": '{{ template "x" . }}',
    "define": '{{ define "x" }}true{{ end }}{{ template "x" }}',
    "block": '{{ block "x" . }}true{{ end }}',
    "call": "{{ call .f 1 }}",
    "variable-undefined": "{{ $x }}",
    "range-unclosed": "{{ range .a }}true",
    "printf-wrong-arity": "{{ printf }}",
    "python-import": '{{ __import__("os").system("touch {marker}") }}',
    "python-eval": '{{ eval "1+1" }}',
    "python-exec": '{{ exec "import os" }}',
    "method-call": "{{ .a.Method 1 }}",
    "shell-substitution": "{{ $(touch {marker}) }}",
    "unclosed-action": "{{ eq .a 1",
    "unclosed-comment": "{{/* never closed",
}


def _condition_yaml(expr: str) -> str:
    # JSON is YAML: the expression is quoted exactly, whatever it holds.
    doc = {
        "handlers": [{"name": "h", "exec": "echo '{}'"}],
        "flows": [
            {
                "name": "f",
                "steps": [
                    {"type": "condition", "name": "c", "expr": expr, "else": ["h"]},
                    {"name": "after", "handler": "h"},
                ],
            }
        ],
    }
    return json.dumps(doc)


@pytest.fixture(scope="module")
def condition_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Result, Path]]:
    root = tmp_path_factory.mktemp("conditions")
    marker = root / "marker"
    results: dict[str, tuple[Result, Path]] = {}
    for name, expr in CONDITIONS.items():  # one at a time: each child's CPU time is measured
        path = root / f"{name}.yaml"
        path.write_text(_condition_yaml(expr.replace("{marker}", str(marker))))
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        result = ctl("validate", "-f", str(path), env=clean_env(), cwd=root)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        result.cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        results[name] = (result, marker)
    return results


@pytest.mark.parametrize("name", list(CONDITIONS))
def test_condition_is_rejected_quickly(
    name: str, condition_results: dict[str, tuple[Result, Path]]
) -> None:
    result, marker = condition_results[name]
    assert result.code == 2, result
    assert "invalid condition" in result.stderr, result
    assert "Traceback" not in result.stderr, result
    assert result.cpu < 5, f"validate used {result.cpu:.1f}s of CPU (bound: 5s)\n{result}"
    assert not marker.exists(), "the condition ran code"


def test_condition_evaluation_is_data_only_and_bounded(tmp_path: Path) -> None:
    """At run time: output capped, fields are map keys (no attribute access), no formatting."""
    flows = {
        "handlers": [{"name": "h", "exec": "echo '{\"ran\": true}'"}],
        "flows": [
            {
                "name": "huge",  # prints a 200 KB input 20 times: must stop at the output cap
                "steps": [
                    {"type": "condition", "name": "c", "expr": "{{ .a }}" * 20, "else": ["h"]},
                    {"name": "t", "handler": "h"},
                ],
            },
            {
                "name": "loops",  # 1000**3 iterations asked for: must stop at the iteration cap
                "steps": [
                    {
                        "type": "condition",
                        "name": "c",
                        "expr": "{{ range .l }}{{ range $.l }}{{ range $.l }}"
                        "{{ if eq . -1 }}x{{ end }}{{ end }}{{ end }}{{ end }}",
                        "else": ["h"],
                    },
                    {"name": "t", "handler": "h"},
                ],
            },
            {
                "name": "dunder",  # `.__class__` is a map key, absent here: false, else branch
                "steps": [
                    {
                        "type": "condition",
                        "name": "c",
                        "expr": '{{ eq .__class__.__name__ "dict" }}',
                        "else": [{"name": "otherwise", "handler": "h"}],
                    },
                    {"name": "then", "handler": "h"},
                ],
            },
            {
                "name": "percent",  # printf verbs are plain text, printed as they are
                "steps": [
                    {"type": "condition", "name": "c", "expr": "%s%n{{ .a }}%x", "else": ["h"]},
                    {"name": "t", "handler": "h"},
                ],
            },
        ],
    }
    path = tmp_path / "flows.yaml"
    path.write_text(json.dumps(flows))
    big = json.dumps({"a": "x" * 200_000}).encode()
    small = json.dumps({"a": "%d"}).encode()
    env = clean_env()
    results = in_parallel(
        {
            "huge": lambda: ctl(
                "run",
                "-f",
                str(path),
                "--flow",
                "huge",
                "--output",
                "json",
                env=env,
                stdin=big,
                cwd=tmp_path,
            ),
            "dunder": lambda: ctl(
                "run",
                "-f",
                str(path),
                "--flow",
                "dunder",
                "--output",
                "json",
                env=env,
                stdin=small,
                cwd=tmp_path,
            ),
            "loops": lambda: ctl(
                "run",
                "-f",
                str(path),
                "--flow",
                "loops",
                "--output",
                "json",
                env=env,
                stdin=json.dumps({"l": list(range(1000))}).encode(),
                cwd=tmp_path,
            ),
            "percent": lambda: ctl(
                "run",
                "-f",
                str(path),
                "--flow",
                "percent",
                "--output",
                "json",
                env=env,
                stdin=small,
                cwd=tmp_path,
            ),
        }
    )
    huge = results["huge"]
    assert huge.code == 1 and huge.elapsed < 5, huge
    assert "output longer than" in json.loads(huge.stdout)["error"]

    dunder = results["dunder"]
    assert dunder.code == 0, dunder
    ran = {s["name"]: s["status"] for s in json.loads(dunder.stdout)["steps"]}
    assert ran.get("otherwise") == "completed" and "then" not in ran, ran

    loops = results["loops"]
    assert loops.code == 1 and loops.elapsed < 5, loops
    assert "range iterations" in json.loads(loops.stdout)["error"], loops

    percent = results["percent"]
    assert percent.code == 1, percent
    assert '"%s%n%d%x"' in json.loads(percent.stdout)["error"], percent


# ================================================================================================
# floxyd on a real database (shared by the password, SQL and tech-server tests)
# ================================================================================================

HOSTILE_FLOW = "x'; DROP TABLE workflows.workflow_steps; --"
HOSTILE_ID = f"{HOSTILE_FLOW}-v1"
FIRST = "s'1\"\\ $1 ); DELETE FROM workflows.workflow_instances; --"
HUMAN = "ok?'); UPDATE workflows.workflow_instances SET status = 'failed'; --"
LAST = "ünï 🚀 $$ $q$ \\x00 %s %(x)s {0} ;"
HANDLER = "echo'h\"; --"
HOSTILE_INPUT: dict[str, Any] = {
    "quote": 'it\'s "quoted" \'\' ""',
    "backslash": "C:\\path\\n\\\\ \\' \\\"",
    "dollar": "$1 $$ $q$ ${x} $(id)",
    "sql": "'; DROP TABLE workflows.workflow_instances; --",
    "format": "%s %(x)s {0} %% %n",
    "unicode": "日本語 ☃ 🚀 \u2028 \u202e ẞ 𝕏 e\u0301",
    "nested": {'a"b': ["'", '\\"', {"c'); --": "d\\", "$1": ["$2", None, True]}]},
    "k'ey\"with\\quotes": True,
    "number": 1.5,
    "big": 12345678901234567890,
    "null": None,
    "empty": "",
}
COMMENT = 'ok\'); DELETE FROM workflows.workflow_human_decisions; -- \\ "$1" ✓'
DECIDED_BY = "o'brien\"; --"
REASON = "stop'); TRUNCATE workflows.workflow_events; -- \\ $1 %s"


def daemon_yaml() -> str:
    doc = {
        "handlers": [
            {"name": HANDLER, "exec": "printf '%s' \"$INPUT\""},
            {"name": "ok", "exec": "echo '{\"ok\": true}'"},
            {"name": "env_dump", "exec": env_dump_script()},
        ],
        "flows": [
            {
                "name": HOSTILE_FLOW,
                "steps": [
                    {"name": FIRST, "handler": HANDLER},
                    {"type": "human", "name": HUMAN},
                    {"name": LAST, "handler": HANDLER},
                ],
            },
            {"name": "f", "steps": [{"name": "s", "handler": "ok"}]},
            {"name": "envcheck", "steps": [{"name": "dump", "handler": "env_dump"}]},
            {
                "name": "escaped",
                "steps": [
                    {"type": "human", "name": "approve"},
                    {"name": "rocket <PAIR>", "handler": "ok"},
                ],
            },
        ],
    }
    # Literal UTF-8 everywhere, except one JSON escape of a surrogate pair (how JSON tools write
    # characters outside the BMP; JSON is YAML): "\ud83d\ude80" is one character, U+1F680.
    return json.dumps(doc, ensure_ascii=False).replace("<PAIR>", "\\ud83d\\ude80")


def relations(dsn: str) -> set[tuple[str, str]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT c.relname, c.relkind::text FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'workflows'"
        ).fetchall()
    return {(str(name), str(kind)) for name, kind in rows}


@dataclass
class Floxyd:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    dsn: str
    """The DSN without the password (for the test's own checks)."""
    dsn_with_password: str
    url_with_password: str
    yaml_path: Path
    relations_before: set[tuple[str, str]]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def ctl_env(self, **extra: str) -> dict[str, str]:
        return clean_env(FLOXY_DSN=self.dsn_with_password, **extra)


def _url(dsn: str, password: str) -> str:
    parts = dict(item.split("=", 1) for item in dsn.split())
    return (
        f"postgresql://{parts['user']}:{quote(password, safe='')}@{parts['host']}:"
        f"{parts['port']}/{parts['dbname']}"
    )


@pytest.fixture(scope="module")
def floxyd(pg_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Floxyd]:
    """floxyd as documented for production: the password in FLOXY_DSN (a URL), JSON logs at
    debug level, statistics every second."""
    root = tmp_path_factory.mktemp("floxyd")
    dsn = pg_cluster.create_database()
    yaml_path = root / "flows.yaml"
    yaml_path.write_text(daemon_yaml(), encoding="utf-8")
    before = relations(dsn)
    port = free_port()
    log_path = root / "floxyd.log"
    url = _url(dsn, SECRET)
    env = clean_env(
        FLOXY_TECH_ADDR=f"127.0.0.1:{port}",
        FLOXY_STATS_INTERVAL="1s",  # statistics lines end up in the log too
        FLOXY_MAINTENANCE_INTERVAL="0",
        FLOXY_NO_PLUGINS="1",
        FLOXY_LOG_LEVEL="debug",
        FLOXY_LOG_FORMAT="json",
        FLOXY_WORKERS="2",
        FLOXY_DSN=url,
    )
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "floxyd", str(yaml_path)],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=root,
        )
    daemon = Floxyd(proc, port, log_path, dsn, f"{dsn} password={SECRET}", url, yaml_path, before)
    try:

        def ready() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"floxyd exited with {proc.returncode}:\n{daemon.log()}")
            try:
                return get(port, "/health/ready")[0] == 200
            except OSError:
                return False

        wait_for("floxyd to be ready", ready, timeout=60)
        yield daemon
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        with contextlib.suppress(Exception):
            pg_cluster.drop_database(dsn)
    assert SECRET not in daemon.log(), "the database password leaked into the floxyd log"


def scrape_all(port: int) -> dict[str, tuple[int, str]]:
    return {
        path: get(port, path) for path in ("/metrics", "/health", "/health/ready", "/health/live")
    }


# ================================================================================================
# Passwords
# ================================================================================================

DB_COMMANDS: list[tuple[str, ...]] = [
    ("migrate", "--status"),
    ("workflows", "--output", "json"),
    ("status",),
    ("dlq", "list", "--output", "json"),
    ("start", "-o", "f", "--output", "json"),
    ("inspect", "999999"),  # an error path on a working connection
]


def _variants(dsn: str, url: str, host: str, port: str, db: str) -> dict[str, dict[str, Any]]:
    """Every way floxyctl takes a password: env for the process, extra args, stdin."""
    flags = ("--host", host, "--port", port, "--user", "postgres", "--database", db)
    return {
        "dsn-debug": {"env": {"FLOXY_DSN": f"{dsn} password={SECRET}", "FLOXY_DEBUG": "1"}},
        "url": {"env": {"FLOXY_DSN": url}},
        "dsn-flag": {"args": ("--dsn", url)},
        "floxy-db-password": {"env": {"FLOXY_DB_PASSWORD": SECRET}, "args": flags},
        "pg-password": {"env": {"PG_PASSWORD": SECRET, "FLOXY_DEBUG": "1"}, "args": flags},
        "prompt": {"args": ("-W", "--dsn", dsn), "stdin": f"{SECRET}\n".encode()},
    }


def _password_runs(dsn: str, url: str, commands: list[tuple[str, ...]]) -> dict[str, Result]:
    parts = dict(item.split("=", 1) for item in dsn.split())
    variants = _variants(dsn, url, parts["host"], parts["port"], parts["dbname"])
    calls: dict[str, Callable[[], Result]] = {}
    for vname, variant in variants.items():
        for command in commands:
            key = f"{vname}: {' '.join(command)}"
            env = clean_env(**variant.get("env", {}))
            args = (*command, *variant.get("args", ()))
            stdin = variant.get("stdin", b"")
            calls[key] = lambda args=args, env=env, stdin=stdin: ctl(*args, env=env, stdin=stdin)
    return in_parallel(calls)


def test_floxyctl_never_prints_the_password(floxyd: Floxyd) -> None:
    """Working connections (the cluster ignores the password) and a refused one."""
    ok = _password_runs(floxyd.dsn, floxyd.url_with_password, DB_COMMANDS)
    closed_dsn = f"host=127.0.0.1 port={CLOSED_PORT} user=postgres dbname=floxy"
    closed = _password_runs(
        closed_dsn, _url(closed_dsn, SECRET), [("status",), ("inspect", "1"), ("migrate",)]
    )
    problems = []
    for key, result in ok.items():
        expected = 2 if key.endswith("inspect 999999") else 0
        if result.code != expected:
            problems.append(f"{key}: expected exit {expected}\n{result}")
    for key, result in closed.items():
        if result.code != 2 or "cannot connect" not in result.stderr:
            problems.append(f"{key}: expected a refused connection\n{result}")
    for key, result in {**ok, **closed}.items():
        if SECRET in result.stdout + result.stderr:
            problems.append(f"{key}: password printed\n{result}")
        if "Traceback" in result.stderr and "debug" not in key:
            problems.append(f"{key}: traceback without FLOXY_DEBUG\n{result}")
    assert not problems, "\n\n".join(problems)


def test_floxyd_never_shows_the_password(floxyd: Floxyd) -> None:
    """Log, /metrics and /health bodies (healthy and unhealthy), after real work was done."""
    started = ctl("start", "-o", "f", "--wait", "--output", "json", env=floxyd.ctl_env())
    assert started.code == 0, started
    for path, (status, body) in scrape_all(floxyd.port).items():
        assert status == 200, (path, status, body)
        assert SECRET not in body, path
    assert "floxy_workflows_completed_total" in get(floxyd.port, "/metrics")[1]
    log = floxyd.log()
    assert "workflow" in log
    assert SECRET not in log and quote(SECRET, safe="") not in log


def test_floxyd_handlers_do_not_receive_the_database_password(floxyd: Floxyd) -> None:
    """A handler's environment is not the daemon's credential store: whatever a script prints
    (an `env` dump in a failing step's stderr ends up in the step error, in the database and in
    `floxyctl inspect`) must not carry the password floxyd connects with."""
    result = ctl("start", "-o", "envcheck", "--wait", "--output", "json", env=floxyd.ctl_env())
    assert result.code == 0, result
    child_env = json.loads(result.stdout)["output"]
    leaked = sorted(k for k, v in child_env.items() if SECRET in v or quote(SECRET) in v)
    assert not leaked, f"handler environment carries the database password in {leaked}"


# ================================================================================================
# SQL is parameterised
# ================================================================================================


def _inspect(floxyd: Floxyd, instance_id: int) -> dict[str, Any]:
    result = ctl("inspect", str(instance_id), "--output", "json", env=floxyd.ctl_env())
    assert result.code == 0, result
    return dict(json.loads(result.stdout))


def _wait_human(floxyd: Floxyd, instance_id: int) -> None:
    def waiting() -> bool:
        steps = _inspect(floxyd, instance_id)["steps"]
        return any(s["name"] == HUMAN and s["status"] == "waiting_decision" for s in steps)

    wait_for(f"instance {instance_id} to wait for {HUMAN!r}", waiting)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def test_hostile_names_and_values_round_trip_through_postgres(
    floxyd: Floxyd, tmp_path: Path
) -> None:
    env = floxyd.ctl_env()
    input_path = tmp_path / "input.json"
    input_path.write_text(json.dumps(HOSTILE_INPUT, ensure_ascii=False), encoding="utf-8")

    listed = ctl("workflows", "--output", "json", env=env)
    assert listed.code == 0, listed
    assert HOSTILE_ID in [w["id"] for w in json.loads(listed.stdout)["workflows"]]

    # One instance runs to the end through a human decision...
    started = ctl("start", "-o", HOSTILE_ID, "-i", str(input_path), "--output", "json", env=env)
    assert started.code == 0, started
    done_id = int(json.loads(started.stdout)["instance_id"])
    _wait_human(floxyd, done_id)
    decided = ctl(
        "decide", str(done_id), "confirm", "--comment", COMMENT, "--by", DECIDED_BY, env=env
    )
    assert decided.code == 0, decided
    doc = wait_for(
        "the hostile instance to complete",
        lambda: (d := _inspect(floxyd, done_id))["status"] in ("completed", "failed") and d,
    )
    assert doc["status"] == "completed", doc
    assert doc["workflow_id"] == HOSTILE_ID
    assert doc["input"] == HOSTILE_INPUT
    assert doc["output"] == HOSTILE_INPUT
    assert [s["name"] for s in doc["steps"]] == [FIRST, HUMAN, LAST]
    assert all(s["output"] == HOSTILE_INPUT for s in doc["steps"] if s["name"] != HUMAN)

    # ...another is cancelled with a hostile reason while it waits.
    started = ctl("start", "-o", HOSTILE_ID, "-i", str(input_path), "--output", "json", env=env)
    assert started.code == 0, started
    cancel_id = int(json.loads(started.stdout)["instance_id"])
    _wait_human(floxyd, cancel_id)
    cancelled = ctl(
        "cancel", "-o", str(cancel_id), "--reason", REASON, "--requested-by", DECIDED_BY, env=env
    )
    assert cancelled.code == 0, cancelled
    doc = wait_for(
        "the hostile instance to be cancelled",
        lambda: (d := _inspect(floxyd, cancel_id))["status"] == "cancelled" and d,
    )
    assert REASON in set(_strings(doc["events"])), doc["events"]

    # Filters are values, not SQL.
    for args in (
        ("status", "--workflow", "x' OR '1'='1", "--output", "json"),
        ("status", "--workflow", HOSTILE_FLOW + "' OR '1'='1", "--output", "json"),
        ("status", "--status", "running' OR '1'='1", "--output", "json"),
    ):
        result = ctl(*args, env=env)
        if result.code == 0:
            assert json.loads(result.stdout)["instances"] == [], (args, result)
        else:
            assert result.code == 2 and "Traceback" not in result.stderr, (args, result)
    by_name = ctl("status", "--workflow", HOSTILE_FLOW, "--output", "json", env=env)
    assert by_name.code == 0, by_name
    assert {i["id"] for i in json.loads(by_name.stdout)["instances"]} >= {done_id, cancel_id}

    # The schema is intact and the stored values are exactly what was sent.
    lost = floxyd.relations_before - relations(floxyd.dsn)
    assert not lost, f"relations gone: {sorted(lost)}"
    with psycopg.connect(floxyd.dsn) as conn:
        names = conn.execute(
            "SELECT name FROM workflows.workflow_definitions WHERE id = %s", (HOSTILE_ID,)
        ).fetchall()
        assert names == [(HOSTILE_FLOW,)]
        stored = conn.execute(
            "SELECT input, output FROM workflows.workflow_instances WHERE id = %s", (done_id,)
        ).fetchone()
        assert stored == (HOSTILE_INPUT, HOSTILE_INPUT)
        steps = conn.execute(
            "SELECT step_name FROM workflows.workflow_steps WHERE instance_id = %s", (done_id,)
        ).fetchall()
        assert sorted(s for (s,) in steps) == sorted([FIRST, HUMAN, LAST])
        decision = conn.execute(
            "SELECT decided_by, comment FROM workflows.workflow_human_decisions "
            "WHERE instance_id = %s",
            (done_id,),
        ).fetchall()
        assert decision == [(DECIDED_BY, COMMENT)]
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM workflows.workflow_instances),"
            " (SELECT count(*) FROM workflows.workflow_events),"
            " (SELECT count(*) FROM workflows.workflow_steps)"
        ).fetchone()
        assert counts is not None and all(n > 0 for n in counts), counts


# -- no SQL built from values in the source ----------------------------------------------------

SQL_SOURCES = ("floxy_core/storage/postgres/*.py", "floxyd/*.py", "floxyctl/*.py")
_SQL_START = re.compile(
    r"^\s*(SELECT|INSERT|UPDATE|DELETE|WITH|NOTIFY|LISTEN|UNLISTEN|DROP|CREATE|ALTER|TRUNCATE|"
    r"SET|RESET|CALL|COPY|GRANT|REVOKE|DO|LOCK|VACUUM|ANALYZE|EXECUTE|PREPARE)\s"
)
"""Statements as this code base writes them (keywords in capitals), so prose does not match."""
_SQL_CLAUSE = re.compile(r"\s(FROM|WHERE|VALUES|INTO|RETURNING|ON CONFLICT|ORDER BY)\s")
_SQL_ANY_CASE = re.compile(
    r"\b(select\s.+\sfrom|insert\s+into|update\s+\S+\s+set|delete\s+from)\s",
    re.IGNORECASE | re.DOTALL,
)
SQL_ALLOW_LIST = {
    # LISTEN/NOTIFY take no parameters; CHANNEL is a module constant (checked below).
    ("floxy_core/storage/postgres/store.py", "f'NOTIFY {CHANNEL}'"),
    ("floxy_core/storage/postgres/listener.py", "f'LISTEN {CHANNEL}'"),
}


def _literal_text(node: ast.AST) -> str | None:
    """The text of a str constant or f-string (interpolations as `{}`), else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(
            v.value if isinstance(v, ast.Constant) and isinstance(v.value, str) else "{}"
            for v in node.values
        )
    return None


def _looks_like_sql(text: str) -> bool:
    flat = text.replace("\n", " ")
    return bool(_SQL_START.match(text) or _SQL_CLAUSE.search(flat) or _SQL_ANY_CASE.search(flat))


def sql_built_from_values(source: str) -> list[tuple[int, str]]:
    """(line, code) of every f-string, `%`, `+` or `.format` that builds SQL text with values."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        text: str | None = None
        if isinstance(node, ast.JoinedStr) and any(
            isinstance(v, ast.FormattedValue) for v in node.values
        ):
            text = _literal_text(node)
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod | ast.Add):
            sides = [_literal_text(node.left), _literal_text(node.right)]
            both_literal = all(s is not None for s in sides)
            if not both_literal or isinstance(node.op, ast.Mod):
                text = next((s for s in sides if s is not None), None)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "format"
        ):
            text = _literal_text(node.func.value)
        if text is not None and _looks_like_sql(text):
            found.append((getattr(node, "lineno", 0), ast.unparse(node)))
    return found


def test_the_sql_scan_finds_what_it_should() -> None:
    bad = '''
conn.execute(f"SELECT * FROM t WHERE id = {x}")
cur.execute("DELETE FROM t WHERE name = '%s'" % name)
conn.execute("UPDATE t SET a = '" + a + "' WHERE id = 1")
query = "INSERT INTO t (a) VALUES ({})".format(a)
conn.execute(f"""
    select * from t
    where name = '{name}'
""")
'''
    good = """
conn.execute("SELECT * FROM t WHERE id = %s", (x,))
conn.execute(sql.SQL("SELECT {}.run()").format(sql.Identifier(schema)))
log.info(f"polling interval when LISTEN/NOTIFY is quiet ({interval})")
message = f"cannot connect to the database at {where}: {exc}"
EPILOG = DB_EPILOG + " With --wait the exit code is run's: 0 completed"
hint = f"select the flow with --flow {name} (from {path})"
"""
    assert {line for line, _ in sql_built_from_values(bad)} == {2, 3, 4, 5, 6}
    assert sql_built_from_values(good) == []


def test_no_sql_is_built_from_values() -> None:
    assert re.fullmatch(r"[a-z_][a-z0-9_]*", postgres_store.CHANNEL), postgres_store.CHANNEL
    offenders = []
    files = sorted({p for pattern in SQL_SOURCES for p in ROOT.glob(pattern)})
    assert len(files) > 10, files
    for path in files:
        rel = path.relative_to(ROOT).as_posix()
        for line, code in sql_built_from_values(path.read_text(encoding="utf-8")):
            if (rel, code) not in SQL_ALLOW_LIST:
                offenders.append(f"{rel}:{line}: {code}")
    assert not offenders, "SQL built by string formatting:\n" + "\n".join(offenders)


# ================================================================================================
# The tech server is read-only
# ================================================================================================

TECH_PATHS = ["/metrics", "/health", "/health/live", "/health/ready", "/", "/admin", "/nope"]
WRITE_METHODS = ["POST", "PUT", "DELETE", "PATCH"]
TRAVERSALS = [
    "/../../etc/passwd",
    "/%2e%2e/%2e%2e/etc/passwd",
    "/%2e%2e/",
    "/..%2f..%2fetc%2fpasswd",
    "/metrics/../../../etc/passwd",
    "/health/..%2f..%2f..%2fetc/passwd",
    "//etc/passwd",
    "/.%2e/.%2e/etc/passwd",
    "/metrics%00.txt",
    "/etc/passwd",
]


def _counters(metrics: str) -> list[str]:
    """Counter and histogram samples: what a write would have to change."""
    return sorted(
        line
        for line in metrics.splitlines()
        if line.startswith("floxy_")
        and re.match(r"^floxy_\w+(_total|_count|_sum|_bucket)[{ ]", line)
    )


def _instances(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM workflows.workflow_instances").fetchone()
    assert row is not None
    return int(row[0])


def _quiet(dsn: str) -> None:
    """Wait until no instance is unfinished, so counters only move if a request moves them."""

    def idle() -> bool:
        with psycopg.connect(dsn) as conn:
            row = conn.execute(
                "SELECT count(*) FROM workflows.workflow_instances "
                "WHERE status IN ('pending', 'running', 'rolling_back', 'cancelling')"
            ).fetchone()
        return row is not None and row[0] == 0

    wait_for("floxyd to finish the running instances", idle)


def test_tech_server_refuses_writes(floxyd: Floxyd) -> None:
    port = floxyd.port
    _quiet(floxyd.dsn)
    before = _counters(get(port, "/metrics")[1])
    instances = _instances(floxyd.dsn)
    problems = []
    for method in WRITE_METHODS:
        for path in TECH_PATHS:
            body = json.dumps({"workers": 0, "status": "stopped", "workflow": "f"}).encode()
            status, headers, data = http_request(port, method, path, body)
            if status not in (404, 405):
                problems.append(f"{method} {path}: {status} {data[:200]!r}")
            if status == 405 and "GET" not in headers.get("allow", ""):
                problems.append(f"{method} {path}: 405 without Allow: GET")
    assert not problems, "\n".join(problems)
    assert _counters(get(port, "/metrics")[1]) == before
    assert _instances(floxyd.dsn) == instances
    assert get(port, "/health/ready")[0] == 200


def _read_response(reader: Any) -> tuple[int, bytes] | None:
    """One HTTP/1.1 response from a socket file: (status, body), or None when it was closed."""
    status_line = reader.readline()
    if not status_line:
        return None
    headers: dict[str, str] = {}
    while (line := reader.readline()) not in (b"\r\n", b"\n", b""):
        key, _, value = line.decode("latin-1").partition(":")
        headers[key.strip().lower()] = value.strip()
    return int(status_line.split()[1]), reader.read(int(headers.get("content-length", "0")))


def test_tech_server_does_not_run_a_request_hidden_in_a_refused_body(floxyd: Floxyd) -> None:
    """A refused POST must not leave its body on the kept-alive connection, where it is read as
    the next request: request smuggling, and every later answer on that connection (or behind a
    proxy that reuses it) belongs to the wrong request."""
    smuggled = b"GET /nope-smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
    post = (
        b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
        b"Content-Length: %d\r\n\r\n" % len(smuggled)
    )
    with (
        socket.create_connection(("127.0.0.1", floxyd.port), timeout=10) as sock,
        sock.makefile("rb") as reader,
    ):
        sock.sendall(post + smuggled)  # one write: the body is there when the headers are
        first = _read_response(reader)
        assert first is not None and first[0] == 405, first
        try:
            sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
            second = _read_response(reader)
        except OSError:
            second = None  # the server closed the connection instead: also fine
    if second is not None:
        assert second == (200, b'{"status": "alive"}\n'), (
            f"the body of the refused POST was served as a request: {second!r}"
        )


@pytest.mark.parametrize("path", TRAVERSALS)
def test_tech_server_path_traversal_is_not_found(floxyd: Floxyd, path: str) -> None:
    status, _, body = http_request(floxyd.port, "GET", path)
    assert status == 404, (path, status, body[:300])
    assert b"root:" not in body


def test_tech_server_answers_only_the_documented_paths(floxyd: Floxyd) -> None:
    for path in ("/metrics", "/health", "/health/live", "/health/ready"):
        assert get(floxyd.port, path)[0] == 200, path
    for path in ("/", "/metrics/x", "/healthz", "/debug/pprof", "/.env", "/server-status"):
        assert get(floxyd.port, path)[0] == 404, path


# -- last: the database goes away under floxyd ----------------------------------------------


def test_floxyd_unhealthy_answers_do_not_show_the_password(floxyd: Floxyd) -> None:
    """/health and /metrics while the database refuses floxyd, then the log. Runs last among
    the floxyd tests: it takes the database away (reversibly) from under the daemon."""
    admin = floxyd.dsn.rsplit("dbname=", 1)[0] + "dbname=postgres"
    dbname = floxyd.dsn.rsplit("dbname=", 1)[1]
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS false')
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (dbname,),
        )
    try:
        unhealthy = wait_for(
            "/health to report the database down",
            lambda: (r := get(floxyd.port, "/health"))[0] == 503 and r,
        )
        assert "database connection failed" in unhealthy[1]
        for path, (_, body) in scrape_all(floxyd.port).items():
            assert SECRET not in body, (path, body)
            assert quote(SECRET, safe="") not in body, (path, body)
        assert "floxy_database_up 0.0" in get(floxyd.port, "/metrics")[1]
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS true')
    wait_for("/health to recover", lambda: get(floxyd.port, "/health")[0] == 200)
    log = floxyd.log()
    assert "database" in log
    assert SECRET not in log and quote(SECRET, safe="") not in log


def test_a_surrogate_pair_escape_in_a_step_name_is_one_character(floxyd: Floxyd) -> None:
    """`"\\ud83d\\ude80"` in the YAML (JSON) file is U+1F680, the same name in every process.

    Runs last: when the loader keeps two lone surrogates instead, the daemon's own copy of the
    definition and the copy other processes read back from PostgreSQL (which combines the pair)
    disagree on the step name, and the daemon's workers fail on that queue item forever.
    """
    env = floxyd.ctl_env()
    started = ctl("start", "-o", "escaped", "--output", "json", env=env)
    assert started.code == 0, started
    instance_id = int(json.loads(started.stdout)["instance_id"])

    def waiting() -> bool:
        steps = _inspect(floxyd, instance_id)["steps"]
        return any(s["name"] == "approve" and s["status"] == "waiting_decision" for s in steps)

    wait_for("the human step", waiting)
    decided = ctl("decide", str(instance_id), "confirm", env=env)
    assert decided.code == 0, decided
    doc = wait_for(
        "the step after the decision to run",
        lambda: (d := _inspect(floxyd, instance_id))["status"] != "running" and d,
        timeout=8,
    )
    assert doc["status"] == "completed", doc
    assert [s["name"] for s in doc["steps"]] == ["approve", "rocket \U0001f680"]
