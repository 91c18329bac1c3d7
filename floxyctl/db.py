"""Database mode of floxyctl: where the connection settings come from and opening the store.

Settings come, first match wins, from `--dsn` / `FLOXY_DSN`, or from the reference flags
`--host --port --user --database` (each falling back to floxyd's `FLOXY_DB_*` variables) with the
password from `-W` (prompt), `PG_PASSWORD` or `FLOXY_DB_PASSWORD`. libpq's own variables
(`PGHOST`, `PGPORT`, `PGUSER`, `PGDATABASE`, `PGPASSWORD`, `PGSERVICE`, `~/.pgpass` ...) come
last: libpq reads them itself for whatever the conninfo leaves out, and when no floxy setting is
given at all the conninfo is empty, so floxyctl connects exactly where `psql` would. floxyd's
flag names `--db-host --db-port --db-user --db-name` are aliases. The rules themselves (conninfo,
password order, display, redaction) live in `floxy_core.dbconfig`, shared with floxyd; this
module adds what is floxyctl's alone: the typer options, `-W`, profiles, exit codes. The password
only ever travels inside the conninfo handed to libpq (or libpq's environment): it is never
formatted into a string by us, and every message that leaves this module goes through
`dbconfig.scrub` (passwords masked where a URL or conninfo holds them, not by searching for
their text), because error text ends up in logs and CI output.

No command but `floxyctl migrate` changes the schema (DECISIONS.md: only `migrate`, and floxyd
at start, apply migrations): the others check it and, when it is missing or older than this
floxyctl, exit `exits.SCHEMA` with one line saying to run `floxyctl migrate`. So a role that may
only read, or only write rows, can use them, and an upgrade never happens as a side effect of a
`status`.

psycopg and floxy_core.storage are imported inside functions so that `floxyctl run` stays fast.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

from floxyctl import exits
from floxyctl.common import fail

if TYPE_CHECKING:
    import psycopg

    from floxy_core.storage.postgres import PostgresStore
    from floxyctl.config import Profile

F = TypeVar("F", bound=Callable[..., Any])

CONNECT_TIMEOUT_S = 10
NOT_CONFIGURED = (
    "no database configured: pass --dsn (or set FLOXY_DSN), or --host/--port/--user/--database "
    "(or set FLOXY_DB_HOST/FLOXY_DB_PORT/FLOXY_DB_USER/FLOXY_DB_NAME, or libpq's "
    "PGHOST/PGPORT/PGUSER/PGDATABASE), or --profile NAME of ~/.config/floxy/config.toml "
    "(docs/cli.md#profiles)"
)
_CONNECTION = (
    "Connection: --dsn or FLOXY_DSN; else --host --port --user --database (or FLOXY_DB_HOST, "
    "FLOXY_DB_PORT, FLOXY_DB_USER, FLOXY_DB_NAME; floxyd's --db-host --db-port --db-user "
    "--db-name work too) with -W to prompt for the password, or "
    "PG_PASSWORD / FLOXY_DB_PASSWORD; then the --profile (FLOXY_PROFILE, else `default`) of "
    "~/.config/floxy/config.toml; libpq's PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD "
    "fill in whatever is not set."
)
_EXITS = (
    "Exit codes: 0 done · 2 bad usage or input, unknown workflow/instance/record, a request the "
    "current state refuses, or a database that is not configured, unreachable or refuses the "
    "login or the privilege"
)
DB_EPILOG = (
    f"{_CONNECTION} Never changes the schema (floxyctl migrate does). {_EXITS} · 6 the schema "
    "is missing or older than floxyctl (run floxyctl migrate)."
)
MIGRATE_EPILOG = f"{_CONNECTION} {_EXITS}."
PRIVILEGE_HINT = "this role lacks the privilege (database roles: docs/floxyd.md#database-roles)"


@dataclass(frozen=True)
class DbSettings:
    """A ready conninfo plus what is needed to talk about it without leaking the password."""

    conninfo: str
    where: str
    """`host:port/dbname` for messages; never contains the password."""

    def scrub(self, text: str) -> str:
        """`text` on one line, with any password in a URL or conninfo masked."""
        from floxy_core.dbconfig import scrub

        return scrub(text)


def _prompt_password() -> str:
    import getpass

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", getpass.GetPassWarning)
            return getpass.getpass("Password: ", stream=sys.stderr)
    except EOFError:
        fail("-W/--password: no password entered")


def resolve(
    *,
    dsn: str | None,
    host: str | None,
    port: int | None,
    user: str | None,
    database: str | None,
    prompt: bool,
    profile: str | None = None,
) -> DbSettings:
    """Turn the connection options into one conninfo; exits 2 when nothing usable is set.

    Precedence, setting by setting: a flag, then its `FLOXY_*` variable (typer does both), then
    the profile of the config file (`profile`, else FLOXY_PROFILE, else `default`), then
    libpq's `PG*` variable, which libpq itself applies to every parameter the conninfo leaves
    out. A `--dsn`/`FLOXY_DSN` replaces a profile whole (the file is then read only when a
    profile is named, to refuse an unknown one); a profile's `dsn` gives way to the flags and
    variables that name one of its parts. The password: `-W`, else `PG_PASSWORD` or
    `FLOXY_DB_PASSWORD`, else the variable the profile's `password_env` names, else libpq's
    (`PGPASSWORD`, `~/.pgpass`).
    """
    from floxy_core import dbconfig

    chosen = _profile(profile) if profile or not dsn else None
    profiled = chosen if not dsn else None  # a --dsn replaces a profile whole
    parts: dict[str, str | int | None] = {
        "host": host,
        "port": port,
        "user": user,
        "dbname": database,
    }
    if profiled is not None:  # the settings above override the profile's parts
        theirs = (profiled.host, profiled.port, profiled.user, profiled.database)
        parts = {k: parts[k] or v for k, v in zip(dbconfig.PARTS, theirs, strict=True)}
    try:
        connection = _config_call(  # a profile's password_env that is not set: exit 2
            lambda: dbconfig.resolve(
                os.environ,
                program=dbconfig.FLOXYCTL,
                dsn=dsn,
                what="--dsn/FLOXY_DSN",
                parts=parts,
                base=(profiled.dsn or "") if profiled is not None else "",
                prompt=_prompt_password if prompt else None,
                profile_password=(
                    functools.partial(profiled.password, os.environ) if profiled else None
                ),
                defaults={"connect_timeout": CONNECT_TIMEOUT_S, "application_name": "floxyctl"},
            )
        )
    except dbconfig.IncompleteSettings as exc:
        _incomplete(exc.missing, chosen)
    except dbconfig.SettingsError as exc:
        fail(str(exc))
    return DbSettings(conninfo=connection.conninfo, where=connection.where)


def _incomplete(absent: list[str], chosen: Profile | None) -> NoReturn:
    """Exit 2 naming what is missing to say where to connect (all of it: not configured)."""
    from floxy_core.dbconfig import PARTS

    if absent == list(PARTS):
        fail(NOT_CONFIGURED)
    missing = " and ".join(_FLAGS[key] for key in absent)
    in_profile = f" (or in profile '{chosen.name}')" if chosen is not None else ""
    fail(f"incomplete database settings: missing {missing}{in_profile}")


_FLAGS = {
    "host": "--host/FLOXY_DB_HOST",
    "port": "--port/FLOXY_DB_PORT",
    "user": "--user/FLOXY_DB_USER",
    "dbname": "--database/FLOXY_DB_NAME",
}

T = TypeVar("T")


def _config_call(call: Callable[[], T]) -> T:
    """`call()`, with a config file floxyctl refuses turned into one line and exit 2."""
    from floxyctl.config import ConfigError

    try:
        return call()
    except ConfigError as exc:
        fail(str(exc))


def _profile(named: str | None) -> Profile | None:
    """The chosen profile of the config file (floxyctl.config), or None."""
    from floxyctl.config import load

    return _config_call(lambda: load(named or None, os.environ))


# -- the connection options, added to every database command --------------------------------

_OPTIONS: list[inspect.Parameter] = [
    inspect.Parameter(
        name,
        inspect.Parameter.KEYWORD_ONLY,
        default=default,
        annotation=annotation,
    )
    for name, default, annotation in (
        (
            "db_dsn",
            None,
            Annotated[
                str | None,
                typer.Option(
                    "--dsn",
                    envvar="FLOXY_DSN",
                    help="libpq DSN or postgresql:// URL (wins over the flags below).",
                    show_default=False,
                    show_envvar=True,
                ),
            ],
        ),
        (
            "db_host",
            None,
            Annotated[
                str | None,
                typer.Option("--host", "--db-host", envvar="FLOXY_DB_HOST", help="Database host."),
            ],
        ),
        (
            "db_port",
            None,
            Annotated[
                int | None,
                typer.Option("--port", "--db-port", envvar="FLOXY_DB_PORT", help="Database port."),
            ],
        ),
        (
            "db_user",
            None,
            Annotated[
                str | None,
                typer.Option("--user", "--db-user", envvar="FLOXY_DB_USER", help="Database user."),
            ],
        ),
        (
            "db_database",
            None,
            Annotated[
                str | None,
                typer.Option(
                    "--database", "--db-name", envvar="FLOXY_DB_NAME", help="Database name."
                ),
            ],
        ),
        (
            "db_profile",
            None,
            Annotated[
                str | None,
                typer.Option(
                    "--profile",
                    envvar="FLOXY_PROFILE",
                    metavar="NAME",
                    help="Profile of the config file (~/.config/floxy/config.toml, or "
                    "FLOXY_CONFIG) to connect with. Default: its `default` profile.",
                    show_default=False,
                    show_envvar=True,
                ),
            ],
        ),
        (
            "db_password",
            False,
            Annotated[
                bool,
                typer.Option(
                    "-W",
                    "--password",
                    help="Prompt for the password (else PG_PASSWORD or FLOXY_DB_PASSWORD).",
                ),
            ],
        ),
    )
]


def with_db(func: F) -> F:
    """Give a command the connection options; it receives the resolved `db: DbSettings`.

    Typer reads the command's signature, so the wrapper advertises the command's own
    parameters plus the shared connection options instead of repeating them per command.
    """
    signature = inspect.signature(func, eval_str=True)
    own = [p for p in signature.parameters.values() if p.name != "db"]

    @functools.wraps(func)
    def wrapper(**kwargs: Any) -> Any:
        db = resolve(
            dsn=kwargs.pop("db_dsn"),
            host=kwargs.pop("db_host"),
            port=kwargs.pop("db_port"),
            user=kwargs.pop("db_user"),
            database=kwargs.pop("db_database"),
            prompt=kwargs.pop("db_password"),
            profile=kwargs.pop("db_profile"),
        )
        return func(db=db, **kwargs)

    wrapper.__signature__ = signature.replace(parameters=[*own, *_OPTIONS])  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


# -- connecting --------------------------------------------------------------------------------


@contextlib.contextmanager
def guard(db: DbSettings, prefix: str = "") -> Iterator[None]:
    """The command boundary: floxy and psycopg errors become one scrubbed line and exit 2."""
    import psycopg

    from floxy_core.errors import FloxyError

    try:
        yield
    except FloxyError as exc:
        fail(db.scrub(prefix + str(exc)))
    except psycopg.errors.InsufficientPrivilege as exc:
        fail(db.scrub(f"{prefix}database error: {exc} ({PRIVILEGE_HINT})"))
    except psycopg.OperationalError as exc:
        fail(db.scrub(f"{prefix}database {db.where}: {exc}"))
    except psycopg.Error as exc:
        fail(db.scrub(f"{prefix}database error: {exc}"))


def connect(db: DbSettings) -> psycopg.Connection[Any]:
    """One autocommit connection, failing fast with a clear line when the server says no."""
    import psycopg

    try:
        return psycopg.connect(db.conninfo, autocommit=True)
    except psycopg.Error as exc:
        fail(db.scrub(f"cannot connect to the database at {db.where}: {exc}"))


def check_schema(db: DbSettings, conn: psycopg.Connection[Any]) -> None:
    """Exit `exits.SCHEMA` unless every migration is applied (changes nothing)."""
    from floxy_core.storage.postgres.migrations import available, pending

    with guard(db):
        todo = pending(conn)
    if not todo:
        return
    if len(todo) == len(available()):
        fail(f"no floxy schema in the database at {db.where}: run `floxyctl migrate`", exits.SCHEMA)
    names = ", ".join(m.filename for m in todo)
    fail(
        f"the floxy schema at {db.where} is older than this floxyctl ({len(todo)} pending: "
        f"{names}): run `floxyctl migrate`",
        exits.SCHEMA,
    )


@contextlib.contextmanager
def open_store(db: DbSettings) -> Iterator[PostgresStore]:
    """Connect, check the schema, and hand out a small-pool store; closes it on the way out."""
    from floxy_core.storage.postgres import PostgresStore

    # Our own checks report connection problems as one line; the pool's retry warnings would
    # only repeat them (and Python's last-resort handler prints them unformatted).
    logging.getLogger("psycopg").setLevel(logging.ERROR)
    with connect(db) as conn:
        check_schema(db, conn)
    with guard(db):
        store = PostgresStore(db.conninfo, min_size=1, max_size=2, connect_timeout=10.0)
    try:
        yield store
    finally:
        store.close()
