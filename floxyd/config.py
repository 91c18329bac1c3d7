"""floxyd settings: command-line flags over `FLOXY_*` environment variables over defaults.

Everything is read and checked once, before anything starts; a bad value is one line on stderr
naming the flag or variable, and exit code 2. The database password is kept only inside the DSN
handed to psycopg. Where to connect and the password are resolved as for floxyctl, by
`floxy_core.dbconfig` (docs/cli.md#connection-settings holds the one table of both programs):
wherever the password comes from (the DSN, `FLOXY_DB_PASSWORD_FILE`, `PG_PASSWORD`,
`FLOXY_DB_PASSWORD`, `PGPASSWORD`, or the passfile `PGPASSFILE` names), it ends up as a
connection parameter, so libpq needs nothing from the environment that `floxyd.__main__` cleans
before any handler runs. Log output is masked by `floxy_core.secrets.redact`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from floxy_core.durations import parse_seconds
from floxy_core.errors import InputError

DEFAULT_WORKERS = 3
DEFAULT_WORKER_INTERVAL = "100ms"
DEFAULT_TECH_ADDR = "127.0.0.1:8081"
"""Loopback by default: /metrics tells what runs where; `:8081` opens it to every interface."""
DEFAULT_STATS_INTERVAL = "10s"
DEFAULT_SHUTDOWN_GRACE = "30s"
DEFAULT_LEASE = "30s"
DEFAULT_CONNECT_TIMEOUT = "60s"
DEFAULT_MAINTENANCE_INTERVAL = "1h"

ENV_VARS: tuple[tuple[str, str, str], ...] = (
    ("FLOXY_DSN", "--dsn", "libpq connection string or URL, instead of FLOXY_DB_*"),
    ("FLOXY_DB_HOST", "--db-host", "PostgreSQL host (else PGHOST)"),
    ("FLOXY_DB_PORT", "--db-port", "PostgreSQL port (else PGPORT, else 5432)"),
    ("FLOXY_DB_USER", "--db-user", "PostgreSQL user (else PGUSER)"),
    ("FLOXY_DB_PASSWORD_FILE", "", "file holding the PostgreSQL password (first line)"),
    ("FLOXY_DB_PASSWORD", "", "PostgreSQL password (prefer FLOXY_DB_PASSWORD_FILE; never logged)"),
    ("PG_PASSWORD", "", "PostgreSQL password, read before FLOXY_DB_PASSWORD (as by floxyctl)"),
    ("FLOXY_DB_NAME", "--db-name", "database name (else PGDATABASE)"),
    ("FLOXY_WORKERS", "--workers", f"worker threads claiming steps (default {DEFAULT_WORKERS})"),
    (
        "FLOXY_WORKER_INTERVAL",
        "--worker-interval",
        f"polling interval when LISTEN/NOTIFY is quiet (default {DEFAULT_WORKER_INTERVAL})",
    ),
    ("FLOXY_LEASE", "--lease", f"lease of a claimed step, renewed while it runs ({DEFAULT_LEASE})"),
    (
        "FLOXY_TECH_ADDR",
        "--tech-addr",
        f"/metrics and /health address, host:port or :port ({DEFAULT_TECH_ADDR}); off",
    ),
    (
        "FLOXY_STATS_INTERVAL",
        "--stats-interval",
        f"how often statistics are printed ({DEFAULT_STATS_INTERVAL}; 0 disables)",
    ),
    (
        "FLOXY_SHUTDOWN_GRACE",
        "--shutdown-grace",
        f"time running steps get to finish after SIGTERM ({DEFAULT_SHUTDOWN_GRACE})",
    ),
    (
        "FLOXY_CONNECT_TIMEOUT",
        "--connect-timeout",
        f"how long start-up waits for PostgreSQL ({DEFAULT_CONNECT_TIMEOUT})",
    ),
    (
        "FLOXY_MAINTENANCE_INTERVAL",
        "--maintenance-interval",
        f"pg_partman maintenance period ({DEFAULT_MAINTENANCE_INTERVAL}; 0 disables)",
    ),
    ("FLOXY_HANDLERS", "--handlers", "serve only these declared handlers (comma-separated)"),
    ("FLOXY_LOG_FORMAT", "--log-format", "text or json (one JSON object per line)"),
    ("FLOXY_LOG_LEVEL", "--log-level", "debug, info, warning or error (default info)"),
    ("FLOXY_NO_PLUGINS", "--no-plugins", "1 = load no third-party plugins"),
    ("FLOXY_PLUGINS", "", "load only these plugins (comma-separated)"),
)

_LEVELS = ("debug", "info", "warning", "error")


class ConfigError(Exception):
    """One or more bad settings; each line of the message names its flag or variable."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class Config:
    file: Path
    dsn: str = field(repr=False)
    dsn_display: str
    """The DSN as it may be logged: the password masked."""
    workers: int = DEFAULT_WORKERS
    worker_interval: float = 0.1
    lease: float = 30.0
    tech_addr: tuple[str, int] | None = ("127.0.0.1", 8081)
    stats_interval: float = 10.0
    shutdown_grace: float = 30.0
    connect_timeout: float = 60.0
    maintenance_interval: float = 3600.0
    handlers: frozenset[str] | None = None
    log_format: str = "text"
    log_level: str = "info"
    no_plugins: bool = False

    @property
    def tech_display(self) -> str:
        if self.tech_addr is None:
            return "off"
        host, port = self.tech_addr
        return f"{host or '0.0.0.0'}:{port}"


