"""Named database profiles in ~/.config/floxy/config.toml (issue 16 item 5).

Precedence, setting by setting: flag > FLOXY_* variable > profile > libpq's PG* variable. Two
databases are told apart by one registered flow (`marker-v1` is only in `other_db`).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

from tests.e2e.conftest import floxyctl_exe
from tests.e2e.test_db_cli import floxyctl, usage_error
from tests.e2e.test_db_libpq_env import MARKER
from tests.e2e.test_secrets import ROLE, PasswordDb
from tests.e2e.test_secrets import password_db as password_db  # the fixture
from tests.pgcluster import Cluster


@pytest.fixture
def other_db(pg_cluster: Cluster, tmp_path: Path) -> Iterator[str]:
    """A second migrated database, with the marker flow registered."""
    dsn = pg_cluster.create_database()
    flows = tmp_path / "marker.yaml"
    flows.write_text(MARKER)
    try:
        assert floxyctl("register", "-f", str(flows), dsn=dsn).returncode == 0
        yield dsn
    finally:
        pg_cluster.drop_database(dsn)


def _config(home: Path, text: str) -> dict[str, str]:
    """Write `text` as $XDG_CONFIG_HOME/floxy/config.toml; the environment that finds it."""
    (home / "floxy").mkdir(parents=True, exist_ok=True)
    (home / "floxy" / "config.toml").write_text(text)
    return {"XDG_CONFIG_HOME": str(home)}


def _has_marker(*args: str, env: dict[str, str]) -> bool:
    done = floxyctl("workflows", *args, dsn=None, env=env)
    assert done.returncode == 0, done.stderr
    return "marker-v1" in done.stdout


def test_the_default_profile_applies_and_a_named_one_replaces_it(
    pg_dsn: str, other_db: str, tmp_path: Path
) -> None:
    main = conninfo_to_dict(pg_dsn)
    env = _config(
        tmp_path / "xdg",
        f"""
[profiles.default]
host = "{main["host"]}"
port = {main["port"]}
user = "{main["user"]}"
database = "{main["dbname"]}"

[profiles.other]
dsn = "{other_db}"
""",
    )
    assert not _has_marker(env=env)
    assert _has_marker("--profile", "other", env=env)
    assert _has_marker(env={**env, "FLOXY_PROFILE": "other"})
    # FLOXY_CONFIG names the file directly.
    explicit = {"FLOXY_CONFIG": str(tmp_path / "xdg" / "floxy" / "config.toml")}
    assert _has_marker("--profile", "other", env=explicit)


def test_flags_and_floxy_variables_win_over_a_profile_which_wins_over_pg_variables(
    pg_dsn: str, other_db: str, tmp_path: Path
) -> None:
    main, other = conninfo_to_dict(pg_dsn), conninfo_to_dict(other_db)
    env = _config(
        tmp_path / "xdg",
        f"""
[profiles.default]
host = "{main["host"]}"
port = {main["port"]}
user = "{main["user"]}"
database = "{main["dbname"]}"

[profiles.other]
dsn = "{other_db}"
""",
    )
    # FLOXY_DB_NAME and --database override the profile's database (also inside its dsn).
    assert _has_marker(env={**env, "FLOXY_DB_NAME": str(other["dbname"])})
    assert _has_marker("--database", str(other["dbname"]), env=env)
    assert not _has_marker("--profile", "other", "--database", str(main["dbname"]), env=env)
    # FLOXY_DSN replaces the profile whole.
    assert _has_marker(env={**env, "FLOXY_DSN": other_db})
    # The profile wins over libpq's PGDATABASE, which fills in what no profile sets.
    assert not _has_marker(env={**env, "PGDATABASE": str(other["dbname"])})
    partial = _config(
        tmp_path / "partial",
        f'[profiles.default]\nhost = "{main["host"]}"\nport = {main["port"]}\n'
        f'user = "{main["user"]}"\n',
    )
    assert _has_marker(env={**partial, "PGDATABASE": str(other["dbname"])})


def test_password_env_gives_the_password_under_real_authentication(
    password_db: PasswordDb, tmp_path: Path
) -> None:
    env = _config(
        tmp_path,
        f"""
