"""floxy benchmarks: wall time, throughput and memory, measured here and never by timed tests.

    .venv/bin/python bench/run.py                    # every benchmark, full size (a few minutes)
    .venv/bin/python bench/run.py --quick            # smaller sizes (under 2 minutes)
    .venv/bin/python bench/run.py --only yaml_load   # one benchmark (repeatable option)
    .venv/bin/python bench/run.py --json out.json    # also write the results as JSON

Each benchmark runs in a fresh child process (`run.py --child NAME`), so imports, caches and the
peak RSS of one benchmark do not leak into the next. See bench/README.md for what each figure
means and the figures measured on the reference machine.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
WORKLOADS = BENCH / "workloads"
THREE_STEPS = WORKLOADS / "three_steps.yaml"
ORDER_SAGA = ROOT / "examples" / "yaml" / "order_saga.yaml"
MARK = "@@floxy-bench@@ "
TERMINAL = ("completed", "failed", "cancelled", "aborted")

if str(ROOT) not in sys.path:  # `tests.pgcluster` and the floxy packages from the checkout
    sys.path.insert(0, str(ROOT))


# -- helpers ----------------------------------------------------------------------------------


class Results:
    """Rows of (benchmark, metric, value, unit) plus free-form details for the JSON output."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.rows: list[dict[str, Any]] = []
        self.details: dict[str, Any] = {}

    def add(self, metric: str, value: float, unit: str) -> None:
        self.rows.append({"benchmark": self.name, "metric": metric, "value": value, "unit": unit})

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "rows": self.rows, "details": self.details}


def percentile(values: list[float], p: float) -> float:
    """Linear-interpolated percentile (p in 0..100), the same as numpy's default."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def cpu_seconds() -> float:
    """User + system CPU seconds of this process (all threads) so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mib() -> float:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def log(message: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def floxyctl_path() -> str:
    beside = Path(sys.executable).with_name("floxyctl")
    if beside.exists():
        return str(beside)
    found = shutil.which("floxyctl")
    if found is None:
        raise SystemExit("floxyctl not found: run with the project's venv (.venv/bin/python)")
    return found


def timed_runs(
    argv: list[str], n: int, *, env: dict[str, str] | None = None, cpu: list[float] | None = None
) -> list[float]:
    """Wall seconds of `n` runs of `argv` (stdin /dev/null, output discarded), after a warm-up.

    `cpu`, when given, receives the CPU seconds (user + system) of each run, its children
    included: a figure that a busy machine disturbs much less than the wall time.
    """
    times: list[float] = []
    for i in range(n + 1):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            cwd=ROOT,
            check=False,
        )
        elapsed = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            raise RuntimeError(
                f"{' '.join(argv)} exited {done.returncode}: {done.stderr.decode()[-2000:]}"
            )
        if i > 0:  # the first run warms the page cache and .pyc files
            times.append(elapsed)
            if cpu is not None:
                cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return times


