"""Secrets under real password authentication (issue 13): the database password never reaches a
handler, passwords are masked by structure, HTTP URL credentials stay with their origin.

The session cluster trusts local connections, which would let a test pass with any password (or
none); here one role must authenticate with SCRAM (`pg_hba.conf` line first), and the tests check
that it cannot connect without its password before anything else.
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest

from tests.e2e.test_security import clean_env, ctl, get
from tests.pgcluster import Cluster
from tests.support import free_port, wait_for

ROLE = "sec_pw"
PASSWORD = "Pw-" + secrets.token_hex(6)


@dataclass
class PasswordDb:
    host: str
    port: str
    dbname: str
    password: str = PASSWORD

    @property
    def bare(self) -> str:
        """Conninfo without the password."""
        return f"host={self.host} port={self.port} user={ROLE} dbname={self.dbname}"

    @property
    def url(self) -> str:
        return (
            f"postgresql://{ROLE}:{quote(self.password, safe='')}@{self.host}:{self.port}/"
            f"{self.dbname}"
        )


@pytest.fixture(scope="module")
def password_db(pg_cluster: Cluster) -> Iterator[PasswordDb]:
    """A fresh database and a role that must give its password (SCRAM), on the test cluster."""
    if pg_cluster.process is None:
        pytest.skip("FLOXY_TEST_DSN names an external server: its pg_hba.conf is not ours")
    with psycopg.connect(pg_cluster.admin_dsn, autocommit=True) as conn:
        conn.execute("SET password_encryption = 'scram-sha-256'")
        conn.execute(f"DROP ROLE IF EXISTS {ROLE}")
        conn.execute(f"CREATE ROLE {ROLE} LOGIN SUPERUSER PASSWORD '{PASSWORD}'")
        row = conn.execute("SHOW hba_file").fetchone()
        assert row is not None
        hba = Path(str(row[0]))
        original = hba.read_text()
        rule = f"host all {ROLE} 127.0.0.1/32 scram-sha-256\n"
        with hba.open("r+") as f:  # in place: the file keeps its owner (postgres)
            f.write(rule + original)
        conn.execute("SELECT pg_reload_conf()")
    dsn = pg_cluster.create_database()
    parts = dict(item.split("=", 1) for item in dsn.split())
    db = PasswordDb(parts["host"], parts["port"], parts["dbname"])

    def refused() -> bool:
        try:
            psycopg.connect(db.bare + " connect_timeout=5").close()
        except psycopg.OperationalError as exc:
            return "password" in str(exc)
        return False

    wait_for("password authentication to be required", refused, timeout=10)
    psycopg.connect(db.url).close()
    try:
        yield db
    finally:
        with contextlib.suppress(Exception):
            pg_cluster.drop_database(dsn)
        with hba.open("w") as f:
            f.write(original)
        with psycopg.connect(pg_cluster.admin_dsn, autocommit=True) as conn:
            conn.execute("SELECT pg_reload_conf()")


# ================================================================================================
# floxyd: no password in the environment block or command line handlers can read
# ================================================================================================

PEEK = r"""
parent_env=$(tr '\0' '\n' < /proc/$PPID/environ | jq -Rs .)
parent_cmd=$(tr '\0' ' ' < /proc/$PPID/cmdline | jq -Rs .)
own_env=$(env | jq -Rs .)
echo "{\"parent_env\": $parent_env, \"parent_cmd\": $parent_cmd, \"own_env\": $own_env}"
"""
"""A bash handler reading what floxyd (its parent) started with, and its own environment."""


def _daemon_yaml(root: Path) -> Path:
    path = root / "flows.yaml"
    doc = {
        "handlers": [
            {"name": "peek", "exec": PEEK},
            {"name": "later", "exec": "./installed-later.sh"},
        ],
        "flows": [
            {"name": "peek", "steps": [{"name": "peek", "handler": "peek", "max_retries": 0}]},
            {"name": "other", "steps": [{"name": "later", "handler": "later"}]},
        ],
    }
    path.write_text(json.dumps(doc))
    return path


def _sources(db: PasswordDb, root: Path) -> dict[str, tuple[dict[str, str], list[str]]]:
    """Every way floxyd takes the password: (environment, extra arguments)."""
    parts = {
        "FLOXY_DB_HOST": db.host,
        "FLOXY_DB_PORT": db.port,
        "FLOXY_DB_USER": ROLE,
        "FLOXY_DB_NAME": db.dbname,
    }
    password_file = root / "db-password"
    password_file.write_text(db.password + "\n")
    password_file.chmod(0o600)
    passfile = root / "pgpass"
    passfile.write_text(f"{db.host}:{db.port}:*:{ROLE}:{db.password}\n")
    passfile.chmod(0o600)
    return {
        "dsn-url": ({"FLOXY_DSN": db.url}, []),
        "dsn-flag": ({}, ["--dsn", f"{db.bare} password={db.password}"]),
        "floxy-db-password": ({**parts, "FLOXY_DB_PASSWORD": db.password}, []),
        "password-file": ({**parts, "FLOXY_DB_PASSWORD_FILE": str(password_file)}, []),
        "pgpassword": ({"FLOXY_DSN": db.bare, "PGPASSWORD": db.password}, []),
        "pgpassfile": ({"FLOXY_DSN": db.bare, "PGPASSFILE": str(passfile)}, []),
    }


@contextlib.contextmanager
def running_floxyd(
    yaml_path: Path, env: dict[str, str], args: list[str], log: Path
) -> Iterator[int]:
    port = free_port()
    full_env = clean_env(
        FLOXY_TECH_ADDR=f"127.0.0.1:{port}",
        FLOXY_MAINTENANCE_INTERVAL="0",
        FLOXY_STATS_INTERVAL="0",
        FLOXY_NO_PLUGINS="1",
        FLOXY_WORKERS="1",
        **env,
    )
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("floxyd")), str(yaml_path), *args],
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=yaml_path.parent,
        )
    try:

        def ready() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"floxyd exited with {proc.returncode}:\n{log.read_text()}")
            try:
                return get(port, "/health/ready")[0] == 200
            except OSError:
                return False

        wait_for("floxyd to be ready", ready, timeout=60)
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def test_floxyd_handlers_cannot_read_the_password_from_floxyd(
    password_db: PasswordDb, tmp_path: Path
) -> None:
    """Under password authentication (so floxyd really needs it), for every source of the
    password: not in the handler's environment, not in `/proc/$PPID/environ`, not in
    `/proc/$PPID/cmdline`, not in the log; and floxyd warns about a script file that is missing."""
    yaml_path = _daemon_yaml(tmp_path)

    def check(name: str, env: dict[str, str], args: list[str]) -> list[str]:
        problems = []
        log = tmp_path / f"{name}.log"
        with running_floxyd(yaml_path, env, args, log):
            result = ctl(
                "start",
                "-o",
                "peek",
                "--wait",
                "--output",
                "json",
                env=clean_env(FLOXY_DSN=password_db.url),
            )
        assert result.code == 0, f"{name}: {result}"
        seen = json.loads(result.stdout)["output"]
        assert "FLOXY_INSTANCE_ID" in seen["own_env"], seen  # the peek really ran
        for where, text in seen.items():
            for form in (password_db.password, quote(password_db.password)):
                if form in text:
                    problems.append(f"{name}: the password is in the handler's {where}")
            for variable in ("FLOXY_DSN=", "FLOXY_DB_PASSWORD=", "PGPASSWORD=", "PGPASSFILE="):
                if variable in text:
                    problems.append(f"{name}: {variable} is in the handler's {where}")
        text = log.read_text()
        if password_db.password in text:
            problems.append(f"{name}: the password is in the floxyd log")
        if "installed-later.sh" not in text or "script file not found" not in text:
            problems.append(f"{name}: floxyd did not warn about the missing script\n{text}")
        return problems

    sources = _sources(password_db, tmp_path)
    with ThreadPoolExecutor(len(sources)) as pool:
        futures = [pool.submit(check, name, *source) for name, source in sources.items()]
        problems = [problem for future in futures for problem in future.result()]
    assert not problems, "\n".join(problems)


# ================================================================================================
# floxyctl run: the database settings of the caller are not the handlers'
# ================================================================================================


def test_floxyctl_run_does_not_pass_database_credentials_to_handlers(tmp_path: Path) -> None:
    flow = tmp_path / "flow.yaml"
    flow.write_text(
        json.dumps(
            {
                "handlers": [{"name": "env", "exec": "env | jq -Rs '{env: .}'"}],
                "flows": [{"name": "f", "steps": [{"name": "env", "handler": "env"}]}],
            }
        )
    )
    secret = "Pw-" + secrets.token_hex(6)
    env = clean_env(
        FLOXY_DSN=f"postgresql://u:{secret}@db/floxy",
        FLOXY_DB_PASSWORD=secret,
        PGPASSWORD=secret,
        PG_PASSWORD=secret,
    )
    result = ctl("run", "-f", str(flow), "--output", "json", env=env, cwd=tmp_path)
    assert result.code == 0, result
    child_env = json.loads(result.stdout)["output"]["env"]
    assert secret not in child_env
    assert "FLOXY_DSN=" not in child_env and "PGPASSWORD=" not in child_env


# ================================================================================================
# Masking by structure
# ================================================================================================


def _floxyd_cannot_connect(password: str, tmp_path: Path) -> str:
    yaml_path = tmp_path / "f.yaml"
    yaml_path.write_text(
        json.dumps(
            {
                "handlers": [{"name": "h", "exec": "echo '{}'"}],
                "flows": [{"name": "f", "steps": [{"name": "h"}]}],
            }
        )
    )
    closed = free_port()
    env = clean_env(
        FLOXY_DSN=f"postgresql://floxy:{password}@127.0.0.1:{closed}/floxy",
        FLOXY_CONNECT_TIMEOUT="1s",
        FLOXY_TECH_ADDR="off",
        FLOXY_NO_PLUGINS="1",
    )
    done = subprocess.run(
        [str(Path(sys.executable).with_name("floxyd")), str(yaml_path)],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done
    return done.stderr.decode()


@pytest.mark.parametrize("password", ["floxy", "e", "o"])
def test_floxyd_masks_the_password_not_every_word_that_contains_it(
    password: str, tmp_path: Path
) -> None:
    log = _floxyd_cannot_connect(password, tmp_path)
    assert "floxyd: floxyd " in log and " starting: " in log, log
    assert "database user=floxy dbname=floxy host=127.0.0.1" in log, log
    assert "(with a password)" in log, log
    assert "PostgreSQL not reachable within" in log, log
    assert "connection to server at" in log and "Connection refused" in log, log
    assert "***" not in log, log  # nothing here holds the password: nothing is masked


@pytest.mark.parametrize("password", ["e", "o", "floxy"])
def test_floxyctl_masks_the_password_not_every_word_that_contains_it(password: str) -> None:
    closed = free_port()
    env = clean_env(FLOXY_DSN=f"postgresql://floxy:{password}@127.0.0.1:{closed}/floxy")
    result = ctl("status", env=env)
    assert result.code == 2, result
    assert "cannot connect to the database at 127.0.0.1:" in result.stderr, result
    assert "Connection refused" in result.stderr, result
    assert "***" not in result.stderr, result


# ================================================================================================
# HTTP URL credentials
# ================================================================================================


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes


class _Recorder(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, redirect_to: str | None) -> None:
        self.seen: list[Seen] = []
        self.redirect_to = redirect_to
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                server.seen.append(Seen(self.path, dict(self.headers.items()), body))
                if server.redirect_to is not None:
                    self.send_response(307)
                    self.send_header("Location", server.redirect_to)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                reply = json.dumps({"ok": True}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@contextlib.contextmanager
def recorder(redirect_to: str | None = None) -> Iterator[_Recorder]:
    server = _Recorder(redirect_to)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_http_url_credentials_go_only_to_their_origin_and_are_never_shown(
    tmp_path: Path,
) -> None:
    secret = "Pw-" + secrets.token_hex(6)
    basic = base64.b64encode(f"svc:{secret}".encode()).decode()
    with recorder() as other, recorder(redirect_to=f"{other.base}/elsewhere") as origin:
        host_port = origin.base.removeprefix("http://")
        flow = tmp_path / "flow.yaml"
        flow.write_text(
            json.dumps(
                {
                    "handlers": [{"name": "call", "exec": f"http://svc:{secret}@{host_port}/x"}],
                    "flows": [{"name": "f", "steps": [{"name": "call", "max_retries": 0}]}],
                }
            )
        )
        result = ctl(
            "run", "-D", "-f", str(flow), "--output", "json", env=clean_env(), cwd=tmp_path
        )
        assert result.code == 0, result
        assert json.loads(result.stdout)["output"] == {"ok": True}
        assert [s.path for s in origin.seen] == ["/x"] and [s.path for s in other.seen] == [
            "/elsewhere"
        ]
        first, redirected = origin.seen[0], other.seen[0]
        assert first.headers.get("Authorization") == f"Basic {basic}"  # its own origin: yes
        assert "Authorization" not in redirected.headers
        for seen in (first, redirected):
            assert secret.encode() not in seen.body, seen.body  # metadata.exec is masked
        assert secret not in json.dumps(redirected.headers)
        assert b"svc:***@" in first.body
    assert secret not in result.stdout + result.stderr, result
    assert "svc:***@" in result.stderr, result  # -D shows the URL, masked


def test_http_url_credentials_are_not_stored_with_the_definition() -> None:
    from floxy_core.spec import load_workflow_text

    doc = {
        "handlers": [{"name": "call", "exec": "https://svc:Pw-stored@api.example/x"}],
        "flows": [{"name": "f", "steps": [{"name": "call"}]}],
    }
    flow = load_workflow_text(json.dumps(doc), "wf.yaml").flows[0]
    stored = json.dumps(flow.to_json())
    assert "Pw-stored" not in stored
    assert "https://svc:***@api.example/x" in stored


def test_validate_refuses_a_misspelt_scheme_and_a_missing_script(tmp_path: Path) -> None:
    flow = tmp_path / "flow.yaml"
    flow.write_text(
        "handlers:\n"
        "  - name: pay\n"
        "    exec: htps://api.example/pay\n"
        "  - name: ship\n"
        "    exec: ./missing.sh\n"
        "  - name: bad\n"
        "    type: http\n"
        "    exec: http://\n"
        "flows:\n"
        "  - name: f\n"
        "    steps: [{name: pay}, {name: ship}, {name: bad}]\n"
    )
    env = clean_env(FLOXY_NO_CACHE="1")
    result = ctl("validate", str(flow), env=env, cwd=tmp_path)
    assert result.code == 2, result
    out = result.stdout + result.stderr
    assert f'{flow}:3:11: handlers[0].exec: unsupported URL scheme "htps"' in out, out
    assert f"{flow}:5:11: handlers[1].exec: script file not found: {tmp_path}/missing.sh" in out
    assert f"{flow}:8:11: handlers[2].exec: invalid URL" in out, out
    ran = ctl("run", "-f", str(flow), env=env, cwd=tmp_path)
    assert ran.code == 2 and "nothing was run" in ran.stderr, ran
    (tmp_path / "missing.sh").write_text("echo '{}'\n")
    again = ctl("validate", str(flow), env=clean_env(), cwd=tmp_path)
    assert "missing.sh" not in again.stdout + again.stderr, again


def test_an_unset_url_reference_is_a_warning_for_validate(tmp_path: Path) -> None:
    flow = tmp_path / "flow.yaml"
    flow.write_text(
        "handlers:\n"
        "  - name: pay\n"
        "    exec: https://svc:${PAY_TOKEN}@api.example/pay\n"
        "flows:\n"
        "  - name: f\n"
        "    steps: [{name: pay}]\n"
    )
    result = ctl("validate", str(flow), env=clean_env(), cwd=tmp_path)
    assert result.code == 0, result
    assert "${PAY_TOKEN} is not set in this environment" in result.stderr, result
    quiet = ctl("validate", str(flow), env=clean_env(PAY_TOKEN="x"), cwd=tmp_path)
    assert quiet.code == 0 and "PAY_TOKEN" not in quiet.stderr, quiet