[profiles.default]
host = "{password_db.host}"
port = {password_db.port}
user = "{ROLE}"
database = "{password_db.dbname}"
password_env = "PROFILE_PW"
""",
    )
    done = floxyctl("migrate", dsn=None, env={**env, "PROFILE_PW": password_db.password})
    assert done.returncode == 0, done.stderr
    done = floxyctl("status", dsn=None, env={**env, "PROFILE_PW": password_db.password})
    assert done.returncode == 0, done.stderr
    line = usage_error(floxyctl("status", dsn=None, env={**env, "PROFILE_PW": "wrong-pw"}))
    assert "password authentication failed" in line and "wrong-pw" not in line
    # PG_PASSWORD (a FLOXY-level setting) wins over the profile's variable.
    both = {**env, "PROFILE_PW": "wrong-pw", "PG_PASSWORD": password_db.password}
    assert floxyctl("status", dsn=None, env=both).returncode == 0


CONFIG_MISTAKES = [
    ("[profiles.default]\nhost = 'db'\n", ["--profile", "prod"], "unknown profile 'prod'"),
    ("[profiles.default]\nhost = 'db'\ndatabse = 'x'\n", [], ":3: profile 'default': unknown key"),
    ("[profiles.default]\nhost = \n", [], ":2:"),
    (
        "[profiles.prod]\nhost = 'db'\ndatabase = 'x'\npassword_env = 'NO_SUCH_PW'\n",
        ["--profile", "prod"],
        "password_env names NO_SUCH_PW, which is not set",
    ),
    ("[profiles.default]\npassword = 'hunter2'\n", [], "password_env"),
]


@pytest.mark.parametrize(("text", "args", "says"), CONFIG_MISTAKES)
def test_a_config_mistake_is_one_line_naming_the_file(
    text: str, args: list[str], says: str, tmp_path: Path
) -> None:
    env = _config(tmp_path, text)
    line = usage_error(floxyctl("status", *args, dsn=None, env=env))
    assert f"floxyctl: error: {tmp_path}/floxy/config.toml" in line
    assert says in line
    assert "hunter2" not in line


def test_a_missing_floxy_config_file_is_an_error_and_a_missing_default_one_is_not(
    tmp_path: Path,
) -> None:
    line = usage_error(floxyctl("status", dsn=None, env={"FLOXY_CONFIG": str(tmp_path / "no")}))
    assert f"{tmp_path}/no: no such file (named by FLOXY_CONFIG)" in line
    line = usage_error(floxyctl("status", dsn=None, env={"XDG_CONFIG_HOME": str(tmp_path)}))
    assert line.startswith("floxyctl: error: no database configured")
    line = usage_error(
        floxyctl("status", dsn=None, env={"XDG_CONFIG_HOME": str(tmp_path), "FLOXY_PROFILE": "x"})
    )
    assert "unknown profile 'x': there is no config file" in line


FLOW = """
handlers:
  - {name: a, exec: "echo '{}'"}
flows:
  - name: fast
    steps: [a]
"""


@pytest.mark.parametrize(
    "args",
    [
        ["run", "wf.yaml"],
        ["--no-plugins", "run", "wf.yaml"],
        ["validate", "wf.yaml"],
        ["status", "--help"],
        ["version"],
    ],
    ids=" ".join,
)
def test_commands_without_a_database_never_read_the_file(args: list[str], tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(FLOW)
    broken = tmp_path / "broken.toml"
    broken.write_text("[profiles.default\n")
    done = subprocess.run(
        [*floxyctl_exe(), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "FLOXY_CONFIG": str(broken), "FLOXY_PROFILE": "nope"},
    )
    assert done.returncode == 0, done.stderr
    assert "broken.toml" not in done.stderr
