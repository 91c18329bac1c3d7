"""The config file's profiles (floxyctl.config): what is accepted, and where a mistake is."""

from __future__ import annotations

import pytest

from floxyctl.config import ConfigError, Profile, choose, config_path, parse

PATH = "/home/ada/.config/floxy/config.toml"
GOOD = """\
[profiles.default]
host = "localhost"
port = 5433
database = "floxy"

[profiles.prod]
dsn = "postgresql://floxy@db.prod:5432/floxy"
password_env = "PROD_PW"
"""


def test_profiles_are_parsed_and_the_default_is_the_one_called_default() -> None:
    profiles = parse(GOOD, PATH)
    assert profiles["default"] == Profile(
        name="default", path=PATH, host="localhost", port=5433, database="floxy"
    )
    assert choose(profiles, None, PATH) is profiles["default"]
    assert choose(profiles, "prod", PATH) is profiles["prod"]
    assert choose({"prod": profiles["prod"]}, None, PATH) is None  # no default: no profile


def test_an_unknown_profile_names_the_known_ones() -> None:
    with pytest.raises(ConfigError) as caught:
        choose(parse(GOOD, PATH), "staging", PATH)
    assert str(caught.value) == f"{PATH}: unknown profile 'staging' (profiles: default, prod)"


@pytest.mark.parametrize(
    ("text", "where", "says"),
    [
        ("[profiles.a]\nhost = 'x'\nhots = 'y'\n", f"{PATH}:3:", "profile 'a': unknown key 'hots'"),
        ("[profiles.a]\nhost = \n", f"{PATH}:2:", "invalid TOML"),
        ("[profile.a]\nhost = 'x'\n", f"{PATH}:1:", "unknown key 'profile'"),
        ("[profiles.a]\nport = '5432'\n", f"{PATH}:2:", "port must be a number"),
        ("[profiles.a]\nport = 0\n", f"{PATH}:2:", "port must be a number"),
        ("[profiles.a]\nuser = 7\n", f"{PATH}:2:", "user must be a non-empty string"),
        ("[profiles.a]\ndsn = 'host=x'\nhost = 'y'\n", f"{PATH}:1:", "exclude each other"),
        ("[profiles.a]\ndsn = 'host=x =y'\n", f"{PATH}:2:", "invalid dsn"),
    ],
)
def test_a_mistake_points_at_its_line(text: str, where: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(text, PATH)
    assert str(caught.value).startswith(where), str(caught.value)
    assert says in str(caught.value)


@pytest.mark.parametrize(
    "text",
    [
        "[profiles.a]\nhost = 'x'\npassword = 'hunter2'\n",
        "[profiles.a]\ndsn = 'postgresql://ada:hunter2@db/floxy'\n",
        "[profiles.a]\ndsn = 'host=db password=hunter2'\n",
    ],
)
def test_a_password_in_the_file_is_refused_without_repeating_it(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(text, PATH)
    message = str(caught.value)
    assert "password_env" in message and "~/.pgpass" in message
    assert "hunter2" not in message


def test_password_env_names_the_variable_and_an_unset_one_is_an_error() -> None:
    profile = parse(GOOD, PATH)["prod"]
    assert profile.password({"PROD_PW": "s3cret"}) == "s3cret"
    with pytest.raises(ConfigError, match="password_env names PROD_PW, which is not set"):
        profile.password({})


def test_the_file_is_floxy_config_else_xdg_else_dot_config() -> None:
    assert config_path({"FLOXY_CONFIG": "/etc/floxy.toml"}) == (
        config_path({"FLOXY_CONFIG": "/etc/floxy.toml", "XDG_CONFIG_HOME": "/x"})
    )
    assert str(config_path({"FLOXY_CONFIG": "/etc/floxy.toml"})[0]) == "/etc/floxy.toml"
    assert config_path({"FLOXY_CONFIG": "/etc/floxy.toml"})[1] is True
    assert str(config_path({"XDG_CONFIG_HOME": "/x"})[0]) == "/x/floxy/config.toml"
    relative = config_path({"XDG_CONFIG_HOME": "rel"})  # not absolute: ignored, as XDG says
    assert str(relative[0]).endswith("/.config/floxy/config.toml") and relative[1] is False
