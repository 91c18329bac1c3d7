"""Bad input to both binaries, as real processes: a documented exit code and one clear line.

Every case runs `floxyctl` (the installed console script) or `python -m floxyd` as a subprocess
and checks that it exits with the documented code (2 for bad usage, input or configuration, and
for a database that is unreachable or refuses the request), says what is wrong on stderr in one
line (a YAML diagnostic may add its `FILE:LINE:COL:` lines, click/argparse may add their usage
hint) and never prints a Python traceback. FLOXY_DEBUG is never set here.

The cases are independent processes, so each group is run concurrently once per module and every
parametrized test only looks at its own outcome: the matrix stays wide and the module stays fast.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.pgcluster import Cluster

FLOXYCTL = str(Path(sys.executable).with_name("floxyctl"))
FLOXYD = (sys.executable, "-m", "floxyd")
SECRET = "S3cret-Pa55"
PARALLEL = 4

OK_YAML = """\
handlers:
  - name: h
    exec: echo '{"ok":true}'
flows:
  - name: f
    steps:
      - {name: s, handler: h}
"""

BAD_CONDITION_YAML = """\
handlers:
  - name: h
    exec: echo '{}'
flows:
  - name: f
    steps:
      - {type: condition, name: c, expr: "{{ eq .a", else: [h]}
      - {name: s, handler: h}