def importtime(argv: list[str]) -> list[tuple[int, str, int]]:
    """Run `python -X importtime ...`; (depth, module, cumulative µs) for every import line."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *argv],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        check=True,
        text=True,
    )
    rows = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        _, cumulative, name = line[len("import time:") :].split("|", 2)
        depth = (len(name) - len(name.lstrip(" ")) - 1) // 2
        rows.append((depth, name.strip(), int(cumulative)))
    return rows


class Noop:
    """A Python handler that returns its input: measures the engine, not the handler."""

    def __init__(self, name: str, counter: Callable[[], int]) -> None:
        self.name = name
        self._count = counter

    def __call__(self, ctx: Any, data: Any) -> Any:
        self._count()
        return data


def counting() -> tuple[Callable[[], int], Callable[[], int]]:
    """A thread-safe call counter: (increment, read)."""
    box = itertools.count()
    lock = threading.Lock()
    calls = [0]

    def inc() -> int:
        with lock:
            calls[0] += 1
            return next(box)

    return inc, lambda: calls[0]


def linear_flow(name: str, steps: int, handler: str = "noop") -> Any:
    from floxy_core.builder import Builder

    builder = Builder(name)
    for i in range(steps):
        builder.step(f"s{i + 1}", handler)
    return builder.build()


def wait_terminal_memory(store: Any, count: int, timeout: float) -> None:
    """Poll the in-memory store every 10 ms until `count` instances are terminal."""
    deadline = time.monotonic() + timeout
    while True:
        done = sum(1 for i in store.list_instances() if i.status.terminal)
        if done >= count:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {done}/{count} instances finished in {timeout:.0f}s")
        time.sleep(0.01)


# -- 1. cli_run_3step -------------------------------------------------------------------------


def bench_cli_run_3step(quick: bool) -> Results:
    r = Results("cli_run_3step")
    n = 5 if quick else 20
    ctl = floxyctl_path()
    env = None  # the caller's environment, as a user would have it

    log(f"floxyctl run -f {THREE_STEPS.relative_to(ROOT)} x{n}")
    run_cpu: list[float] = []
    runs = timed_runs([ctl, "run", "-f", str(THREE_STEPS)], n, env=env, cpu=run_cpu)
    r.add("run_wall_median", statistics.median(runs) * 1000, "ms")
    r.add("run_wall_p90", percentile(runs, 90) * 1000, "ms")
    r.add("run_wall_min", min(runs) * 1000, "ms")
    r.add("run_cpu_median", statistics.median(run_cpu) * 1000, "ms")

    log(f"floxyctl run x{n} without floxy's workflow-file cache (FLOXY_NO_CACHE=1)")
    uncached = timed_runs(
        [ctl, "run", "-f", str(THREE_STEPS)], n, env={**os.environ, "FLOXY_NO_CACHE": "1"}
    )
    r.add("run_wall_median_no_spec_cache", statistics.median(uncached) * 1000, "ms")

    log(f"floxyctl run x{max(3, n // 4)} without a bytecode cache (PYTHONDONTWRITEBYTECODE=1)")
    no_cache = {k: v for k, v in os.environ.items() if k != "PYTHONPYCACHEPREFIX"}
    no_cache["PYTHONDONTWRITEBYTECODE"] = "1"
    cold = timed_runs([ctl, "run", "-f", str(THREE_STEPS)], max(3, n // 4), env=no_cache)
    r.add("run_wall_median_no_pyc", statistics.median(cold) * 1000, "ms")

    log(f"floxyctl --help x{n}")
    help_cpu: list[float] = []
    helps = timed_runs([ctl, "--help"], n, env=env, cpu=help_cpu)
    r.add("help_wall_median", statistics.median(helps) * 1000, "ms")
    r.add("help_cpu_median", statistics.median(help_cpu) * 1000, "ms")

    log(f"python -c pass x{n} (interpreter start-up, the floor under every figure)")
    bare = timed_runs([sys.executable, "-c", "pass"], n, env=env)
    r.add("python_startup_median", statistics.median(bare) * 1000, "ms")

    log(f"python -X importtime -c 'import floxyctl.app' x{n}")
    app_us: list[int] = []
    last: list[tuple[int, str, int]] = []
    for _ in range(n + 1):
        last = importtime(["-c", "import floxyctl.app"])
        app_us.append(next(c for d, m, c in last if m == "floxyctl.app"))
    r.add("import_floxyctl_app_median", statistics.median(app_us[1:]) / 1000, "ms")

    # Everything `floxyctl run` imports, top-level modules only (their times include children).
    log("python -X importtime -m floxyctl run ... x3")
    totals: list[float] = []
    top: list[tuple[int, str, int]] = []
    for _ in range(3):
        rows = importtime(["-m", "floxyctl", "run", "-f", str(THREE_STEPS)])
        top = [row for row in rows if row[0] == 0]
        totals.append(sum(c for _, _, c in top) / 1000)
    r.add("run_import_total_median", statistics.median(totals), "ms")
    heaviest = sorted(top, key=lambda row: -row[2])[:12]
    r.details["run_top_level_imports_ms"] = {m: round(c / 1000, 1) for _, m, c in heaviest}
    # importtime prints children before their parent: the depth-1 rows just before the
    # depth-0 `floxyctl.app` row are what importing floxyctl.app itself costs.
    children: list[tuple[int, str, int]] = []
    for row in last:
        if row[0] == 0:
            if row[1] == "floxyctl.app":
                break
            children = []
        elif row[0] == 1:
            children.append(row)
    r.details["floxyctl_app_children_ms"] = {
        m: round(c / 1000, 1) for _, m, c in sorted(children, key=lambda row: -row[2])[:10]
    }
    r.details["run_wall_s"] = runs
    return r


# -- 2. engine_memory_throughput --------------------------------------------------------------


def bench_engine_memory_throughput(quick: bool) -> Results:
    import gc
    import tracemalloc

    from floxy_core.runtime import Runtime
    from floxy_core.storage.memory import MemoryStore

    r = Results("engine_memory_throughput")
    instances = 200 if quick else 500
    steps = 5
    workers = 4
    repeats = 1 if quick else 3
    flow = linear_flow("bench_mem", steps)

    cpu_used: list[float] = []

    def one_run(n: int) -> tuple[float, float, int]:
        inc, read = counting()
        store = MemoryStore(seed=1)
        runtime = Runtime(store, {"noop": Noop("noop", inc)}, workers=workers)
        runtime.register(flow)
        t0 = time.perf_counter()
        for i in range(n):
            runtime.start_instance(flow.id, {"i": i})
        t1 = time.perf_counter()
        c1 = cpu_seconds()
        runtime.start()
        try:
            wait_terminal_memory(store, n, timeout=120)
        finally:
            t2 = time.perf_counter()
            cpu_used.append(cpu_seconds() - c1)
            runtime.stop()
        bad = [i for i in store.list_instances() if i.status.value != "completed"]
        if bad:
            raise RuntimeError(f"{len(bad)} instances did not complete: {bad[0]}")
        return t1 - t0, t2 - t1, read()

    one_run(20)  # warm-up: imports, first-call paths
    rates, creates, cpu_per_step = [], [], []
    for k in range(repeats):
        create_s, run_s, calls = one_run(instances)
        rates.append(calls / run_s)
        creates.append(instances / create_s)
        cpu_per_step.append(cpu_used[-1] / calls)
        log(f"run {k + 1}/{repeats}: {calls} steps in {run_s:.2f}s = {calls / run_s:.0f} steps/s")
    r.add("steps_per_s", statistics.median(rates), "steps/s")
    r.add("cpu_per_step", statistics.median(cpu_per_step) * 1e6, "µs")
    r.add("instances_started_per_s", statistics.median(creates), "inst/s")
    r.details["steps_per_s_runs"] = rates
    # The backlog size matters: MemoryStore.claim scans every queued instance under its lock.
    for backlog in (100,) if quick else (100, 1500):
        _, run_s, calls = one_run(backlog)
        r.add(f"steps_per_s_backlog_{backlog}", calls / run_s, "steps/s")
        log(f"backlog {backlog}: {calls / run_s:.0f} steps/s")

    # Memory: a separate run under tracemalloc (which slows Python down, so it is not timed).
    gc.collect()
    inc, _ = counting()
    store = MemoryStore(seed=1)
    runtime = Runtime(store, {"noop": Noop("noop", inc)}, workers=workers)
    runtime.register(flow)
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    for i in range(instances):
        runtime.start_instance(flow.id, {"i": i})
    gc.collect()
    queued, _ = tracemalloc.get_traced_memory()
    runtime.start()
    try:
        wait_terminal_memory(store, instances, timeout=300)
    finally:
        runtime.stop()
    gc.collect()
    done, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    r.add("bytes_per_queued_instance", (queued - base) / instances, "B")
    r.add("bytes_per_completed_instance", (done - base) / instances, "B")
    r.add("peak_traced_per_instance", (peak - base) / instances, "B")
    r.add("peak_rss", peak_rss_mib(), "MiB")
    r.details["instances"] = instances
    r.details["steps_per_instance"] = steps
    return r


# -- 3. engine_bash_throughput ----------------------------------------------------------------


def bench_engine_bash_throughput(quick: bool) -> Results:
    from floxy_core.handlers.registry import build_handlers
    from floxy_core.runtime import Runtime
    from floxy_core.spec import load_workflow_file
    from floxy_core.storage.memory import MemoryStore

    r = Results("engine_bash_throughput")
    instances = 100 if quick else 300
    workers = 4
    repeats = 1 if quick else 3
    file = load_workflow_file(THREE_STEPS)
    flow = file.flow(None)
    handlers = build_handlers(file)
    steps = len([s for s in flow.steps.values() if s.handler])

    def one_run(n: int) -> float:
        store = MemoryStore(seed=1)
        runtime = Runtime(store, handlers, workers=workers)
        runtime.register(flow)
        for _ in range(n):
            runtime.start_instance(flow.id, {})
        t0 = time.perf_counter()
        runtime.start()
        try:
            wait_terminal_memory(store, n, timeout=300)
        finally:
            elapsed = time.perf_counter() - t0
            runtime.stop()
        bad = [i for i in store.list_instances() if i.status.value != "completed"]
        if bad:
            raise RuntimeError(f"{len(bad)} instances did not complete: {bad[0]}")
        return elapsed

    one_run(4)
    rates = []
    for k in range(repeats):
        elapsed = one_run(instances)
        rates.append(instances * steps / elapsed)
        log(f"run {k + 1}/{repeats}: {instances * steps} bash steps in {elapsed:.2f}s")
    r.add("steps_per_s", statistics.median(rates), "steps/s")
    r.add("ms_per_step_per_worker", workers * 1000 / statistics.median(rates), "ms")
    r.add("peak_rss", peak_rss_mib(), "MiB")
    r.details["steps_per_s_runs"] = rates
    r.details["instances"] = instances
    return r


# -- 4. postgres_throughput -------------------------------------------------------------------


_WORKER_SUFFIXES = tuple(f"-w{i}" for i in range(1, 100))


def thread_kind() -> str:
    """Which runtime thread is running: worker, watcher, listener or main (the benchmark)."""
    name = threading.current_thread().name
    if name.endswith(_WORKER_SUFFIXES):
        return "worker"
    if name == "floxy-watcher":
        return "watcher"
    if name == "floxy-listen":
        return "listener"
    return "main"


class RoundTrips:
    """Counts client→server round trips of psycopg (statements and BEGIN/COMMIT) per thread kind.

    Patches `Cursor.execute` (every `conn.execute`/`cur.execute` goes through it; its wall time
    is kept per query name), `Cursor.executemany` (pipelined: one round trip per call) and
    `BaseConnection._exec_command` (BEGIN, COMMIT, ROLLBACK sent by psycopg itself; counted
    only, their time lands in the `transaction()` block). Statements queued inside an explicit
    `conn.pipeline()` block would be counted one each although they share a round trip.
    """

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()
        self.seconds: Counter[tuple[str, str]] = Counter()
        self.enabled = False
        self._lock = threading.Lock()

    def install(self) -> None:
        import psycopg
        from psycopg._connection_base import BaseConnection

        from floxy_core.storage.postgres.sql import queries

        by_text = {text: name for name, text in queries().items()}
        counts, seconds, lock, owner = self.counts, self.seconds, self._lock, self

        original_execute = psycopg.Cursor.execute
        original_executemany = psycopg.Cursor.executemany
        original_command = BaseConnection._exec_command

        def label_of(query: Any) -> str:
            label = by_text.get(query) if isinstance(query, str) else None
            return label or (query.split()[0] if isinstance(query, str) else "sql")

        def execute(self: Any, query: Any, params: Any = None, **kw: Any) -> Any:
            if not owner.enabled:
                return original_execute(self, query, params, **kw)
            t0 = time.perf_counter()
            try:
                return original_execute(self, query, params, **kw)
            finally:
                elapsed = time.perf_counter() - t0
                key = (thread_kind(), label_of(query))
                with lock:
                    counts[key] += 1
                    seconds[key] += elapsed

        def executemany(self: Any, query: Any, params_seq: Any, **kw: Any) -> Any:
            # One round trip however many rows: psycopg pipelines executemany (libpq >= 14).
            if not owner.enabled:
                return original_executemany(self, query, params_seq, **kw)
            t0 = time.perf_counter()
            try:
                return original_executemany(self, query, params_seq, **kw)
            finally:
                elapsed = time.perf_counter() - t0
                key = (thread_kind(), label_of(query) + " (executemany)")
                with lock:
                    counts[key] += 1
                    seconds[key] += elapsed

        def command(self: Any, cmd: Any, *args: Any, **kw: Any) -> Any:
            if owner.enabled:
                text = cmd.decode() if isinstance(cmd, bytes) else str(cmd)
                with lock:
                    counts[(thread_kind(), text.split()[0].upper())] += 1
            return original_command(self, cmd, *args, **kw)

        psycopg.Cursor.execute = execute  # type: ignore[method-assign]
        psycopg.Cursor.executemany = executemany  # type: ignore[method-assign]
        BaseConnection._exec_command = command  # type: ignore[method-assign]

    def per_step(self, steps: int) -> dict[str, dict[str, float]]:
        """{"thread:query": {"per_step": n, "ms_each": t}} for the runtime's threads."""
        out = {}
        for key, n in self.counts.most_common():
            if key[0] == "main":
                continue
            # BEGIN/COMMIT are counted only: their time lands in the `transaction()` block.
            ms = round(self.seconds[key] * 1000 / n, 3) if key in self.seconds else None
            out[f"{key[0]}:{key[1]}"] = {"per_step": round(n / steps, 3), "ms_each": ms}
        return out


