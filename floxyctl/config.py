"""floxyctl's config file: named database profiles, so `--profile prod` replaces five flags.

The file is `$FLOXY_CONFIG` when that is set (it must then exist), else
`$XDG_CONFIG_HOME/floxy/config.toml` (when `XDG_CONFIG_HOME` is an absolute path, as the XDG
spec asks), else `~/.config/floxy/config.toml`; a missing default file is no error. It is TOML
and holds one table per profile, nothing else:

    [profiles.default]              # used when no profile is named
    host = "localhost"
    database = "floxy"

    [profiles.prod]
    dsn = "postgresql://floxy@db.prod.internal:5432/floxy"
    password_env = "FLOXY_PROD_PASSWORD"

A profile is chosen by `--profile NAME` or `FLOXY_PROFILE`; when neither names one, the profile
called `default` applies if the file has it (as with the AWS CLI: one name to remember, and
`FLOXY_PROFILE` switches a whole shell). A profile holds either `dsn` or any of
`host`/`port`/`user`/`database`, plus `password_env`, the NAME of the environment variable that
holds the password.

Never the password itself, neither as `password` nor inside the `dsn`: a config file is shared,
committed with dotfiles and backed up, and a mode check (libpq's 0600 rule for `.pgpass`) does
not survive any of those. libpq already has the place for stored passwords, `~/.pgpass`
(`PGPASSFILE`), which it consults by itself for a profile's host, port, user and database.

Everything that decides (`parse`, `choose`) is a function of its inputs; `load` alone reads the
environment mapping it is given and the file. Only the database commands call it, so `run`,
`validate` and the rest never read the file, and this module (tomllib with it) is imported only
when a database command resolves its settings.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FILE_ENV = "FLOXY_CONFIG"
PROFILE_ENV = "FLOXY_PROFILE"
DEFAULT_PROFILE = "default"
KEYS = ("dsn", "host", "port", "user", "database", "password_env")
"""What a profile may hold, in the order messages list them."""
_WHERE_KEYS = ("host", "port", "user", "database")
_NO_PASSWORD = (
    "a password is not read from the config file: name the environment variable that holds "
    'it (password_env = "...") or put it in ~/.pgpass'
)


class ConfigError(Exception):
    """A config file floxyctl refuses; `str()` is `file:line:col: message` (line when known)."""

    def __init__(
        self, message: str, path: str, line: int | None = None, column: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.line = line
        self.column = column

    def __str__(self) -> str:
        where = self.path
        if self.line is not None:
            where += f":{self.line}" + (f":{self.column}" if self.column is not None else "")
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class Profile:
    """One `[profiles.NAME]` table, checked; `path` is the file it came from."""

    name: str
    path: str
    dsn: str | None = None
    host: str | None = None
    port: int | None = None
    user: str | None = None
    database: str | None = None
    password_env: str | None = None

    def password(self, env: Mapping[str, str]) -> str | None:
        """The password from the variable `password_env` names; exits 2 through the caller
        (a `ConfigError`) when that variable is not set, rather than trying without one."""
        if self.password_env is None:
            return None
        value = env.get(self.password_env)
        if not value:
            raise ConfigError(
                f"profile '{self.name}': password_env names {self.password_env}, which is not set",
                self.path,
            )
        return value


def config_path(env: Mapping[str, str]) -> tuple[Path, bool]:
    """The config file and whether it was named explicitly (`FLOXY_CONFIG`)."""
    named = env.get(FILE_ENV)
    if named:
        return Path(named).expanduser(), True
    xdg = env.get("XDG_CONFIG_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".config"
    return base / "floxy" / "config.toml", False


def parse(text: str, path: str) -> dict[str, Profile]:
    """The profiles of a config file's text, or a `ConfigError` pointing at the mistake."""
    import tomllib

    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message, line, column = _decode_position(str(exc))
        raise ConfigError(f"invalid TOML: {message}", path, line, column) from None
    for key in doc:
        if key != "profiles":
            raise ConfigError(
                f"unknown key '{key}': the file holds [profiles.NAME] tables",
                path,
                _line_of(text, None, key),
            )
    tables = doc.get("profiles", {})
    if not isinstance(tables, dict):
        raise ConfigError("'profiles' must be a table of [profiles.NAME] tables", path)
    return {name: _profile(name, body, text, path) for name, body in tables.items()}


