"""The daemon: start-up in a fixed order, workers, statistics, tech server, graceful shutdown.

Start-up: tech server (so /health/live answers at once) → workflow file (exit 2 on any error,
before touching the database) → handlers → PostgreSQL, retried with backoff until
FLOXY_CONNECT_TIMEOUT → migrations (under their advisory lock) → flow registration → workers,
statistics and partition maintenance. Shutdown: stop claiming, give running steps the grace
period, interrupt what still runs and release each step once its call has ended, so that another
daemon takes it at once (a `no_idempotent` step is failed instead: its outcome is unknown), stop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from floxy_core.secrets import redact
from floxy_core.storage.postgres.store import PostgresStore
from floxy_core.wiring import build_runtime
from floxyd.config import Config
from floxyd.maintenance import Maintenance
from floxyd.stats import StatsPrinter
from floxyd.tech import DatabaseGauges, HealthCheck, Metrics, TechServer, TechState

if TYPE_CHECKING:
    import psycopg

    from floxy_core.model import CallLog, Instance, WorkflowFile
    from floxy_core.ports import Handler
    from floxy_core.runtime import Runtime

log = logging.getLogger("floxyd")
steps_log = logging.getLogger("floxyd.steps")
"""One info line per handler call's step transition; `FLOXY_LOG_LEVEL=warning` silences it."""


def log_call(call: CallLog, status: str | None) -> None:
    """Say how a handler call moved its step, with the fields `--log-format json` shows."""
    duration_ms = round(max(0.0, call.ended_at - call.started_at) * 1000)
    status = status or call.outcome
    fields = {
        "instance_id": call.instance_id,
        "step": call.step_name,
        "handler": call.handler,
        "compensation": call.compensation,
        "status": status,
        "outcome": call.outcome,
        "attempt": call.retry_count + 1,
        "duration_ms": duration_ms,
        "exit_code": call.exit_code,
    }
    steps_log.info(
        "%s%s (instance %d): call %s, step %s (attempt %d, %d ms)",
        "compensation of " if call.compensation else "",
        call.step_name,
        call.instance_id,
        call.outcome,
        status,
        call.retry_count + 1,
        duration_ms,
        extra={"fields": fields},
    )


_LOGGED_HOOKS = frozenset(
    {
        "workflow_started",
        "workflow_completed",
        "workflow_failed",
        "workflow_cancelled",
        "workflow_aborted",
        "workflow_paused",
        "workflow_resumed",
        "step_waiting_decision",
        "human_decided",
    }
)
"""The transitions no handler call reports (`log_call` has those): an instance's, and a human
step's wait and decision."""


def log_transition(name: str, instance: Instance, kwargs: Mapping[str, Any]) -> None:
    """A `Runtime` hook: one info line per instance transition and human-step change made here."""
    if name not in _LOGGED_HOOKS:
        return
    step = kwargs.get("step_name")
    fields: dict[str, Any] = {
        "instance_id": instance.id,
        "workflow_id": instance.workflow_id,
        "event": name,
        "status": instance.status.value,
    }
    if step:
        fields["step"] = step
    if name == "human_decided":
        fields.update(decision=kwargs.get("decision"), decided_by=kwargs.get("decided_by"))
    what = f"{step} (instance {instance.id})" if step else f"instance {instance.id}"
    steps_log.info("%s: %s, %s", what, name, instance.status.value, extra={"fields": fields})


_FATAL_CONNECT = (
    "password authentication failed",
    "does not exist",
    "no pg_hba.conf entry",
    "authentication failed",
    "invalid password",
    "ssl is not enabled",
    "connection is bad: invalid",
    "invalid connection option",
    "invalid dsn",
    'missing "="',
)
"""Connection errors that waiting cannot fix: start-up fails at once instead of retrying."""


class StartupError(Exception):
    """Configuration, workflow file or database problem at start-up: exit code 2."""


class _Stopped(Exception):
    """A signal arrived during start-up."""


def _is_db_error(exc: BaseException) -> bool:
    import psycopg

    return isinstance(exc, psycopg.Error) or isinstance(exc.__cause__, psycopg.Error)


def one_line(exc: BaseException) -> str:
    return redact(" ".join(str(exc).split()) or type(exc).__name__)


def used_handlers(file: WorkflowFile) -> dict[str, list[str]]:
    """Handler name → the flows (ids) whose tasks or compensations call it."""
    used: dict[str, list[str]] = {}
    for flow in file.flows:
        for step in flow.steps.values():
            if step.handler and flow.id not in used.setdefault(step.handler, []):
                used[step.handler].append(flow.id)
    return used