def parse_addr(text: str) -> tuple[str, int] | None:
    """`host:port`, `:port` or `[v6]:port`; `off` disables the tech server."""
    value = text.strip()
    if value.lower() in ("off", "none", "disabled"):
        return None
    host, sep, port_text = value.rpartition(":")
    if not sep:
        raise ValueError(f"{text!r} is not host:port or :port")
    host = host.strip("[]")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"{text!r}: port {port_text!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"{text!r}: port {port} is out of range")
    return host, port


class _Reader:
    """Looks a setting up in the flags, then the environment; collects every problem."""

    def __init__(self, flags: Mapping[str, object], env: Mapping[str, str]) -> None:
        self.flags = flags
        self.env = env
        self.problems: list[str] = []

    def raw(self, var: str, flag: str) -> tuple[str | None, str]:
        """(value, name to blame): flags win over the environment."""
        value = self.flags.get(flag)
        if value is not None:
            return str(value), f"--{flag.replace('_', '-')}"
        env_value = self.env.get(var)
        if env_value is not None and env_value.strip() != "":
            return env_value, var
        return None, var

    def duration(self, var: str, flag: str, default: str, *, positive: bool = False) -> float:
        """Seconds, in the one duration grammar (`floxy_core.durations`)."""
        text, name = self.raw(var, flag)
        try:
            seconds = parse_seconds(text if text is not None else default, what=name)
        except InputError as exc:
            self.problems.append(str(exc))
            return parse_seconds(default)
        if positive and seconds <= 0:
            self.problems.append(f"{name} must be greater than 0, got {text!r}")
            return parse_seconds(default)
        return seconds