def server_cpu_seconds(datadir: str | None) -> float | None:
    """CPU seconds used so far by the live backends of the throwaway server (None: unknown)."""
    if datadir is None:
        return None
    try:
        postmaster = Path(datadir, "data", "postmaster.pid").read_text().split()[0]
        tick = os.sysconf("SC_CLK_TCK")
        total = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[1] == postmaster:  # ppid; then utime, stime are fields 14, 15 of stat
                total += int(fields[11]) + int(fields[12])
        return total / tick
    except (OSError, IndexError, ValueError):
        return None


@contextlib.contextmanager
def postgres_database() -> Iterator[tuple[str, Any]]:
    """(dsn, cluster): FLOXY_BENCH_DSN, migrated, or a database on a throwaway cluster.

    The cluster is stopped on the way out, also when the benchmark is terminated (SIGTERM is
    held back while the cluster starts, so it cannot be left running half-started).
    """
    import signal

    import psycopg

    dsn = os.environ.get("FLOXY_BENCH_DSN")
    if dsn:
        from floxy_core.storage.postgres.migrations import migrate

        with psycopg.connect(dsn, autocommit=True) as conn:
            migrate(conn)
        yield dsn, None
        return
    from tests.pgcluster import start_cluster

    log("starting a throwaway PostgreSQL (tests/pgcluster.py)")
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        cluster = start_cluster()
    except BaseException:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        raise
    try:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)  # a held-back SIGTERM fires here
        yield cluster.create_database(), cluster
    finally:
        cluster.stop()


