"""Database connection settings: the one home both front ends (floxyctl, floxyd) read them from.

Where to connect is a libpq DSN (`FLOXY_DSN`, `--dsn`) or the parts host, port, user, dbname
(`FLOXY_DB_HOST`, `FLOXY_DB_PORT`, `FLOXY_DB_USER`, `FLOXY_DB_NAME`, and the flags of each
program; both programs accept both flag spellings). libpq's own variables (`PGHOST`, `PGPORT`,
`PGUSER`, `PGDATABASE`, `PGSERVICE` ...) come last: libpq applies them itself to every
parameter the conninfo leaves out, so they are never copied into it (a copy would also beat a
`PGSERVICE` entry, which libpq ranks above the variables). With none of our settings, any of
`LIBPQ_WHERE` alone is a configuration, as for `psql`.

The password, first match wins (`PASSWORD_SOURCES` is the table the docs reproduce):

1. `-W` (floxyctl only, a prompt; it replaces a DSN's password);
2. the DSN's own `password`;
3. `FLOXY_DB_PASSWORD_FILE` (floxyd only: the file's first line; with `FLOXY_DB_PASSWORD` too
   it is an error);
4. `PG_PASSWORD`, then `FLOXY_DB_PASSWORD` (floxyctl only with the parts, not with a DSN);
5. the `password_env` of a floxyctl profile;
6. libpq's `PGPASSWORD`, then its password file (`PGPASSFILE`, else `~/.pgpass`).

The password only ever travels inside a conninfo built by `psycopg.conninfo.make_conninfo`
(which quotes it); no string of ours formats it. What may be shown is `where` (`host:port/db`)
or `describe` (the parameters, never `password` or `passfile`), and any other text goes through
`scrub`, which masks passwords by where they sit (`floxy_core.secrets.redact`), never by
searching for their text.

`resolve` is the whole decision, one call per front end: it applies `PASSWORD_SOURCES` in
order for the program it is told (the `program` column), and the front ends only gather their
flags (floxyctl also its profile and prompt) and turn `SettingsError` into their own message
and exit code.

Pure: every function takes the environment as a mapping and does no I/O but reading the
password file it is told to read. psycopg is imported inside the functions that need it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from floxy_core.errors import InputError
from floxy_core.records import field, record
from floxy_core.secrets import redact

__all__ = [
    "FLOXYCTL",
    "FLOXYD",
    "LIBPQ_WHERE",
    "PARTS",
    "PASSWORD_SOURCES",
    "Connection",
    "IncompleteSettings",
    "SettingsError",
    "conninfo",
    "describe",
    "libpq_env",
    "missing",
    "parse",
    "password",
    "read_password_file",
    "resolve",
    "scrub",
    "where",
]

FLOXYCTL = "floxyctl"
FLOXYD = "floxyd"
"""The two front ends, as `resolve` and `PASSWORD_SOURCES` name them."""

PARTS = ("host", "port", "user", "dbname")
"""The libpq parameters our parts settings name, in the order messages list them."""

LIBPQ_WHERE = ("PGHOST", "PGHOSTADDR", "PGPORT", "PGUSER", "PGDATABASE", "PGSERVICE")
"""libpq variables that say where to connect: any of them alone counts as a configuration."""

_FALLBACK = {
    "host": ("PGHOST", "PGHOSTADDR"),
    "port": ("PGPORT",),
    "user": ("PGUSER",),
    "dbname": ("PGDATABASE",),
}
"""The libpq variable libpq applies to each part the conninfo leaves out."""

PASSWORD_FILE_ENV = "FLOXY_DB_PASSWORD_FILE"
PASSWORD_ENV = ("PG_PASSWORD", "FLOXY_DB_PASSWORD")

PASSWORD_SOURCES: tuple[tuple[str, str, str], ...] = (
    ("-W (prompt)", "floxyctl", "replaces a DSN's password"),
    ("the DSN's password", "both", ""),
    (PASSWORD_FILE_ENV, "floxyd", "first line; an error together with FLOXY_DB_PASSWORD"),
    ("PG_PASSWORD, FLOXY_DB_PASSWORD", "both", "floxyctl: not with a DSN"),
    ("a profile's password_env", "floxyctl", "profiles are floxyctl's"),
    ("PGPASSWORD, then PGPASSFILE or ~/.pgpass", "both", "libpq's own"),
)
"""(source, program, note), first match wins: the order `password` and the front ends apply."""

_INVALID_DSN = (
    "use key=value pairs (host=... dbname=...) or a postgresql://user@host:port/dbname URL"
)


class SettingsError(InputError):
    """A database setting that cannot be used; `name` is the flag or variable to blame.

    The message never quotes a DSN: libpq's own parse errors quote the offending token, which
    may be the password.
    """

    def __init__(self, name: str, message: str) -> None:
        self.name = name
        super().__init__(message)


class IncompleteSettings(SettingsError):
    """The parts setting does not say where to connect; `missing` are `PARTS` keys (all of them
    when nothing at all is set). The front end names its own flags in the message."""

    def __init__(self, missing: list[str]) -> None:
        self.missing = missing
        super().__init__("parts", f"incomplete database settings: missing {', '.join(missing)}")


@record(frozen=True)
class Connection:
    """A ready conninfo and the two ways to talk about it without the password."""

    conninfo: str = field(repr=False)
    where: str
    """`host:port/dbname`, for messages."""
    shown: str
    """The parameters without `password` and `passfile`, ` (with a password)` when there is
    one: for a start-up line."""


def resolve(
    env: Mapping[str, str],
    *,
    program: str,
    dsn: str | None = None,
    what: str = "FLOXY_DSN",
    parts: Mapping[str, str | int | None] | None = None,
    base: str = "",
    prompt: Callable[[], str] | None = None,
    profile_password: Callable[[], str | None] | None = None,
    defaults: Mapping[str, str | int] | None = None,
) -> Connection:
    """The connection of `program` (`FLOXYCTL` or `FLOXYD`): `dsn` whole (`what` names its
    flag or variable), else the `parts` over `base` (a floxyctl profile's dsn), with the password
    from the first of `PASSWORD_SOURCES` that `program` reads and that has one.

    `prompt` is floxyctl's `-W`, called only once the settings say where to connect;
    `profile_password` is a floxyctl profile's `password_env`. floxyd cleans libpq's secrets out
    of its environment before any handler runs, so for floxyd `PGPASSWORD` and `PGPASSFILE`
    become the `password` and `passfile` parameters (libpq's own rank: below the conninfo's);
    floxyctl leaves them to libpq. `defaults` fill the parameters still missing. Raises
    `IncompleteSettings` or `SettingsError`; never quotes the password.
    """
    floxyd = program == FLOXYD
    # floxyd reports a bad password file even when the DSN has a password: it is still wrong.
    own = password(env, read_file=True) if floxyd else None
    if dsn:
        params = parse(dsn, what=what)
        given: dict[str, str | int] = {}
    else:
        given = {k: v for k in PARTS if (v := (parts or {}).get(k)) not in (None, "")}
        if not base:
            lacking = missing(given, env)
            if lacking:
                raise IncompleteSettings(lacking)
        params = parse(base, what=what) if base else {}
    chosen = prompt() if prompt is not None else None  # -W replaces a DSN's password
    chosen = chosen or params.get("password") or None
    if chosen is None:
        if floxyd:
            chosen = own
        elif not dsn:  # floxyctl: a --dsn is a whole statement of where and as whom
            chosen = password(env, read_file=False)
    if chosen is None and profile_password is not None:
        chosen = profile_password()
    extra = dict(defaults or {})
    if floxyd:
        chosen = chosen or libpq_env(env, "PGPASSWORD")
        if passfile := env.get("PGPASSFILE", "").strip():
            extra.setdefault("passfile", passfile)
    info = conninfo(
        dsn or base,
        host=_text(given.get("host")),
        port=given.get("port"),
        user=_text(given.get("user")),
        dbname=_text(given.get("dbname")),
        password=chosen,
        defaults=extra,
    )
    final = parse(info, what=what)
    shown = {k: v for k, v in final.items() if k not in (defaults or {})}
    return Connection(conninfo=info, where=where(final, env), shown=describe(shown, env))


def _text(value: str | int | None) -> str | None:
    return None if value is None else str(value)


def parse(dsn: str, *, what: str = "the DSN") -> dict[str, str]:
    """The parameters of a libpq DSN or URL; `SettingsError` naming `what` when it is invalid."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    try:
        return {k: str(v) for k, v in conninfo_to_dict(dsn).items()}
    except psycopg.ProgrammingError:
        raise SettingsError(what, f"invalid DSN in {what}: {_INVALID_DSN}") from None


def conninfo(
    dsn: str | None,
    *,
    host: str | None = None,
    port: int | str | None = None,
    user: str | None = None,
    dbname: str | None = None,
    password: str | None = None,
    defaults: Mapping[str, str | int] | None = None,
) -> str:
    """One conninfo: `dsn` (may be None or empty) with the given parts and password put over it,
    and `defaults` for the parameters still missing. Empty values count as not given."""
    from psycopg.conninfo import make_conninfo

    given = {
        key: value
        for key, value in (
            ("host", host),
            ("port", port),
            ("user", user),
            ("dbname", dbname),
            ("password", password),
        )
        if value not in (None, "")
    }
    info = make_conninfo(dsn or "", **given)
    if defaults:
        present = parse(info)
        extra = {k: v for k, v in defaults.items() if k not in present}
        if extra:
            info = make_conninfo(info, **extra)
    return info


def libpq_env(env: Mapping[str, str], *names: str) -> str | None:
    """The first of libpq's variables `names` that is set and not empty."""
    return next((env[n] for n in names if env.get(n)), None)


def missing(parts: Mapping[str, object], env: Mapping[str, str]) -> list[str]:
    """What the parts setting lacks to say where to connect, as `PARTS` keys; [] when usable.

    With none of the parts, libpq's variables alone will do (any of `LIBPQ_WHERE`); else every
    part is missing. With some, a host and a database are needed, each of which may come from
    its libpq variable, or from a `PGSERVICE` entry.
    """
    if not any(parts.get(key) for key in PARTS):
        return [] if libpq_env(env, *LIBPQ_WHERE) is not None else list(PARTS)
    if libpq_env(env, "PGSERVICE") is not None:
        return []
    return [
        key
        for key in ("host", "dbname")
        if not parts.get(key) and libpq_env(env, *_FALLBACK[key]) is None
    ]


def read_password_file(path: str) -> str:
    """The first line of the file `path`, without its line end; `SettingsError` when it cannot
    be read or that line is empty."""
    try:
        with open(path, encoding="utf-8") as f:
            first = f.readline()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        message = f"{PASSWORD_FILE_ENV}: cannot read {path}: {reason}"
        raise SettingsError(PASSWORD_FILE_ENV, message) from None
    value = first.rstrip("\r\n")
    if not value:
        raise SettingsError(PASSWORD_FILE_ENV, f"{PASSWORD_FILE_ENV}: {path} is empty")
    return value


def password(env: Mapping[str, str], *, read_file: bool) -> str | None:
    """The password of floxy's own variables, in `PASSWORD_SOURCES` order: the file (when
    `read_file`, floxyd), then `PG_PASSWORD`, then `FLOXY_DB_PASSWORD`; None when none is set.
    The prompt, the DSN's, the profile's and libpq's are the callers' (they come in between)."""
    path = env.get(PASSWORD_FILE_ENV, "").strip() if read_file else ""
    if path:
        if env.get("FLOXY_DB_PASSWORD"):
            raise SettingsError(
                PASSWORD_FILE_ENV, f"set {PASSWORD_FILE_ENV} or FLOXY_DB_PASSWORD, not both"
            )
        return read_password_file(path)
    return libpq_env(env, *PASSWORD_ENV)


def _shown(params: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, str]:
    """The parameters as libpq will use them: the conninfo's, then the libpq variables'."""
    shown = {k: str(v) for k, v in params.items() if v not in (None, "")}
    for key, names in _FALLBACK.items():
        if key not in shown and (value := libpq_env(env, *names)) is not None:
            shown[key] = value
    return shown


def where(params: Mapping[str, Any], env: Mapping[str, str]) -> str:
    """`host:port/dbname` for messages, with libpq's defaults (the local host, port 5432, a
    database named like the user); never the password."""
    shown = _shown(params, env)
    db = shown.get("dbname") or shown.get("user") or ""
    return f"{shown.get('host', 'localhost')}:{shown.get('port', 5432)}/{db}"


def describe(params: Mapping[str, Any], env: Mapping[str, str] | None = None) -> str:
    """The parameters as `key=value` in their order (those from libpq's variables after them),
    without `password` and `passfile`; ` (with a password)` when there is one."""
    shown = _shown(params, env or {})
    text = " ".join(f"{k}={v}" for k, v in shown.items() if k not in ("password", "passfile"))
    return text + (" (with a password)" if params.get("password") else "")


def scrub(text: str) -> str:
    """`text` on one line, with every password in a URL or conninfo masked."""
    return " ".join(redact(text).split())