def choose(profiles: Mapping[str, Profile], named: str | None, path: str) -> Profile | None:
    """The profile `named` (an error when the file lacks it), else `default` if there is one."""
    if named is None:
        return profiles.get(DEFAULT_PROFILE)
    if named not in profiles:
        known = ", ".join(sorted(profiles)) or "none"
        raise ConfigError(f"unknown profile '{named}' (profiles: {known})", path)
    return profiles[named]


def load(named: str | None, env: Mapping[str, str]) -> Profile | None:
    """The profile to connect with: `named` (from --profile, else FLOXY_PROFILE) or the
    default one, read from the config file; None when there is no file and none was named."""
    named = named or env.get(PROFILE_ENV) or None
    path, explicit = config_path(env)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"no such file (named by {FILE_ENV})", str(path)) from None
        if named is not None:
            raise ConfigError(
                f"unknown profile '{named}': there is no config file", str(path)
            ) from None
        return None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"cannot read the config file: {reason}", str(path)) from None
    return choose(parse(text, str(path)), named, str(path))


# -- checking one profile -----------------------------------------------------------------


def _profile(name: str, body: Any, text: str, path: str) -> Profile:
    def error(message: str, key: str | None = None) -> ConfigError:
        return ConfigError(f"profile '{name}': {message}", path, _line_of(text, name, key))

    if not isinstance(body, dict):
        raise error("must be a table ([profiles.NAME] with key = value lines)")
    for key, value in body.items():
        if key == "password":
            raise error(_NO_PASSWORD, key)
        if key not in KEYS:
            raise error(f"unknown key '{key}' (keys: {', '.join(KEYS)})", key)
        if key == "port":
            if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
                raise error("port must be a number from 1 to 65535", key)
        elif not isinstance(value, str) or not value:
            raise error(f"{key} must be a non-empty string", key)
    if "dsn" in body:
        both = [key for key in _WHERE_KEYS if key in body]
        if both:
            raise error(f"dsn and {'/'.join(both)} exclude each other: give one or the other")
        _check_dsn(body["dsn"], error)
    return Profile(name=name, path=path, **body)


def _check_dsn(dsn: str, error: Any) -> None:
    from floxy_core.dbconfig import SettingsError, parse

    try:
        parts = parse(dsn, what="dsn")
    except SettingsError:
        # The message names the key and the file's position, never the value (a password?).
        raise error(
            "invalid dsn: use key=value pairs (host=... dbname=...) or a "
            "postgresql://user@host:port/dbname URL",
            "dsn",
        ) from None
    if parts.get("password"):
        raise error(_NO_PASSWORD, "dsn")


_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")


def _decode_position(message: str) -> tuple[str, int | None, int | None]:
    """tomllib's message split from its `(at line L, column C)` (Python 3.11 has no fields)."""
    found = _POSITION.search(message)
    if found is None:
        return message.removesuffix(" (at end of document)"), None, None
    return message[: found.start()], int(found.group(1)), int(found.group(2))


_HEADER = re.compile(r"\[\[?([^\]]*)\]")
_ASSIGNMENT = re.compile(r"[\"']?([A-Za-z0-9_-]+)[\"']?\s*=")


def _line_of(text: str, profile: str | None, key: str | None) -> int | None:
    """The line of `key` in `[profiles.PROFILE]` (of the header when `key` is None, of a
    top-level key or table when `profile` is None); None for the rarer spellings (inline or
    dotted keys), which then get the file name alone."""
    want = None if profile is None else f"profiles.{profile}"
    table: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        header = _HEADER.match(stripped)
        if header is not None:
            table = ".".join(part.strip().strip("\"'") for part in header.group(1).split("."))
            if (key is None and table == want) or (profile is None and table.split(".")[0] == key):
                return number
            continue
        assignment = _ASSIGNMENT.match(stripped)
        if assignment is not None and assignment.group(1) == key and table == want:
            return number
    return None