def bench_postgres_throughput(quick: bool) -> Results:
    import psycopg

    from floxy_core.runtime import Runtime
    from floxy_core.storage.postgres import PostgresStore

    r = Results("postgres_throughput")
    instances = 100 if quick else 300
    steps = 5
    workers = 4
    light = 8 if quick else 20  # instances run one at a time for the unloaded latency
    flow = linear_flow("bench_pg", steps)

    t0 = time.perf_counter()
    with postgres_database() as (dsn, cluster):
        r.details["server"] = (
            "FLOXY_BENCH_DSN"
            if cluster is None
            else "throwaway cluster (fsync=off, synchronous_commit=off)"
        )
        log(f"database ready in {time.perf_counter() - t0:.1f}s")
        trips = RoundTrips()
        trips.install()
        store = PostgresStore(dsn, max_size=workers + 4)
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                r.details["server_version"] = conn.execute("SHOW server_version").fetchone()[0]
            inc, read = counting()
            runtime = Runtime(store, {"noop": Noop("noop", inc)}, workers=workers)
            runtime.register(flow)

            def finished(ids: list[int]) -> int:
                with store.pool.connection() as conn:
                    row = conn.execute(
                        "SELECT count(*) FROM workflows.workflow_instances "
                        "WHERE id = ANY(%s) AND status = ANY(%s)",
                        (ids, list(TERMINAL)),
                    ).fetchone()
                return int(row[0])

            def latencies(ids: list[int]) -> tuple[list[float], list[float]]:
                with store.pool.connection() as conn:
                    rows = conn.execute(
                        "SELECT extract(epoch FROM completed_at - created_at), "
                        "       extract(epoch FROM completed_at - started_at) "
                        "FROM workflows.workflow_steps WHERE instance_id = ANY(%s) "
                        "AND status = 'completed'",
                        (ids,),
                    ).fetchall()
                return [float(a) for a, _ in rows], [float(b) for _, b in rows]

            def first_step_latencies(ids: list[int]) -> list[float]:
                """Queue→completion of each instance's first step: includes the NOTIFY wake-up."""
                with store.pool.connection() as conn:
                    rows = conn.execute(
                        "SELECT extract(epoch FROM completed_at - created_at) "
                        "FROM workflows.workflow_steps WHERE instance_id = ANY(%s) "
                        "AND step_name = 's1' AND status = 'completed'",
                        (ids,),
                    ).fetchall()
                return [float(a) for (a,) in rows]

            # Warm-up: connections, prepared statements, the definition cache.
            warm = [runtime.start_instance(flow.id, {"warm": i}) for i in range(8)]
            runtime.start()
            while finished(warm) < len(warm):
                time.sleep(0.02)

            # Unloaded latency: one instance at a time, the next started when the previous ends.
            log(f"unloaded latency: {light} instances one at a time")
            solo: list[int] = []
            for i in range(light):
                instance_id = runtime.start_instance(flow.id, {"solo": i})
                solo.append(instance_id)
                deadline = time.monotonic() + 30
                seen = -1
                while store.get_instance(instance_id).status.value not in TERMINAL:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"solo instance {instance_id} did not finish")
                    with runtime.changed:
                        runtime.changed.wait_for(lambda s=seen: runtime.generation != s, 0.05)
                        seen = runtime.generation
            queue_to_done, _ = latencies(solo)
            first = first_step_latencies(solo)
            r.add("unloaded_step_latency_p50", percentile(queue_to_done, 50) * 1000, "ms")
            r.add("unloaded_step_latency_p99", percentile(queue_to_done, 99) * 1000, "ms")
            r.add("unloaded_first_step_p50", percentile(first, 50) * 1000, "ms")
            runtime.stop()

            # Throughput: a backlog of `instances` created first, then drained by the workers.
            log(f"throughput: creating {instances} instances x {steps} steps")
            c0 = time.perf_counter()
            runtime = Runtime(store, {"noop": Noop("noop", inc)}, workers=workers)
            ids = [runtime.start_instance(flow.id, {"i": i}) for i in range(instances)]
            create_s = time.perf_counter() - c0
            before = read()
            trips.enabled = True
            t1 = time.perf_counter()
            c1 = cpu_seconds()
            datadir = cluster.datadir if cluster is not None else None
            s1 = server_cpu_seconds(datadir)
            runtime.start()
            while finished(ids) < len(ids):
                if time.perf_counter() - t1 > 300:
                    raise RuntimeError("postgres backlog did not drain in 300 s")
                time.sleep(0.05)
            elapsed = time.perf_counter() - t1
            client_cpu = cpu_seconds() - c1
            s2 = server_cpu_seconds(datadir)
            trips.enabled = False
            runtime.stop()
            calls = read() - before
            log(f"{calls} steps in {elapsed:.2f}s = {calls / elapsed:.0f} steps/s")
            with store.pool.connection() as conn:
                statuses = dict(
                    conn.execute(
                        "SELECT status, count(*) FROM workflows.workflow_instances "
                        "WHERE id = ANY(%s) GROUP BY status",
                        (ids,),
                    ).fetchall()
                )
            if statuses != {"completed": instances}:
                raise RuntimeError(f"not every instance completed: {statuses}")
            queue_to_done, claim_to_done = latencies(ids)
            r.add("steps_per_s", calls / elapsed, "steps/s")
            r.add("client_cpu_per_step", client_cpu * 1000 / calls, "ms")
            if s1 is not None and s2 is not None:
                r.add("server_cpu_per_step", (s2 - s1) * 1000 / calls, "ms")
            r.add("instances_started_per_s", instances / create_s, "inst/s")
            r.add("backlog_step_latency_p50", percentile(queue_to_done, 50) * 1000, "ms")
            r.add("backlog_step_latency_p99", percentile(queue_to_done, 99) * 1000, "ms")
            r.add("claim_to_done_p50", percentile(claim_to_done, 50) * 1000, "ms")
            r.add("claim_to_done_p99", percentile(claim_to_done, 99) * 1000, "ms")
            engine = {k: v for k, v in trips.counts.items() if k[0] != "main"}
            r.add("round_trips_per_step", sum(engine.values()) / calls, "trips")
            r.add(
                "worker_round_trips_per_step",
                sum(v for k, v in engine.items() if k[0] == "worker") / calls,
                "trips",
            )
            r.details["round_trips_per_step_by_query"] = trips.per_step(calls)
            with store.pool.connection() as conn:
                r.details["partitions_per_partitioned_table"] = conn.execute(
                    "SELECT count(*) FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent "
                    "WHERE p.relname = 'workflow_steps'"
                ).fetchone()[0]
            r.add("peak_rss", peak_rss_mib(), "MiB")
            r.details["instances"] = instances
            r.details["steps_per_instance"] = steps
        finally:
            store.close()
    return r


