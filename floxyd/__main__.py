"""`floxyd FILE`: the floxy worker daemon (argument parsing, logging, signals, exit codes)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from datetime import UTC, datetime
from types import FrameType
from typing import Any

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_CONFIG = 2
EXIT_INTERRUPTED = 130

DESCRIPTION = """\
Run the workflows of a YAML file against PostgreSQL: register its flows, then claim and run
their steps with a pool of workers until SIGINT/SIGTERM.

Examples:
  FLOXY_DB_HOST=db FLOXY_DB_PORT=5432 FLOXY_DB_USER=floxy FLOXY_DB_PASSWORD=... \\
    FLOXY_DB_NAME=floxy floxyd handlers.yaml --workers 8
  FLOXY_DSN=postgresql://floxy@db:5432/floxy FLOXY_LOG_FORMAT=json floxyd handlers.yaml

Several floxyd processes may share one database: steps are claimed with leases, a step whose
handler this process lacks is left for another (FLOXY_HANDLERS picks which declared handlers
this process serves), and the steps of a process that dies are taken over when their lease
expires. Durations take a unit: 250ms, 2s, 1m30s, 1h.
"""


def _epilog() -> str:
    from floxyd.config import ENV_VARS

    lines = ["Environment (the flags above win over these):"]
    for var, _flag, text in ENV_VARS:
        lines.append(f"  {var:<27} {text}")
    lines += [
        "",
        "HTTP (FLOXY_TECH_ADDR): GET /metrics (Prometheus), /health (database ping),",
        "  /health/live (process up), /health/ready (started and database reachable).",
        "",
        "Signals: SIGINT/SIGTERM stop claiming, let running steps finish within",
        "  FLOXY_SHUTDOWN_GRACE, release the rest for other workers and exit 0;",
        "  a second signal exits at once (130).",
        "",
        "Exit codes: 0 clean shutdown · 1 runtime failure · 2 bad configuration, bad",
        "  workflow file, or database unreachable/unusable at start-up · 130 second signal.",
        "",
        "Guide: docs/floxyd.md",
    ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="floxyd",
        description=DESCRIPTION,
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", nargs="?", metavar="FILE", help="workflow YAML file")
    parser.add_argument("-v", "--version", action="store_true", help="print the version and exit")
    add = parser.add_argument
    add("--workers", metavar="N", help="worker threads [FLOXY_WORKERS, default 3]")
    add(
        "--worker-interval",
        metavar="D",
        help="polling fallback when no NOTIFY arrives [FLOXY_WORKER_INTERVAL, 100ms]",
    )
    add("--lease", metavar="D", help="lease of a claimed step [FLOXY_LEASE, 30s]")
    add(
        "--tech-addr",
        metavar="ADDR",
        help="metrics/health address [FLOXY_TECH_ADDR, 127.0.0.1:8081]",
    )
    add("--stats-interval", metavar="D", help="statistics period [FLOXY_STATS_INTERVAL, 10s]")
    add("--shutdown-grace", metavar="D", help="grace at shutdown [FLOXY_SHUTDOWN_GRACE, 30s]")
    add(
        "--connect-timeout",
        metavar="D",
        help="wait this long for PostgreSQL at start-up [FLOXY_CONNECT_TIMEOUT, 60s]",
    )
    add(
        "--maintenance-interval",
        metavar="D",
        help="pg_partman maintenance period [FLOXY_MAINTENANCE_INTERVAL, 1h]",
    )
    add("--handlers", metavar="A,B", help="serve only these handlers [FLOXY_HANDLERS]")
    add("--log-format", metavar="FMT", help="text or json [FLOXY_LOG_FORMAT, text]")
    add("--log-level", metavar="LEVEL", help="debug|info|warning|error [FLOXY_LOG_LEVEL]")
    add("--no-plugins", action="store_true", default=None, help="[FLOXY_NO_PLUGINS]")
    add(
        "--dsn",
        metavar="DSN",
        help="connection string [FLOXY_DSN]; prefer the variable: flags are visible in ps",
    )
    # floxyctl's names are aliases: both programs take both (docs/database-settings.md).
    add("--db-host", "--host", dest="db_host", metavar="HOST", help="[FLOXY_DB_HOST, PGHOST]")
    add("--db-port", "--port", dest="db_port", metavar="PORT", help="[FLOXY_DB_PORT, PGPORT]")
    add("--db-user", "--user", dest="db_user", metavar="USER", help="[FLOXY_DB_USER, PGUSER]")
    add(
        "--db-name",
        "--database",
        dest="db_name",
        metavar="NAME",
        help="[FLOXY_DB_NAME, PGDATABASE]",
    )
    return parser


# -- logging ------------------------------------------------------------------------------------


class _TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        from floxy_core.secrets import redact

        return redact(super().format(record))


class _JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, plus the record's `fields`."""

    def format(self, record: logging.LogRecord) -> str:
        from floxy_core.secrets import redact

        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update({k: v for k, v in fields.items() if k not in entry})
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return redact(json.dumps(entry, default=str))


