"""The one home of the database settings (floxy_core.dbconfig): conninfo, passwords, display."""

from __future__ import annotations

from pathlib import Path

import pytest
from floxy_core.dbconfig import SettingsError
from psycopg.conninfo import conninfo_to_dict

from floxy_core import dbconfig


def test_parts_build_a_conninfo_and_a_dsn_takes_the_overrides() -> None:
    info = dbconfig.conninfo(None, host="db", port=5433, user="u", dbname="d", password="p w")
    assert conninfo_to_dict(info) == {
        "host": "db",
        "port": "5433",
        "user": "u",
        "dbname": "d",
        "password": "p w",
    }
    over = dbconfig.conninfo("postgresql://u@db/d", dbname="other", defaults={"dbname": "x"})
    assert conninfo_to_dict(over)["dbname"] == "other"
    filled = dbconfig.conninfo("host=db", defaults={"application_name": "t", "host": "no"})
    assert conninfo_to_dict(filled) == {"host": "db", "application_name": "t"}


def test_an_invalid_dsn_never_quotes_it() -> None:
    with pytest.raises(SettingsError) as caught:
        dbconfig.parse("host=db password='s3cret", what="FLOXY_DSN")
    assert "s3cret" not in str(caught.value) and "FLOXY_DSN" in str(caught.value)
    assert caught.value.name == "FLOXY_DSN"


def test_where_is_host_port_db_with_libpq_fallbacks_and_never_the_password() -> None:
    params = {"host": "db", "port": "5433", "dbname": "d", "password": "pw"}
    assert dbconfig.where(params, {}) == "db:5433/d"
    env = {"PGHOST": "pg", "PGPORT": "6000", "PGUSER": "ann"}
    assert dbconfig.where({}, env) == "pg:6000/ann"  # libpq's default database: the user's
    assert dbconfig.where({}, {}) == "localhost:5432/"


def test_describe_keeps_the_order_and_hides_the_password() -> None:
    text = dbconfig.describe({"user": "floxy", "dbname": "floxy", "host": "h", "password": "pw"})
    assert text == "user=floxy dbname=floxy host=h (with a password)"
    assert dbconfig.describe({"dbname": "d"}, {"PGHOST": "pg"}) == "dbname=d host=pg"


def test_password_order_and_the_file(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("s3 cret\nignored\n")
    file_env = {"FLOXY_DB_PASSWORD_FILE": str(pw), "PG_PASSWORD": "b"}
    assert dbconfig.password(file_env, read_file=True) == "s3 cret"
    assert dbconfig.password(file_env, read_file=False) == "b"
    env = {"PG_PASSWORD": "a", "FLOXY_DB_PASSWORD": "b"}
    assert dbconfig.password(env, read_file=True) == "a"
    assert dbconfig.password({"FLOXY_DB_PASSWORD": "b"}, read_file=True) == "b"
    assert dbconfig.password({}, read_file=True) is None
    with pytest.raises(SettingsError, match="not both"):
        dbconfig.password({**file_env, "FLOXY_DB_PASSWORD": "x"}, read_file=True)
    with pytest.raises(SettingsError, match="is empty"):
        (tmp_path / "empty").write_text("\n")
        dbconfig.password({"FLOXY_DB_PASSWORD_FILE": str(tmp_path / "empty")}, read_file=True)


def test_what_is_missing_to_say_where() -> None:
    assert dbconfig.missing({}, {}) == ["host", "port", "user", "dbname"]
    assert dbconfig.missing({}, {"PGDATABASE": "d"}) == []  # libpq's variables alone suffice
    assert dbconfig.missing({"user": "u"}, {}) == ["host", "dbname"]
    assert dbconfig.missing({"user": "u"}, {"PGHOST": "h", "PGDATABASE": "d"}) == []
    assert dbconfig.missing({"user": "u"}, {"PGSERVICE": "s"}) == []


def test_scrub_masks_by_structure_on_one_line() -> None:
    assert dbconfig.scrub("x\n postgresql://u:pw@h/d  password=pw") == (
        "x postgresql://u:***@h/d password=***"
    )