# -- 5. yaml_load -----------------------------------------------------------------------------


def generated_yaml(steps: int) -> str:
    """A flow of `steps` linear steps sharing 10 bash handlers, with a compensation every 10."""
    lines = [
        f"# generated by bench/run.py: {steps} linear steps",
        "handlers:",
    ]
    for h in range(10):
        lines += [f"  - name: h{h}", "    exec: echo '{}'"]
    lines += ["  - name: undo", "    exec: echo '{}'", "flows:", "  - name: big", "    steps:"]
    for i in range(steps):
        lines += [f"      - name: step_{i:04d}", f"        handler: h{i % 10}"]
        if i % 10 == 0:
            lines.append("        on_failure: undo")
        if i % 7 == 0:
            lines += ["        max_retries: 2", "        retry_delay: 10ms"]
    return "\n".join(lines) + "\n"


def bench_yaml_load(quick: bool) -> Results:
    """Load + validate + compile. The main figures bypass floxy's workflow-file cache
    (FLOXY_NO_CACHE=1, read at each call); `*_cached_*` rows show a cache hit."""
    r = Results("yaml_load")
    os.environ["FLOXY_NO_CACHE"] = "1"
    t0 = time.perf_counter()
    from floxy_core.spec import load_workflow_file

    import_s = time.perf_counter() - t0
    n_small = 20 if quick else 100
    n_big = 3 if quick else 10

    def timed(path: Path, n: int) -> list[float]:
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            load_workflow_file(path)
            out.append(time.perf_counter() - t0)
        return out

    t0 = time.perf_counter()
    load_workflow_file(ORDER_SAGA)
    cold = time.perf_counter() - t0
    r.add("import_floxy_core_spec", import_s * 1000, "ms")
    r.add("order_saga_first_load", cold * 1000, "ms")
    r.add("order_saga_median", statistics.median(timed(ORDER_SAGA, n_small)) * 1000, "ms")

    with tempfile.TemporaryDirectory(prefix="floxy-bench-") as tmp:
        big = Path(tmp) / "steps_500.yaml"
        big.write_text(generated_yaml(500), encoding="utf-8")
        times = timed(big, n_big)
        count = len(load_workflow_file(big).flow(None).steps)
        r.add("steps_500_median", statistics.median(times) * 1000, "ms")
        r.add("steps_500_per_step", statistics.median(times) * 1e6 / 500, "µs")

        os.environ.pop("FLOXY_NO_CACHE")
        os.environ["FLOXY_CACHE_DIR"] = os.path.join(tmp, "cache")
        load_workflow_file(ORDER_SAGA)  # fills the cache (no-op if this floxy has none)
        load_workflow_file(big)
        r.add(
            "order_saga_cached_median",
            statistics.median(timed(ORDER_SAGA, n_small)) * 1000,
            "ms",
        )
        r.add("steps_500_cached_median", statistics.median(timed(big, n_big)) * 1000, "ms")
    r.details["steps_500_compiled_step_count"] = count
    return r


