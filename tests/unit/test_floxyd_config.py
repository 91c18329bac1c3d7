"""floxyd settings: the tech server binds loopback; the database settings match floxyctl's."""

from __future__ import annotations

import pytest
from psycopg.conninfo import conninfo_to_dict

from floxyd.__main__ import build_parser
from floxyd.config import ConfigError, load_config

DB = {
    "FLOXY_DB_HOST": "db",
    "FLOXY_DB_PORT": "5432",
    "FLOXY_DB_USER": "floxy",
    "FLOXY_DB_NAME": "floxy",
}


def test_the_tech_server_binds_loopback_by_default() -> None:
    config = load_config("f.yaml", {}, DB)
    assert config.tech_addr == ("127.0.0.1", 8081)
    assert config.tech_display == "127.0.0.1:8081"


def test_a_bare_port_still_opens_every_interface() -> None:
    config = load_config("f.yaml", {}, {**DB, "FLOXY_TECH_ADDR": ":9100"})
    assert config.tech_addr == ("", 9100)
    assert config.tech_display == "0.0.0.0:9100"


def test_plain_libpq_variables_are_a_configuration_as_for_floxyctl() -> None:
    env = {"PGHOST": "pg", "PGUSER": "ann", "PGDATABASE": "work"}
    config = load_config("f.yaml", {}, env)
    assert "host=pg" in config.dsn_display and "dbname=work" in config.dsn_display
    # libpq reads the PG* variables itself: the conninfo does not freeze them.
    assert "host" not in conninfo_to_dict(config.dsn)


def test_floxyctls_flag_names_are_aliases() -> None:
    args = build_parser().parse_args(
        ["f.yaml", "--host", "h", "--port", "5433", "--user", "u", "--database", "d"]
    )
    flags = {k: v for k, v in vars(args).items() if k not in ("file", "version")}
    params = conninfo_to_dict(load_config("f.yaml", flags, {}).dsn)
    assert (params["host"], params["port"], params["user"], params["dbname"]) == (
        "h",
        "5433",
        "u",
        "d",
    )


def test_incomplete_parts_name_what_is_missing() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config("f.yaml", {}, {"FLOXY_DB_USER": "u"})
    assert "FLOXY_DB_HOST" in str(caught.value) and "FLOXY_DB_NAME" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        load_config("f.yaml", {}, {})
    assert "FLOXY_DB_HOST" in str(caught.value) and "PGHOST" in str(caught.value)


def test_pg_password_is_read_as_by_floxyctl_and_a_dsns_own_wins() -> None:
    env = {**DB, "PG_PASSWORD": "first", "FLOXY_DB_PASSWORD": "second"}
    assert conninfo_to_dict(load_config("f.yaml", {}, env).dsn)["password"] == "first"
    own = {"FLOXY_DSN": "postgresql://u:mine@db/d", "PG_PASSWORD": "first"}
    assert conninfo_to_dict(load_config("f.yaml", {}, own).dsn)["password"] == "mine"
