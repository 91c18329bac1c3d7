"""The tech server: Prometheus `/metrics` and the `/health` probes, on a stdlib HTTP server.

Counters come from the runtime's lifecycle hooks (`Metrics.hook`) and from the handler wrapper
(`Metrics.wrap`, which times each call and counts busy workers); queue gauges, and the aborts
(decided by whichever process asked, mostly floxyctl), are read from the database when
Prometheus scrapes. Labels are workflow and step names, never instance ids, so the
number of series stays bounded.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from floxy_core.secrets import redact

if TYPE_CHECKING:
    from floxy_core.model import JSON, Instance
    from floxy_core.ports import Handler, StepContext
    from floxy_core.storage.postgres.store import PostgresStore

log = logging.getLogger("floxyd.tech")

SCRAPE_TIMEOUT = 2.0
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)


class Metrics:
    """Every floxyd metric, in a registry of its own (no process-global state)."""

    def __init__(self, workers: int, version: str) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        wf = ["workflow"]
        st = ["workflow", "step"]
        self.workflows_started = Counter(
            "floxy_workflows_started", "Instances started by this process.", wf, registry=r
        )
        self.workflows_completed = Counter(
            "floxy_workflows_completed", "Instances completed by this process.", wf, registry=r
        )
        self.workflows_failed = Counter(
            "floxy_workflows_failed", "Instances that failed in this process.", wf, registry=r
        )
        self.workflows_cancelled = Counter(
            "floxy_workflows_cancelled", "Instances that ended cancelled here.", wf, registry=r
        )
        self.steps_started = Counter(
            "floxy_steps_started", "Step attempts started by this process.", st, registry=r
        )
        self.steps_completed = Counter(
            "floxy_steps_completed", "Steps completed by this process.", st, registry=r
        )
        self.steps_failed = Counter(
            "floxy_steps_failed", "Steps failed for good (retries exhausted).", st, registry=r
        )
        self.steps_retried = Counter(
            "floxy_steps_retried", "Failed step attempts scheduled for a retry.", st, registry=r
        )
        self.compensations = Counter(
            "floxy_compensations",
            "Compensations finished, by outcome (ok or failed).",
            [*st, "outcome"],
            registry=r,
        )
        self.step_duration = Histogram(
            "floxy_step_duration_seconds",
            "Duration of handler calls (kind: task or compensation).",
            [*st, "kind"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.database_errors = Counter(
            "floxy_database_errors", "Database operations of this process that failed.", registry=r
        )
        self.workers = Gauge("floxy_workers", "Configured worker threads.", registry=r)
        self.workers.set(workers)
        self.busy = Gauge("floxy_workers_busy", "Workers running a handler now.", registry=r)
        info = Gauge("floxy_build_info", "floxyd version.", ["version"], registry=r)
        info.labels(version).set(1)
        self._lock = threading.Lock()
        self._running: dict[str, tuple[int, str]] = {}

    # -- runtime hooks ------------------------------------------------------------------------

    def hook(self, name: str, instance: Instance, kwargs: Mapping[str, Any]) -> None:
        """A `Runtime` lifecycle hook: count what happened, by workflow and step."""
        workflow = instance.workflow_id
        step = str(kwargs.get("step_name", ""))
        match name:
            case "workflow_started":
                self.workflows_started.labels(workflow).inc()
            case "workflow_completed":
                self.workflows_completed.labels(workflow).inc()
            case "workflow_failed":
                self.workflows_failed.labels(workflow).inc()
            case "workflow_cancelled":
                self.workflows_cancelled.labels(workflow).inc()
            case "step_started":
                self.steps_started.labels(workflow, step).inc()
            case "step_completed":
                self.steps_completed.labels(workflow, step).inc()
            case "step_failed":
                self.steps_failed.labels(workflow, step).inc()
            case "step_retried":
                self.steps_retried.labels(workflow, step).inc()
            case "compensation_finished":
                outcome = "failed" if kwargs.get("error") else "ok"
                self.compensations.labels(workflow, step, outcome).inc()
            case _:
                pass

    # -- handler calls ------------------------------------------------------------------------

    def wrap(self, handlers: Mapping[str, Handler]) -> dict[str, Handler]:
        return {name: MeteredHandler(handler, self) for name, handler in handlers.items()}

    def call_started(self, ctx: StepContext) -> None:
        with self._lock:
            self._running[threading.current_thread().name] = (ctx.instance_id, ctx.step_name)
            self.busy.set(len(self._running))

    def call_finished(self, ctx: StepContext, seconds: float) -> None:
        kind = "compensation" if ctx.compensation else "task"
        self.step_duration.labels(ctx.workflow_id, ctx.step_name, kind).observe(seconds)
        with self._lock:
            self._running.pop(threading.current_thread().name, None)
            self.busy.set(len(self._running))

    def running(self) -> dict[str, tuple[int, str]]:
        """Handler calls in progress: worker name → (instance id, step name)."""
        with self._lock:
            return dict(self._running)


class MeteredHandler:
    """A handler that reports its calls to `Metrics`; otherwise the handler it wraps."""

    def __init__(self, inner: Handler, metrics: Metrics) -> None:
        self.inner = inner
        self.name = inner.name
        self._metrics = metrics

    def __call__(self, ctx: StepContext, data: JSON) -> JSON:
        self._metrics.call_started(ctx)
        started = time.monotonic()
        try:
            return self.inner(ctx, data)
        finally:
            self._metrics.call_finished(ctx, time.monotonic() - started)

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if callable(close):
            close()


class DatabaseGauges(Collector):
    """Read on scrape: queue depth, age of the oldest ready step, active instances, and the
    aborts per workflow (a counter the database keeps, whichever process aborted)."""

    def __init__(
        self,
        store: Callable[[], PostgresStore | None],
        metrics: Metrics,
        hook_errors: Callable[[], int] = lambda: 0,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._hook_errors = hook_errors

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        hook_errors = CounterMetricFamily(
            "floxy_hook_errors", "Lifecycle hooks (plugins) that raised in this process."
        )
        hook_errors.add_metric([], self._hook_errors())
        yield hook_errors
        up = GaugeMetricFamily("floxy_database_up", "1 when the last scrape query succeeded.")
        store = self._store()
        if store is None:
            up.add_metric([], 0)
            yield up
            return
        try:
            gauges = store.gauges(SCRAPE_TIMEOUT)
        except Exception as exc:
            self._metrics.database_errors.inc()
            log.warning("metrics: database query failed: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        for name, text, value in (
            ("floxy_queue_ready_steps", "Queued steps ready to be claimed now.", gauges.ready),
            ("floxy_queue_leased_steps", "Queued steps claimed under a live lease.", gauges.leased),
            (
                "floxy_queue_scheduled_steps",
                "Queued steps due later (delay, retry).",
                gauges.scheduled,
            ),
            (
                "floxy_queue_oldest_ready_age_seconds",
                "How long the oldest ready step has waited (0 when none).",
                gauges.oldest_ready_age_s,
            ),
        ):
            yield GaugeMetricFamily(name, text, value=float(value))
        instances = GaugeMetricFamily(
            "floxy_instances_active",
            "Instances not yet finished, by status (whole database).",
            labels=["status"],
        )
        for status, count in gauges.active.items():
            instances.add_metric([status], count)
        yield instances
        aborted = CounterMetricFamily(
            "floxy_workflows_aborted",
            "Instances that ended aborted, by whatever process (whole database).",
            labels=["workflow"],
        )
        for workflow, count in gauges.aborted.items():
            aborted.add_metric([workflow], count)
        yield aborted


class HealthCheck:
    """Pings PostgreSQL on a dedicated connection (never waits for a busy pool)."""

    def __init__(self, dsn: str, timeout: float = 5.0) -> None:
        self._dsn = dsn
        self._timeout = timeout
        self._lock = threading.Lock()
        self._conn: Any = None
        self.on_error: Callable[[], None] = lambda: None

    def check(self) -> str | None:
        """None when the database answers, else the reason (password-free)."""
        import psycopg

        with self._lock:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = psycopg.connect(
                        self._dsn,
                        autocommit=True,
                        connect_timeout=max(2, round(self._timeout)),
                        options=f"-c statement_timeout={int(self._timeout * 1000)}",
                    )
                self._conn.execute("SELECT 1")
                return None
            except Exception as exc:
                self.on_error()
                if self._conn is not None:
                    with contextlib.suppress(Exception):
                        self._conn.close()
                self._conn = None
                detail = " ".join(str(exc).split()) or type(exc).__name__
                return redact(detail)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class TechState:
    """What the probes report: set by the daemon as it starts and stops."""

    def __init__(self) -> None:
        self.started = False
        self.stopping = False


class TechServer:
    """`/metrics`, `/health`, `/health/live`, `/health/ready`; GET only."""

    def __init__(
        self,
        addr: tuple[str, int],
        registry: CollectorRegistry,
        health: HealthCheck,
        state: TechState,
    ) -> None:
        handler = _make_handler(registry, health, state)
        server_class = _V6Server if ":" in addr[0] else ThreadingHTTPServer
        self.server = server_class(addr, handler)
        self.server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="floxyd-tech", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _V6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def _make_handler(
    registry: CollectorRegistry, health: HealthCheck, state: TechState
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "floxyd"
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            path = urlsplit(self.path).path.rstrip("/") or "/"
            if path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path == "/health":
                error = health.check()
                if error is None:
                    self._json(200, {"status": "healthy"})
                else:
                    self._json(
                        503,
                        {"status": "unhealthy", "error": f"database connection failed: {error}"},
                    )
            elif path == "/health/live":
                self._json(200, {"status": "alive"})
            elif path == "/health/ready":
                self._ready()
            else:
                self._json(404, {"error": f"not found: {path}"})

        def _ready(self) -> None:
            if state.stopping:
                self._json(503, {"status": "not ready", "error": "shutting down"})
            elif not state.started:
                self._json(503, {"status": "not ready", "error": "starting"})
            else:
                error = health.check()
                if error is None:
                    self._json(200, {"status": "ready"})
                else:
                    self._json(
                        503,
                        {"status": "not ready", "error": f"database connection failed: {error}"},
                    )

        def _not_allowed(self) -> None:
            # The body is never read, so the connection must not carry another request.
            self.close_connection = True
            self._json(405, {"error": f"method {self.command} not allowed; use GET"})

        def __getattr__(self, name: str) -> Callable[[], None]:
            # Every method but GET (HEAD, POST, PUT, ...) gets 405 rather than 501.
            if name.startswith("do_"):
                return self._not_allowed
            raise AttributeError(name)

        def _json(self, code: int, body: dict[str, str]) -> None:
            self._send(code, json.dumps(body).encode() + b"\n", "application/json")

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            if code == 405:
                self.send_header("Allow", "GET")
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("tech server: " + format, *args)

    return Handler