# -- driver -----------------------------------------------------------------------------------

BENCHMARKS: dict[str, Callable[[bool], Results]] = {
    "cli_run_3step": bench_cli_run_3step,
    "engine_memory_throughput": bench_engine_memory_throughput,
    "engine_bash_throughput": bench_engine_bash_throughput,
    "postgres_throughput": bench_postgres_throughput,
    "yaml_load": bench_yaml_load,
}


def isolated_env() -> None:
    """Caches as a user has them: bytecode yes, floxy's workflow-file cache private and empty.

    With PYTHONDONTWRITEBYTECODE set and an editable install, every start would compile
    floxy's sources again (+60-100 ms per command) — not what a user sees. The cache lives in a
    temp directory (PYTHONPYCACHEPREFIX), so the checkout stays untouched; the warm-up runs
    fill it. `cli_run_3step` also reports the uncached figure.
    """
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ.setdefault(
        "PYTHONPYCACHEPREFIX", os.path.join(tempfile.gettempdir(), "floxy-bench-pycache")
    )
    # floxy's cache of validated workflow files (floxy_core/spec/cache.py): a private, empty
    # one per benchmark run, so that results do not depend on (or fill) ~/.cache/floxy.
    os.environ.pop("FLOXY_NO_CACHE", None)
    os.environ["FLOXY_CACHE_DIR"] = tempfile.mkdtemp(prefix="floxy-bench-spec-cache-")