def load_config(
    file: str | None, flags: Mapping[str, object], env: Mapping[str, str] | None = None
) -> Config:
    """Build the configuration from parsed flags and the environment; `ConfigError` lists all
    problems, each naming its flag or variable."""
    env = os.environ if env is None else env
    r = _Reader(flags, env)
    problems = r.problems
    if not file:
        problems.append("missing the workflow YAML file: floxyd FILE (see floxyd --help)")

    dsn, dsn_display = _database(r)

    workers_text, workers_name = r.raw("FLOXY_WORKERS", "workers")
    workers = DEFAULT_WORKERS
    if workers_text is not None:
        try:
            workers = int(workers_text.strip())
        except ValueError:
            problems.append(f"{workers_name} must be a whole number, got {workers_text!r}")
        else:
            if workers < 1:
                problems.append(f"{workers_name} must be at least 1, got {workers}")

    worker_interval = r.duration(
        "FLOXY_WORKER_INTERVAL", "worker_interval", DEFAULT_WORKER_INTERVAL, positive=True
    )
    lease = r.duration("FLOXY_LEASE", "lease", DEFAULT_LEASE, positive=True)
    if 0 < lease < 0.3:
        problems.append(f"{r.raw('FLOXY_LEASE', 'lease')[1]} must be at least 300ms")
    stats_interval = r.duration("FLOXY_STATS_INTERVAL", "stats_interval", DEFAULT_STATS_INTERVAL)
    grace = r.duration("FLOXY_SHUTDOWN_GRACE", "shutdown_grace", DEFAULT_SHUTDOWN_GRACE)
    connect_timeout = r.duration(
        "FLOXY_CONNECT_TIMEOUT", "connect_timeout", DEFAULT_CONNECT_TIMEOUT
    )
    maintenance = r.duration(
        "FLOXY_MAINTENANCE_INTERVAL", "maintenance_interval", DEFAULT_MAINTENANCE_INTERVAL
    )

    addr_text, addr_name = r.raw("FLOXY_TECH_ADDR", "tech_addr")
    tech_addr = Config.tech_addr
    try:
        tech_addr = parse_addr(addr_text if addr_text is not None else DEFAULT_TECH_ADDR)
    except ValueError as exc:
        problems.append(f"{addr_name}: {exc}")

    handlers_text, _ = r.raw("FLOXY_HANDLERS", "handlers")
    handlers = None
    if handlers_text is not None:
        handlers = frozenset(n.strip() for n in handlers_text.split(",") if n.strip())

    fmt_text, fmt_name = r.raw("FLOXY_LOG_FORMAT", "log_format")
    log_format = (fmt_text or "text").strip().lower()
    if log_format not in ("text", "json"):
        problems.append(f"{fmt_name} must be text or json, got {fmt_text!r}")
        log_format = "text"

    level_text, level_name = r.raw("FLOXY_LOG_LEVEL", "log_level")
    log_level = (level_text or "info").strip().lower()
    if log_level not in _LEVELS:
        problems.append(f"{level_name} must be one of {', '.join(_LEVELS)}, got {level_text!r}")
        log_level = "info"

    no_plugins_env = env.get("FLOXY_NO_PLUGINS", "").strip().lower()
    no_plugins = bool(flags.get("no_plugins")) or no_plugins_env in ("1", "true", "yes")

    if problems:
        raise ConfigError(problems)
    return Config(
        file=Path(file or ""),
        dsn=dsn,
        dsn_display=dsn_display,
        workers=workers,
        worker_interval=worker_interval,
        lease=lease,
        tech_addr=tech_addr,
        stats_interval=stats_interval,
        shutdown_grace=grace,
        connect_timeout=connect_timeout,
        maintenance_interval=maintenance,
        handlers=handlers,
        log_format=log_format,
        log_level=log_level,
        no_plugins=no_plugins,
    )


_PARTS = (
    ("host", "FLOXY_DB_HOST", "db_host"),
    ("port", "FLOXY_DB_PORT", "db_port"),
    ("user", "FLOXY_DB_USER", "db_user"),
    ("dbname", "FLOXY_DB_NAME", "db_name"),
)
"""(libpq parameter, variable, flag) of each part; `floxy_core.dbconfig.PARTS` order."""


def _database(r: _Reader) -> tuple[str, str]:
    """(dsn, its display) from FLOXY_DSN, else the FLOXY_DB_* parts, else libpq's PG*
    variables alone: `floxy_core.dbconfig.resolve`, the rules floxyctl follows too."""
    from floxy_core import dbconfig

    dsn_text, dsn_name = r.raw("FLOXY_DSN", "dsn")
    parts: dict[str, str | int | None] = {}
    for key, var, flag in _PARTS:
        value, _ = r.raw(var, flag)
        parts[key] = None if value is None else value.strip()
    port = parts["port"]
    if dsn_text is None and isinstance(port, str) and not _is_port(port):
        port_name = r.raw("FLOXY_DB_PORT", "db_port")[1]
        r.problems.append(f"{port_name} must be a port number, got {port!r}")
        return "", ""
    try:
        connection = dbconfig.resolve(
            r.env, program=dbconfig.FLOXYD, dsn=dsn_text, what=dsn_name, parts=parts
        )
    except dbconfig.IncompleteSettings as exc:
        r.problems.append(_not_configured([var for key, var, _ in _PARTS if key in exc.missing]))
        return "", ""
    except dbconfig.SettingsError as exc:
        r.problems.append(str(exc))
        return "", ""
    return connection.conninfo, connection.shown


def _not_configured(names: list[str]) -> str:
    if len(names) == len(_PARTS):
        return (
            "no database configured: set FLOXY_DSN, or FLOXY_DB_HOST/FLOXY_DB_PORT/FLOXY_DB_USER/"
            "FLOXY_DB_NAME (--db-host/--db-port/--db-user/--db-name), or libpq's "
            "PGHOST/PGPORT/PGUSER/PGDATABASE (docs/database-settings.md)"
        )
    fallback = {"FLOXY_DB_HOST": "PGHOST", "FLOXY_DB_NAME": "PGDATABASE"}
    each = [f"{name} (or {fallback[name]})" for name in names]
    verb = "is" if len(names) == 1 else "are"
    return f"{' and '.join(each)} {verb} required (or set FLOXY_DSN to a connection string)"


def _is_port(text: str) -> bool:
    return text.isdigit() and 0 < int(text) <= 65535