"""


def _closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


CLOSED_PORT = _closed_port()
CLOSED_DSN = f"host=127.0.0.1 port={CLOSED_PORT} user=postgres dbname=floxy password={SECRET}"
CLOSED_URL = f"postgresql://postgres:{SECRET}@127.0.0.1:{CLOSED_PORT}/floxy"


@dataclass(frozen=True)
class Case:
    """One invocation: `argv` after the program, with `{name}` placeholders for `paths`."""

    id: str
    argv: tuple[str, ...]
    expect: tuple[str, ...]
    """Case-insensitive fragments the error text must contain (what is wrong, or which flag)."""
    env: Mapping[str, str] = field(default_factory=dict)
    stdin: bytes = b""
    code: int = 2
    diagnostics: bool = False
    """A workflow-file problem: `FILE:LINE:COL: message` lines may come with the one summary."""
    within: float = 8.0
    """floxyd only: seconds it may take (a bound, not a benchmark)."""


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str
    elapsed: float


def _base_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FLOXY_", "PG")) and k not in ("PYTHONWARNINGS", "PYTHONIOENCODING")
    }
    env["NO_COLOR"] = "1"
    return env


def _run(
    program: tuple[str, ...], case: Case, paths: Mapping[str, str], env: Mapping[str, str]
) -> Outcome:
    argv = [*program, *(arg.format(**paths) for arg in case.argv)]
    full_env = {**env, **{k: v.format(**paths) for k, v in case.env.items()}}
    started = time.monotonic()
    done = subprocess.run(
        argv,
        input=case.stdin,
        capture_output=True,
        env=full_env,
        cwd=paths["dir"],
        timeout=60,
        start_new_session=True,  # no controlling terminal: nothing may prompt
        check=False,
    )
    return Outcome(
        done.returncode,
        done.stdout.decode(errors="replace"),
        done.stderr.decode(errors="replace"),
        time.monotonic() - started,
    )


def _run_all(
    program: tuple[str, ...], cases: list[Case], paths: Mapping[str, str], env: Mapping[str, str]
) -> dict[str, Outcome]:
    with ThreadPoolExecutor(PARALLEL) as pool:
        futures = {c.id: pool.submit(_run, program, c, paths, env) for c in cases}
        return {case_id: future.result() for case_id, future in futures.items()}


# -- judging stderr ----------------------------------------------------------------------------

_LOG_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (?P<level>[A-Z]+)\s+[\w.]+: (?P<msg>.*)$"
)
_DIAGNOSTIC = re.compile(r"^\S[^:]*:\d+:\d+: ")


def error_lines(stderr: str) -> list[str]:
    """The lines that say what is wrong.

    Left out: click's and argparse's usage hint (`Usage: ...`, its indented continuation and
    `Try '... --help' for help.`), getpass's prompt, and floxyd log lines below ERROR (start-up
    progress, "not reachable yet; retrying"). floxyd's ERROR log lines count, without the
    timestamp prefix.
    """
    lines: list[str] = []
    in_usage = False
    for raw in stderr.splitlines():
        if not raw.strip():
            in_usage = False
            continue
        if raw.startswith(("Usage: ", "usage: ")):
            in_usage = True
            continue
        if in_usage and raw[0].isspace():
            continue
        in_usage = False
        if raw.startswith("Try '") and raw.rstrip().endswith("for help."):
            continue
        if raw.strip() == "Warning: Password input may be echoed.":
            continue
        line = raw.removeprefix("Password: ")
        if not line.strip():
            continue
        match = _LOG_LINE.match(line)
        if match:
            if match["level"] in ("ERROR", "CRITICAL"):
                lines.append(match["msg"])
            continue
        lines.append(line)
    return lines


def assert_clean_failure(outcome: Outcome, case: Case) -> str:
    """The documented code, one error line (plus diagnostics), no traceback; returns the text."""
    described = (
        f"{case.id}: exit {outcome.code} after {outcome.elapsed:.2f}s\n"
        f"--- stderr:\n{outcome.stderr}\n--- stdout:\n{outcome.stdout}"
    )
    assert "Traceback" not in outcome.stderr, described
    assert "Traceback" not in outcome.stdout, described
    assert outcome.code == case.code, described
    lines = error_lines(outcome.stderr)
    if case.diagnostics:
        summary = [ln for ln in lines if not _DIAGNOSTIC.match(ln)]
        assert len(summary) <= 1 and len(lines) - len(summary) >= 1, described
    else:
        assert len(lines) == 1, f"expected exactly one error line\n{described}"
    text = "\n".join(lines)
    for fragment in case.expect:
        assert fragment.lower() in text.lower(), f"{fragment!r} not said\n{described}"
    assert SECRET not in outcome.stderr + outcome.stdout, described
    assert outcome.stdout.strip() == "", f"nothing belongs on stdout\n{described}"
    return text


# -- files the cases refer to ------------------------------------------------------------------


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("bad-input")
    (root / "ok.yaml").write_text(OK_YAML)
    (root / "bad_condition.yaml").write_text(BAD_CONDITION_YAML)
    (root / "a_directory").mkdir()
    (root / "bad_utf8.yaml").write_bytes(b"flows:\n  - name: \xff\xfe\n")
    (root / "bad_utf8.json").write_bytes(b'{"a": "\xff\xfe"}')
    (root / "bad.json").write_text('{"a": ')
    (root / "trailing.json").write_text('{"a": 1} {"b": 2}')
    (root / "nan.json").write_text('{"a": NaN}')
    (root / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    return {
        "dir": str(root),
        "ok": str(root / "ok.yaml"),
        "bad_condition": str(root / "bad_condition.yaml"),
        "a_dir": str(root / "a_directory"),
        "missing": str(root / "missing.yaml"),
        "missing_json": str(root / "missing.json"),
        "bad_utf8_yaml": str(root / "bad_utf8.yaml"),
        "bad_utf8_json": str(root / "bad_utf8.json"),
        "bad_json": str(root / "bad.json"),
        "trailing_json": str(root / "trailing.json"),
        "nan_json": str(root / "nan.json"),
        "deep_json": str(root / "deep.json"),
    }


# -- floxyctl without a database (or with one that refuses connections) ------------------------

RUN = ("run", "-f", "{ok}")
NO_DB = {"FLOXY_DSN": CLOSED_DSN}

CTL_CASES = [
    # durations
    Case(
        "run-interval-with-space",
        (*RUN, "--worker-interval", "5 minutes"),
        ("--worker-interval", "5 minutes"),
    ),
    Case(
        "run-interval-env-abc",
        RUN,
        ("worker-interval", "abc"),
        env={"FLOXY_WORKER_INTERVAL": "abc"},
    ),
    Case(
        "run-timeout-negative",
        (*RUN, "--completion-timeout", "-1s"),
        ("--completion-timeout", "-1s"),
    ),
    Case(
        "run-status-interval-garbage",
        (*RUN, "--status-check-interval", "xyz"),
        ("--status-check-interval",),
    ),
    Case(
        "start-wait-timeout-garbage",
        ("start", "-o", "f", "--wait", "--completion-timeout", "5 minutes"),
        ("--completion-timeout",),
        env=NO_DB,
    ),
    # workers
    Case("run-workers-zero", (*RUN, "-w", "0"), ("--workers", "at least 1")),
    Case("run-workers-too-many", (*RUN, "-w", "100000"), ("--workers", "at most 256", "100000")),
    Case("run-workers-257", (*RUN, "--workers", "257"), ("--workers", "at most 256")),
    Case(
        "run-workers-env-too-many",
        RUN,
        ("workers", "at most 256"),
        env={"FLOXY_WORKERS": "100000"},
    ),
    Case(
        "run-workers-beyond-int64",
        (*RUN, "-w", "9" * 30),
        ("--workers", "at most 256"),
    ),
    Case("run-workers-negative", (*RUN, "-w", "-3"), ("--workers", "-3")),
    Case("run-workers-env-zero", RUN, ("workers", "at least 1"), env={"FLOXY_WORKERS": "0"}),
    Case("run-workers-not-a-number", (*RUN, "-w", "abc"), ("workers", "abc")),
    Case(
        "run-workers-env-not-a-number", RUN, ("FLOXY_WORKERS", "abc"), env={"FLOXY_WORKERS": "abc"}
    ),
    # unknown names and malformed ids
    Case("run-unknown-flow", (*RUN, "--flow", "nope"), ("nope",)),
    Case("graph-unknown-flow", ("graph", "-f", "{ok}", "--flow", "nope"), ("nope",)),
    Case("run-decide-malformed", (*RUN, "--decide", "approve=maybe"), ("--decide",)),
    Case("run-decide-unknown-step", (*RUN, "--decide", "nope=confirm"), ("nope",)),
    Case("cancel-id-not-a-number", ("cancel", "-o", "abc"), ("instance id", "abc"), env=NO_DB),
    Case("inspect-id-not-a-number", ("inspect", "x"), ("instance id", '"x"'), env=NO_DB),
    Case("inspect-id-zero", ("inspect", "0"), ("instance id",), env=NO_DB),
    Case("inspect-id-huge", ("inspect", "9" * 30), ("instance id",), env=NO_DB),
    Case("decide-id-not-a-number", ("decide", "x", "confirm"), ("instance id",), env=NO_DB),
    Case("decide-bad-answer", ("decide", "5", "maybe"), ("confirm or reject", "maybe"), env=NO_DB),
    Case(
        "dlq-requeue-id-not-a-number", ("dlq", "requeue", "x"), ("dlq record id", '"x"'), env=NO_DB
    ),
    Case(
        "dlq-list-instance-not-a-number",
        ("dlq", "list", "--instance", "abc"),
        ("instance id", "abc"),
        env=NO_DB,
    ),
    Case("status-limit-zero", ("status", "--limit", "0"), ("--limit",), env=NO_DB),
    # unreadable workflow files
    Case("run-file-missing", ("run", "-f", "{missing}"), ("file not found",), diagnostics=True),
    Case("run-file-directory", ("run", "-f", "{a_dir}"), ("directory",), diagnostics=True),
    Case("run-file-bad-utf8", ("run", "-f", "{bad_utf8_yaml}"), ("utf-8",), diagnostics=True),
    Case(
        "run-file-bad-condition", ("run", "-f", "{bad_condition}"), ("condition",), diagnostics=True
    ),
    Case(
        "validate-file-missing",
        ("validate", "-f", "{missing}"),
        ("file not found",),
        diagnostics=True,
    ),
    Case(
        "validate-file-directory", ("validate", "-f", "{a_dir}"), ("directory",), diagnostics=True
    ),
    Case(
        "validate-file-bad-utf8",
        ("validate", "-f", "{bad_utf8_yaml}"),
        ("utf-8",),
        diagnostics=True,
    ),
    Case(
        "register-file-missing",
        ("register", "-f", "{missing}"),
        ("file not found",),
        env=NO_DB,
        diagnostics=True,
    ),
    Case(
        "register-file-directory",
        ("register", "-f", "{a_dir}"),
        ("directory",),
        env=NO_DB,
        diagnostics=True,
    ),
    # unreadable or invalid JSON input
    Case("run-input-missing", (*RUN, "-i", "{missing_json}"), ("missing.json",)),
    Case("run-input-directory", (*RUN, "-i", "{a_dir}"), ("directory",)),
    Case("run-input-bad-utf8", (*RUN, "-i", "{bad_utf8_json}"), ("bad_utf8.json",)),
    Case("run-input-invalid-json", (*RUN, "-i", "{bad_json}"), ("bad.json", "not valid json")),
    Case("run-input-trailing-data", (*RUN, "-i", "{trailing_json}"), ("not valid json",)),
    Case("run-input-nan", (*RUN, "-i", "{nan_json}"), ("nan.json",)),
    Case("run-input-deeply-nested", (*RUN, "-i", "{deep_json}"), ("deep.json",)),
    Case("run-stdin-invalid-json", RUN, ("stdin", "not valid json"), stdin=b'{"a": '),
    Case("run-stdin-nan", RUN, ("stdin",), stdin=b'{"a": NaN}'),
    Case("run-stdin-infinity", RUN, ("stdin",), stdin=b"[Infinity]"),
    Case("run-stdin-bad-utf8", RUN, ("stdin", "utf-8"), stdin=b'{"a": "\xff\xfe"}'),
    Case(
        "run-stdin-bad-utf8-strict-io",
        RUN,
        ("stdin", "utf-8"),
        stdin=b'{"a": "\xff"}',
        env={"PYTHONIOENCODING": "utf-8"},
    ),
    Case("run-stdin-deeply-nested", RUN, ("stdin",), stdin=b"[" * 100_000 + b"]" * 100_000),
    Case(
        "start-input-missing",
        ("start", "-o", "f", "-i", "{missing_json}"),
        ("missing.json",),
        env=NO_DB,
    ),
    Case(
        "start-input-bad-utf8",
        ("start", "-o", "f", "-i", "{bad_utf8_json}"),
        ("bad_utf8.json",),
        env=NO_DB,
    ),
    Case(
        "start-input-invalid-json",
        ("start", "-o", "f", "-i", "{bad_json}"),
        ("not valid json",),
        env=NO_DB,
    ),
    Case(
        "start-input-deeply-nested",
        ("start", "-o", "f", "-i", "{deep_json}"),
        ("deep.json",),
        env=NO_DB,
    ),
    Case(
        "start-stdin-invalid-json",
        ("start", "-o", "f"),
        ("stdin", "not valid json"),
        stdin=b"[1,",
        env=NO_DB,
    ),
    Case(
        "requeue-input-invalid-json",
        ("dlq", "requeue", "3", "-i", "{bad_json}"),
        ("not valid json",),
        env=NO_DB,
    ),
    # the database: refused connections, a password that never gets to be checked, no settings
    *(
        Case(
            f"closed-port-{'-'.join(argv[:2])}",
            argv,
            ("cannot connect", str(CLOSED_PORT)),
            env=NO_DB,
        )
        for argv in (
            ("status",),
            ("migrate",),
            ("migrate", "--status"),
            ("inspect", "5"),
            ("cancel", "-o", "5"),
            ("start", "-o", "f"),
            ("register", "-f", "{ok}"),
            ("dlq", "requeue", "5"),
        )
    ),
    Case("closed-port-url-dsn", ("status", "--dsn", CLOSED_URL), ("cannot connect",)),
    Case(
        "closed-port-flags-and-password",
        (
            "status",
            "--host",
            "127.0.0.1",
            "--port",
            str(CLOSED_PORT),
            "--user",
            "postgres",
            "--database",
            "floxy",
        ),
        ("cannot connect",),
        env={"FLOXY_DB_PASSWORD": SECRET},
    ),
    Case(
        "closed-port-prompted-password",
        ("status", "-W"),
        ("cannot connect",),
        env=NO_DB,
        stdin=f"{SECRET}\n".encode(),
    ),
    Case("prompt-without-password", ("status", "-W"), ("password",), env=NO_DB),
    Case("no-database-configured", ("status",), ("no database configured",)),
    Case("incomplete-database-settings", ("status", "--host", "127.0.0.1"), ("--database",)),
    Case(
        "database-port-not-a-number",
        ("status", "--host", "127.0.0.1", "--port", "abc"),
        ("--port", "abc"),
    ),
    Case(
        "invalid-dsn",
        ("status",),
        ("invalid dsn",),
        env={"FLOXY_DSN": f"not a dsn password={SECRET} = ="},
    ),
    # usage
    Case("unknown-option", (*RUN, "--bogus"), ("--bogus",)),
    Case("unknown-command", ("nosuchcommand",), ("nosuchcommand",)),
    Case("missing-file-option", ("run",), ("missing the workflow file", "-f FILE")),
    Case("validate-without-file", ("validate",), ("no workflow file",)),
    Case("missing-instance-option", ("cancel",), ("missing the instance id", "-o ID"), env=NO_DB),
    Case("missing-argument", ("inspect",), ("missing argument",), env=NO_DB),
    Case("bad-output-format", (*RUN, "--output", "yaml"), ("--output", "yaml")),
]


@pytest.fixture(scope="module")
def ctl_outcomes(paths: dict[str, str]) -> dict[str, Outcome]:
    return _run_all((FLOXYCTL,), CTL_CASES, paths, _base_env())


@pytest.mark.parametrize("case", CTL_CASES, ids=lambda c: c.id)
def test_floxyctl_rejects_bad_input(case: Case, ctl_outcomes: dict[str, Outcome]) -> None:
    assert_clean_failure(ctl_outcomes[case.id], case)


# -- floxyctl against a real database: ids and names that do not exist ------------------------

DB_CASES = [
    Case("inspect-unknown-instance", ("inspect", "999999"), ("999999", "not found")),
    Case(
        "inspect-unknown-instance-json",
        ("inspect", "999999", "--output", "json"),
        ("999999", "not found"),
    ),
    Case("cancel-unknown-instance", ("cancel", "-o", "999999"), ("999999", "not found")),
    Case("abort-unknown-instance", ("abort", "-o", "999999"), ("999999", "not found")),
    Case("decide-unknown-instance", ("decide", "999999", "confirm"), ("999999", "not found")),
    Case("start-unknown-workflow", ("start", "-o", "nope"), ("nope", "not found")),
    Case("start-unknown-version", ("start", "-o", "f-v9"), ("f-v9", "not found")),
    Case("requeue-unknown-record", ("dlq", "requeue", "999999"), ("999999", "not found")),
    Case("start-input-nan", ("start", "-o", "f", "-i", "{nan_json}"), ("nan",)),
    Case("start-stdin-nul-character", ("start", "-o", "f"), ("u0000",), stdin=b'{"a": "\\u0000"}'),
]


@pytest.fixture(scope="module")
def db_outcomes(pg_cluster: Cluster, paths: dict[str, str]) -> Iterator[dict[str, Outcome]]:
    dsn = pg_cluster.create_database()
    try:
        env = {**_base_env(), "FLOXY_DSN": f"{dsn} password={SECRET}"}
        registered = _run((FLOXYCTL,), Case("register", ("register", "-f", "{ok}"), ()), paths, env)
        assert registered.code == 0, registered
        yield _run_all((FLOXYCTL,), DB_CASES, paths, env)
    finally:
        pg_cluster.drop_database(dsn)


@pytest.mark.parametrize("case", DB_CASES, ids=lambda c: c.id)
def test_floxyctl_rejects_unknown_ids(case: Case, db_outcomes: dict[str, Outcome]) -> None:
    assert_clean_failure(db_outcomes[case.id], case)


# -- floxyd ------------------------------------------------------------------------------------

D_FILE = ("{ok}",)

FLOXYD_CASES = [
    Case(
        "interval-with-space",
        (*D_FILE, "--worker-interval", "5 minutes"),
        ("--worker-interval", "5 minutes"),
    ),
    Case(
        "interval-env-abc",
        D_FILE,
        ("FLOXY_WORKER_INTERVAL", "abc"),
        env={"FLOXY_WORKER_INTERVAL": "abc"},
    ),
    Case(
        "interval-bare-number", (*D_FILE, "--worker-interval", "100"), ("--worker-interval", "unit")
    ),
    Case("lease-negative", (*D_FILE, "--lease=-1s"), ("--lease",)),
    Case("lease-too-short", (*D_FILE, "--lease", "100ms"), ("--lease", "300ms")),
    Case(
        "grace-env-garbage", D_FILE, ("FLOXY_SHUTDOWN_GRACE",), env={"FLOXY_SHUTDOWN_GRACE": "-5s"}
    ),
    Case(
        "connect-timeout-garbage", (*D_FILE, "--connect-timeout", "forever"), ("--connect-timeout",)
    ),
    Case("workers-zero", (*D_FILE, "--workers", "0"), ("--workers", "at least 1")),
    Case("workers-negative", (*D_FILE, "--workers", "-3"), ("--workers", "-3")),
    Case("workers-env-zero", D_FILE, ("FLOXY_WORKERS", "at least 1"), env={"FLOXY_WORKERS": "0"}),
    Case(
        "workers-env-not-a-number", D_FILE, ("FLOXY_WORKERS", "abc"), env={"FLOXY_WORKERS": "abc"}
    ),
    Case("tech-addr-garbage", (*D_FILE, "--tech-addr", "nonsense"), ("--tech-addr",)),
    Case(
        "tech-addr-port-out-of-range",
        D_FILE,
        ("FLOXY_TECH_ADDR",),
        env={"FLOXY_TECH_ADDR": ":70000"},
    ),
    Case("log-level-unknown", D_FILE, ("FLOXY_LOG_LEVEL", "loud"), env={"FLOXY_LOG_LEVEL": "loud"}),
    Case("log-format-unknown", (*D_FILE, "--log-format", "xml"), ("--log-format", "xml")),
    Case("file-missing", ("{missing}",), ("file not found",), diagnostics=True),
    Case("file-directory", ("{a_dir}",), ("directory",), diagnostics=True),
    Case("file-bad-utf8", ("{bad_utf8_yaml}",), ("utf-8",), diagnostics=True),
    Case("file-bad-condition", ("{bad_condition}",), ("condition",), diagnostics=True),
    Case(
        "handlers-not-declared", D_FILE, ("FLOXY_HANDLERS", "nope"), env={"FLOXY_HANDLERS": "nope"}
    ),
    Case("unknown-option", (*D_FILE, "--bogus"), ("--bogus",)),
    Case("missing-file-argument", (), ("workflow yaml file",)),
    Case("missing-option-value", (*D_FILE, "--workers"), ("--workers",)),
    Case(
        "invalid-dsn", D_FILE, ("FLOXY_DSN",), env={"FLOXY_DSN": f"not a dsn password={SECRET} = ="}
    ),
    Case("no-database-configured", D_FILE, ("FLOXY_DB_HOST", "FLOXY_DSN"), env={"FLOXY_DSN": ""}),
    Case(
        "database-port-not-a-number",
        D_FILE,
        ("FLOXY_DB_PORT", "abc"),
        env={
            "FLOXY_DSN": "",
            "FLOXY_DB_HOST": "127.0.0.1",
            "FLOXY_DB_PORT": "abc",
            "FLOXY_DB_USER": "postgres",
            "FLOXY_DB_NAME": "floxy",
        },
    ),
    Case(
        "closed-port",
        D_FILE,
        ("not reachable", "FLOXY_CONNECT_TIMEOUT"),
        env={"FLOXY_CONNECT_TIMEOUT": "1s"},
    ),
    Case(
        "closed-port-url-dsn-flag",
        (*D_FILE, "--dsn", CLOSED_URL),
        ("not reachable",),
        env={"FLOXY_CONNECT_TIMEOUT": "1s"},
    ),
    Case(
        "closed-port-password-variable",
        D_FILE,
        ("not reachable",),
        env={
            "FLOXY_DSN": "",
            "FLOXY_DB_HOST": "127.0.0.1",
            "FLOXY_DB_PORT": str(CLOSED_PORT),
            "FLOXY_DB_USER": "postgres",
            "FLOXY_DB_NAME": "floxy",
            "FLOXY_DB_PASSWORD": SECRET,
            "FLOXY_CONNECT_TIMEOUT": "1s",
        },
    ),
    # A DSN value libpq refuses to use is a configuration error that waiting cannot fix: exit 2
    # at once, like a wrong password, instead of retrying until FLOXY_CONNECT_TIMEOUT (6s here).
    Case(
        "malformed-dsn-port",
        D_FILE,
        ("port", "abc"),
        env={
            "FLOXY_DSN": f"host=127.0.0.1 port=abc user=postgres dbname=floxy password={SECRET}",
            "FLOXY_CONNECT_TIMEOUT": "6s",
        },
        within=4,
    ),
    Case(
        "malformed-dsn-sslmode",
        D_FILE,
        ("sslmode", "bogus"),
        env={"FLOXY_DSN": f"{CLOSED_DSN} sslmode=bogus", "FLOXY_CONNECT_TIMEOUT": "6s"},
        within=4,
    ),
]


def _floxyd_env() -> dict[str, str]:
    return {
        **_base_env(),
        "FLOXY_DSN": CLOSED_DSN,
        "FLOXY_TECH_ADDR": "off",
        "FLOXY_STATS_INTERVAL": "0",
        "FLOXY_MAINTENANCE_INTERVAL": "0",
        "FLOXY_NO_PLUGINS": "1",
        "FLOXY_CONNECT_TIMEOUT": "10s",
    }


@pytest.fixture(scope="module")
def floxyd_outcomes(paths: dict[str, str]) -> dict[str, Outcome]:
    return _run_all(FLOXYD, FLOXYD_CASES, paths, _floxyd_env())


@pytest.mark.parametrize("case", FLOXYD_CASES, ids=lambda c: c.id)
def test_floxyd_rejects_bad_configuration(case: Case, floxyd_outcomes: dict[str, Outcome]) -> None:
    outcome = floxyd_outcomes[case.id]
    assert_clean_failure(outcome, case)
    # Nothing here needs the database, except the closed-port cases (FLOXY_CONNECT_TIMEOUT=1s).
    assert outcome.elapsed < case.within, (
        f"{case.id} took {outcome.elapsed:.1f}s (bound: {case.within:g}s)\n{outcome.stderr}"
    )


def test_version_and_help_still_work(paths: dict[str, str]) -> None:
    """Sanity for the matrix: the same programs, given good input, do not fail."""
    ok = _run((FLOXYCTL,), Case("ok", ("validate", "-f", "{ok}"), ()), paths, _base_env())
    assert ok.code == 0, ok
    assert "ok" in ok.stdout
    version = _run(FLOXYD, Case("v", ("--version",), ()), paths, _floxyd_env())
    assert version.code == 0, version
    assert "floxyd" in version.stdout + version.stderr