def run_child(name: str, quick: bool, timeout: float) -> dict[str, Any]:
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", name]
    if quick:
        argv.append("--quick")
    t0 = time.perf_counter()
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=ROOT) as child:
        try:
            stdout, _ = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            # SIGTERM first: the child turns it into SystemExit, so `finally` blocks run and a
            # throwaway PostgreSQL is stopped instead of being left behind.
            child.terminate()
            try:
                child.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.communicate()
            raise RuntimeError(f"benchmark {name} did not finish within {timeout:.0f}s") from None
    for line in reversed(stdout.splitlines()):
        if line.startswith(MARK):
            result: dict[str, Any] = json.loads(line[len(MARK) :])
            result["seconds"] = round(time.perf_counter() - t0, 1)
            return result
    raise RuntimeError(f"benchmark {name} failed (exit {child.returncode}); see stderr above")


def fmt(value: float) -> str:
    if value != value:  # NaN
        return "n/a"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def table(rows: Iterable[dict[str, Any]]) -> str:
    rows = list(rows)
    head = ("benchmark", "metric", "value", "unit")
    cells = [(r["benchmark"], r["metric"], fmt(r["value"]), r["unit"]) for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(head)]
    out = []
    for j, row in enumerate([head, *cells]):
        out.append(
            "  ".join(
                (c.rjust(widths[i]) if i == 2 and j > 0 else c.ljust(widths[i]))
                for i, c in enumerate(row)
            ).rstrip()
        )
        if j == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (< 2 min in all)")
    parser.add_argument(
        "--only", action="append", choices=sorted(BENCHMARKS), metavar="NAME",
        help=f"run only this benchmark (repeatable): {', '.join(BENCHMARKS)}",
    )  # fmt: skip
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        import signal

        def terminated(signum: int, frame: Any) -> None:
            raise SystemExit(f"benchmark {args.child} terminated (signal {signum})")

        signal.signal(signal.SIGTERM, terminated)
        result = BENCHMARKS[args.child](args.quick)
        print(MARK + json.dumps(result.as_json()), flush=True)
        return 0

    names = args.only or list(BENCHMARKS)
    no_pyc_env = os.environ.get("PYTHONDONTWRITEBYTECODE")
    isolated_env()
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "commit": git_commit(),
        "quick": args.quick,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}",
        "pycache_prefix": os.environ["PYTHONPYCACHEPREFIX"],
        "loadavg_before": [round(x, 2) for x in os.getloadavg()],
        "caller_had_PYTHONDONTWRITEBYTECODE": bool(no_pyc_env),
    }
    print(
        f"floxy benchmarks ({'quick' if args.quick else 'full'}) at {meta['commit']}, "
        f"{meta['date']}, Python {meta['python']}, {meta['machine']}, "
        f"load average {meta['loadavg_before'][0]}",
        file=sys.stderr,
    )
    if meta["loadavg_before"][0] > 0.5 * (os.cpu_count() or 1):
        print("  warning: the machine is busy; figures will be noisy", file=sys.stderr)
    results, failed = [], []
    started = time.perf_counter()
    for name in names:
        print(f"- {name}", file=sys.stderr, flush=True)
        try:
            results.append(run_child(name, args.quick, timeout=240 if args.quick else 600))
        except RuntimeError as exc:
            print(f"  FAILED: {exc}", file=sys.stderr)
            failed.append(name)
    meta["total_seconds"] = round(time.perf_counter() - started, 1)
    meta["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    shutil.rmtree(os.environ["FLOXY_CACHE_DIR"], ignore_errors=True)
    print()
    print(table(row for res in results for row in res["rows"]))
    print(
        f"\n{len(results)} benchmark(s) in {meta['total_seconds']}s at {meta['commit']}, "
        f"load average {meta['loadavg_before'][0]} -> {meta['loadavg_after'][0]}",
        end="",
    )
    print(f"; FAILED: {', '.join(failed)}" if failed else "")
    if args.json:
        document = {"meta": meta, "benchmarks": results, "failed": failed}
        Path(args.json).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        print(f"results written to {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
