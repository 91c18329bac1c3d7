"""floxyd settings: where the database password comes from (FLOXY_DB_PASSWORD_FILE, libpq's
variables) and that it ends up only in the connection parameters."""

from __future__ import annotations

from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

from floxyd.config import ConfigError, load_config

PARTS = {
    "FLOXY_DB_HOST": "db",
    "FLOXY_DB_PORT": "5432",
    "FLOXY_DB_USER": "floxy",
    "FLOXY_DB_NAME": "floxy",
}


def test_password_file_gives_the_password(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3 cret\n")
    config = load_config("f.yaml", {}, {**PARTS, "FLOXY_DB_PASSWORD_FILE": str(secret)})
    assert conninfo_to_dict(config.dsn)["password"] == "s3 cret"
    assert "s3 cret" not in config.dsn_display and "(with a password)" in config.dsn_display


@pytest.mark.parametrize(
    ("content", "extra", "message"),
    [
        (None, {}, "FLOXY_DB_PASSWORD_FILE: cannot read"),
        ("\n", {}, "is empty"),
        ("pw", {"FLOXY_DB_PASSWORD": "pw"}, "not both"),
    ],
)
def test_password_file_problems_are_named(
    tmp_path: Path, content: str | None, extra: dict[str, str], message: str
) -> None:
    secret = tmp_path / "pw"
    if content is not None:
        secret.write_text(content)
    with pytest.raises(ConfigError) as info:
        load_config("f.yaml", {}, {**PARTS, "FLOXY_DB_PASSWORD_FILE": str(secret), **extra})
    assert message in str(info.value)


def test_libpq_variables_become_connection_parameters() -> None:
    """floxyd removes them from its environment block, so libpq must get them another way."""
    env = {"FLOXY_DSN": "host=db user=floxy", "PGPASSWORD": "pw", "PGPASSFILE": "/p/pgpass"}
    params = conninfo_to_dict(load_config("f.yaml", {}, env).dsn)
    assert params["password"] == "pw" and params["passfile"] == "/p/pgpass"
    own = {"FLOXY_DSN": "postgresql://floxy:mine@db/floxy", "PGPASSWORD": "pw"}
    assert conninfo_to_dict(load_config("f.yaml", {}, own).dsn)["password"] == "mine"
