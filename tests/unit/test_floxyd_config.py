"""floxyd's tech server (/metrics, /health) listens on loopback unless told otherwise."""

from __future__ import annotations

from floxyd.config import load_config

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