def setup_logging(log_format: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if log_format == "json" else _TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The pool logs every failed reconnection; floxyd reports outages itself (and recovery).
    logging.getLogger("psycopg").setLevel(max(logging.WARNING, root.level))
    logging.getLogger("psycopg.pool").setLevel(max(logging.ERROR, root.level))


# -- entry point --------------------------------------------------------------------------------


# -- secrets out of the environment block ------------------------------------------------------

_SECRET_VARS = ("FLOXY_DSN", "FLOXY_DB_PASSWORD", "PGPASSWORD", "PG_PASSWORD", "PGPASSFILE")
"""Variables that carry the database credentials (or where to find them)."""

_SECRETS_FD = "FLOXY_SECRETS_FD"
_MAX_SECRETS = 60_000
"""Below a pipe's 64 KiB buffer: the first process writes everything before it execs."""


def _dsn_flag(argv: list[str]) -> tuple[list[str], str | None]:
    """`argv` without `--dsn VALUE` / `--dsn=VALUE`, and that value."""
    rest: list[str] = []
    value: str | None = None
    items = iter(argv)
    for item in items:
        if item == "--dsn":
            value = next(items, None)
        elif item.startswith("--dsn="):
            value = item.removeprefix("--dsn=")
        elif item == "--":
            rest.append(item)
            rest.extend(items)
        else:
            rest.append(item)
    return rest, value


def _secure_start(argv: list[str]) -> tuple[list[str], dict[str, str], str | None]:
    """Re-execute floxyd with the database credentials out of its environment block and argv.

    Every handler can read `/proc/<floxyd>/environ` and `/proc/<floxyd>/cmdline`: the kernel
    keeps the block a process was started with, whatever `os.environ` later says. So the first
    process moves `_SECRET_VARS` and a `--dsn` flag into a pipe, then `execve`s the same daemon
    with a clean environment and argv and the pipe's read end as `FLOXY_SECRETS_FD`; the new
    process reads the pipe once and closes it. Nothing touches the disk, nothing is left to clean
    up, and the cost is one interpreter start (about 40 ms), paid only when there is something
    to hide. Returns (argv, moved variables, --dsn value) in the process that goes on.
    """
    fd_text = os.environ.pop(_SECRETS_FD, None)
    if fd_text is not None:
        import stat

        fd = int(fd_text) if fd_text.isdigit() else -1
        if fd < 3 or not stat.S_ISFIFO(os.fstat(fd).st_mode):
            print(f"floxyd: error: {_SECRETS_FD} is set by floxyd itself", file=sys.stderr)
            sys.exit(EXIT_CONFIG)
        with os.fdopen(fd, "rb") as pipe:
            moved = json.loads(pipe.read())
        return argv, dict(moved["env"]), moved["dsn"]
    rest, dsn = _dsn_flag(argv)
    env = {k: v for k in _SECRET_VARS if (v := os.environ.get(k)) is not None}
    if not env and dsn is None:
        return argv, {}, None
    blob = json.dumps({"env": env, "dsn": dsn}).encode()
    if len(blob) > _MAX_SECRETS:
        print("floxyd: error: the database settings are too long", file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    read_end, write_end = os.pipe()
    os.write(write_end, blob)
    os.close(write_end)
    os.set_inheritable(read_end, True)
    clean = {k: v for k, v in os.environ.items() if k not in env}
    clean[_SECRETS_FD] = str(read_end)
    os.execve(sys.executable, [sys.executable, "-m", "floxyd", *rest], clean)


def main(argv: list[str] | None = None) -> None:
    moved: dict[str, str] = {}
    dsn_flag: str | None = None
    if argv is None:  # the real command line (tests may call main in-process)
        argv, moved, dsn_flag = _secure_start(sys.argv[1:])
    args = build_parser().parse_args(argv)
    if dsn_flag is not None:
        args.dsn = dsn_flag
    if args.version or (args.file == "version" and not os.path.exists("version")):
        from floxy_core import __version__

        print(f"floxyd version {__version__}")
        sys.exit(EXIT_OK)

    from floxyd.config import ConfigError, load_config

    flags = {k: v for k, v in vars(args).items() if k not in ("file", "version")}
    try:
        config = load_config(args.file, flags, {**os.environ, **moved})
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"floxyd: error: {problem}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)

    setup_logging(config.log_format, config.log_level)
    import prometheus_client

    prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

    from floxyd.daemon import Daemon

    daemon = Daemon(config)
    signals = {"count": 0}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        signals["count"] += 1
        name = signal.Signals(signum).name
        if signals["count"] == 1:
            daemon.request_stop(name)
            return
        logging.getLogger("floxyd").warning(
            "second %s: exiting at once; running steps are re-run after their lease expires",
            name,
        )
        os._exit(EXIT_INTERRUPTED)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    sys.exit(daemon.run())


if __name__ == "__main__":
    main()
