"""The one home of the database settings (floxy_core.dbconfig): conninfo, passwords, display."""

from __future__ import annotations

from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

from floxy_core import dbconfig
from floxy_core.dbconfig import SettingsError


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


def _params(connection: dbconfig.Connection) -> dict[str, str]:
    return {k: str(v) for k, v in conninfo_to_dict(connection.conninfo).items()}


def test_resolve_walks_the_password_sources_in_order_for_each_program() -> None:
    env = {"FLOXY_DB_PASSWORD": "env", "PGPASSWORD": "libpq", "PGPASSFILE": "/p"}
    parts = {"host": "db", "dbname": "d"}
    ctl = dbconfig.resolve(env, program=dbconfig.FLOXYCTL, parts=parts)
    assert _params(ctl) == {"host": "db", "dbname": "d", "password": "env"}
    # floxyctl: a DSN is whole (no floxy variable), and libpq reads its own variables itself.
    bare = dbconfig.resolve(env, program=dbconfig.FLOXYCTL, dsn="host=db dbname=d")
    assert "password" not in _params(bare) and "passfile" not in _params(bare)
    # floxyd: the variables fill what the DSN lacks; libpq's secrets become parameters.
    daemon = dbconfig.resolve(env, program=dbconfig.FLOXYD, dsn="host=db dbname=d")
    assert _params(daemon)["password"] == "env" and _params(daemon)["passfile"] == "/p"
    assert daemon.shown == "dbname=d host=db (with a password)"  # libpq's order
    only_libpq = dbconfig.resolve({"PGPASSWORD": "libpq"}, program=dbconfig.FLOXYD, parts=parts)
    assert _params(only_libpq)["password"] == "libpq"
    # The DSN's own password wins over the variables; -W wins over the DSN's.
    own = dbconfig.resolve(env, program=dbconfig.FLOXYD, dsn="postgresql://u:mine@db/d")
    assert _params(own)["password"] == "mine"
    prompted = dbconfig.resolve(
        env, program=dbconfig.FLOXYCTL, dsn="postgresql://u:mine@db/d", prompt=lambda: "typed"
    )
    assert _params(prompted)["password"] == "typed"
    assert prompted.where == "db:5432/d"
    # A profile's password_env comes after the floxy variables.
    profiled = dbconfig.resolve(
        {}, program=dbconfig.FLOXYCTL, parts=parts, profile_password=lambda: "prof"
    )
    assert _params(profiled)["password"] == "prof"


def test_resolve_says_what_is_missing_before_asking_for_a_password() -> None:
    def never() -> str:
        raise AssertionError("prompted before the settings were checked")

    with pytest.raises(dbconfig.IncompleteSettings) as caught:
        dbconfig.resolve({}, program=dbconfig.FLOXYCTL, parts={"user": "u"}, prompt=never)
    assert caught.value.missing == ["host", "dbname"]
    with pytest.raises(dbconfig.IncompleteSettings) as nothing:
        dbconfig.resolve({}, program=dbconfig.FLOXYD, parts={})
    assert nothing.value.missing == list(dbconfig.PARTS)
    # A profile's dsn (`base`) says where: its parts may be overridden, none is required.
    over = dbconfig.resolve(
        {}, program=dbconfig.FLOXYCTL, base="host=a dbname=b", parts={"dbname": "c"}
    )
    assert _params(over) == {"host": "a", "dbname": "c"}