class Daemon:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.stop_requested = threading.Event()
        self.state = TechState()
        from floxy_core import __version__

        self.version = __version__
        self.metrics = Metrics(config.workers, __version__)
        self.health = HealthCheck(config.dsn)
        self.health.on_error = self.metrics.database_errors.inc
        self.store: PostgresStore | None = None
        self.runtime: Runtime | None = None
        self.handlers: dict[str, Handler] = {}
        self.tech: TechServer | None = None
        self.stats: StatsPrinter | None = None
        self.maintenance: Maintenance | None = None
        self.metrics.registry.register(
            DatabaseGauges(
                lambda: self.store,
                self.metrics,
                lambda: self.runtime.hook_errors if self.runtime is not None else 0,
            )
        )

    def request_stop(self, reason: str) -> None:
        if not self.stop_requested.is_set():
            log.info(
                "%s received: shutting down (grace %gs); send it again to exit at once",
                reason,
                self.config.shutdown_grace,
            )
        self.stop_requested.set()
        if self.store is not None:
            self.store.wake()

    # -- lifecycle ----------------------------------------------------------------------------

    def run(self) -> int:
        """Start, serve until a signal, shut down. Returns the exit code."""
        try:
            code = self._start_up()
            if code is not None:
                return code
            while not self.stop_requested.wait(0.5):
                pass
            self.shutdown()
            return 0
        except Exception:
            log.exception("floxyd failed")
            self._close()
            return 1

    def _start_up(self) -> int | None:
        """`start()`; the exit code when the daemon must not go on (stopped, or exit 2)."""
        try:
            self.start()
            return None
        except _Stopped:
            log.info("stopped during start-up")
            code = 0
        except StartupError as exc:
            for line in str(exc).splitlines():
                log.error("%s", line)
            code = 2
        except Exception as exc:
            if not _is_db_error(exc):
                raise
            log.error("database error at start-up: %s", one_line(exc))
            code = 2
        self._close()
        return code

    def _check_stop(self) -> None:
        if self.stop_requested.is_set():
            raise _Stopped

    def start(self) -> None:
        cfg = self.config
        log.info(
            "floxyd %s starting: file %s; database %s; %d workers, poll %gs, lease %gs",
            self.version,
            cfg.file,
            cfg.dsn_display,
            cfg.workers,
            cfg.worker_interval,
            cfg.lease,
        )
        self._start_tech_server()
        file = self._load_file()
        plugins = self._load_plugins()
        self.handlers = self._build_handlers(file, plugins)
        self._check_stop()
        self._migrate()
        self._check_stop()
        self._open_store()
        self._register(file)
        self._warn_missing(file)
        self._check_stop()
        self._start_workers(plugins)
        self.state.started = True
        log.info(
            "floxyd started with %d workers serving %s; tech server on %s",
            cfg.workers,
            ", ".join(sorted(self.handlers)) or "no handlers",
            cfg.tech_display
            if self.tech is None
            else f"{cfg.tech_display.rpartition(':')[0]}:{self.tech.port}",
        )

    def _start_tech_server(self) -> None:
        cfg = self.config
        if cfg.tech_addr is None:
            return
        try:
            self.tech = TechServer(cfg.tech_addr, self.metrics.registry, self.health, self.state)
        except OSError as exc:
            raise StartupError(
                f"FLOXY_TECH_ADDR {cfg.tech_display}: cannot listen: {exc.strerror or exc}"
            ) from exc
        self.tech.start()

    def _load_file(self) -> WorkflowFile:
        from floxy_core.errors import FloxyError, ValidationError
        from floxy_core.spec import load_workflow_file

        try:
            file = load_workflow_file(self.config.file, require_handlers=False)
        except ValidationError as exc:
            raise StartupError(
                f"{self.config.file}: {len(exc.errors)} problem(s) in the workflow file:\n"
                + "\n".join(str(e) for e in exc.errors)
            ) from exc
        except (FloxyError, OSError) as exc:
            raise StartupError(f"{self.config.file}: {exc}") from exc
        for warning in file.warnings:  # e.g. a missing script file another host may have
            log.warning("%s", warning)
        return file

    def _load_plugins(self) -> Any:
        from floxy_core.errors import FloxyError
        from floxy_core.plugins import load_plugins

        try:
            plugins = load_plugins(no_plugins=self.config.no_plugins)
        except FloxyError as exc:
            raise StartupError(str(exc)) from exc
        for info in plugins.infos:
            if not info.builtin:
                log.info("plugin %s %s loaded", info.name, info.version)
        return plugins

    def _build_handlers(self, file: WorkflowFile, plugins: Any) -> dict[str, Handler]:
        from floxy_core.handlers.registry import HandlerBuildError, build_handlers

        only = self.config.handlers
        if only is not None:
            unknown = sorted(only - set(file.handlers))
            if unknown:
                raise StartupError(
                    f"FLOXY_HANDLERS names handlers {self.config.file} does not declare: "
                    + ", ".join(unknown)
                )
        try:
            handlers = build_handlers(file, plugins=plugins, only=only)
        except HandlerBuildError as exc:
            located = "; ".join(str(error) for error in exc.errors(str(self.config.file)))
            raise StartupError(located) from exc
        for name in sorted(handlers):
            log.info("registered handler %s (%s)", name, file.handlers[name].type)
        return handlers

    def connect(self) -> psycopg.Connection[Any]:
        """A connection, retried with backoff while PostgreSQL is not up (or not yet reachable)."""
        import psycopg

        cfg = self.config
        deadline = time.monotonic() + cfg.connect_timeout
        delay = 0.25
        while True:
            left = deadline - time.monotonic()
            try:
                return psycopg.connect(
                    cfg.dsn, autocommit=True, connect_timeout=max(2, min(10, round(left)))
                )
            except psycopg.OperationalError as exc:
                message = one_line(exc)
                if any(marker in message.lower() for marker in _FATAL_CONNECT):
                    raise StartupError(
                        f"cannot connect to PostgreSQL ({cfg.dsn_display}): {message}"
                    ) from None
                left = deadline - time.monotonic()
                if left <= 0:
                    raise StartupError(
                        f"PostgreSQL not reachable within FLOXY_CONNECT_TIMEOUT="
                        f"{cfg.connect_timeout:g}s ({cfg.dsn_display}): {message}"
                    ) from None
                wait = min(delay, left)
                log.warning(
                    "PostgreSQL is not reachable yet (%s); retrying in %.1fs, giving up in %.0fs",
                    message,
                    wait,
                    left,
                )
                if self.stop_requested.wait(wait):
                    raise _Stopped from None
                delay = min(delay * 2, 5.0)

    def _migrate(self) -> None:
        import psycopg

        from floxy_core.storage.postgres.migrations import MigrationError, migrate

        conn = self.connect()
        try:
            applied = migrate(conn)
        except MigrationError as exc:
            raise StartupError(f"database migration failed: {one_line(exc)}") from None
        except psycopg.Error as exc:
            raise StartupError(f"database migration failed: {one_line(exc)}") from None
        finally:
            conn.close()
        if applied:
            log.info(
                "applied %d migration(s): %s",
                len(applied),
                ", ".join(m.filename for m in applied),
            )
        else:
            log.info("database schema is up to date")

    def _open_store(self) -> None:
        import psycopg

        cfg = self.config
        try:
            store = PostgresStore(
                cfg.dsn, min_size=1, max_size=cfg.workers + 4, connect_timeout=5.0
            )
        except psycopg.Error as exc:
            raise StartupError(f"cannot open the connection pool: {one_line(exc)}") from None
        self.store = store

    def _register(self, file: WorkflowFile) -> None:
        from floxy_core.errors import ConflictError

        assert self.store is not None
        for flow in file.flows:
            try:
                inserted = self.store.save_definition(flow)
            except ConflictError as exc:
                raise StartupError(f"{self.config.file}: {exc}") from None
            if inserted:
                log.info("registered workflow %s (version %d)", flow.id, flow.version)
            else:
                log.info(
                    "workflow %s (version %d) already registered, unchanged", flow.id, flow.version
                )

    def _warn_missing(self, file: WorkflowFile) -> None:
        for handler, flows in sorted(used_handlers(file).items()):
            if handler not in self.handlers:
                log.warning(
                    "handler %s (used by %s) is not provided by this daemon: "
                    "another floxyd must serve it, or those steps wait",
                    handler,
                    ", ".join(flows),
                )

    def _start_workers(self, plugins: Any) -> None:
        from floxy_core.engine.decisions import Engine, EngineConfig

        cfg = self.config
        assert self.store is not None
        self.runtime = build_runtime(
            self.store,
            plugins,
            self.metrics.wrap(self.handlers),
            hooks=[self.metrics.hook, log_transition],
            engine=Engine(EngineConfig(lease_ms=round(cfg.lease * 1000))),
            workers=cfg.workers,
            poll_interval=cfg.worker_interval,
            distributed=True,
        )
        self.runtime.on_store_error = lambda exc: self.metrics.database_errors.inc()
        self.runtime.on_call = log_call
        self.runtime.start()
        if cfg.maintenance_interval > 0:
            self.maintenance = Maintenance(
                cfg.dsn, cfg.maintenance_interval, on_error=self.metrics.database_errors.inc
            )
            self.maintenance.start()
        if cfg.stats_interval > 0:
            import sys

            table = cfg.log_format == "text" and sys.stdout.isatty()
            self.stats = StatsPrinter(
                self.store,
                cfg.stats_interval,
                table=table,
                on_error=self.metrics.database_errors.inc,
            )
            self.stats.start()

    def shutdown(self) -> None:
        cfg = self.config
        self.state.stopping = True
        if self.stats is not None:
            self.stats.stop()
        if self.maintenance is not None:
            self.maintenance.stop()
        if self.runtime is not None:
            running = self.metrics.running()
            log.info(
                "no new steps are claimed; %d running step(s) get up to %gs to finish",
                len(running),
                cfg.shutdown_grace,
            )
            self.runtime.stop(grace=cfg.shutdown_grace, timeout=3.0)
        self._close()
        log.info("floxyd stopped")

    def _close(self) -> None:
        from floxy_core.handlers.registry import close_handlers

        try:
            close_handlers(self.handlers)
        except Exception:
            log.exception("closing handlers failed")
        if self.store is not None:
            self.store.close()
        self.health.close()
        if self.tech is not None:
            self.tech.stop()
