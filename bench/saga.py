"""The workloads behind `python -m bench` (see `bench/__main__.py` and docs/performance.md)."""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.run import (
    TERMINAL,
    THREE_STEPS,
    cpu_seconds,
    floxyctl_path,
    git_commit,
    isolated_env,
    linear_flow,
    log,
    percentile,
    postgres_database,
    server_cpu_seconds,
    timed_runs,
)
from tests.pgcluster import server_bindir

DEFAULT_INSTANCES = {"W1": 1000, "W2": 200, "W4": 500, "history": 1000, "memory": 10_000}
HISTORY_STEPS = 1_000_000

PGBENCH_SCRIPT = """\
BEGIN;
DELETE FROM workflows.workflow_queue WHERE id = (
    SELECT id FROM workflows.workflow_queue WHERE scheduled_at <= now()
    ORDER BY scheduled_at, id LIMIT 1 FOR UPDATE SKIP LOCKED)
RETURNING instance_id AS iid, step_id AS sid, instance_created_at AS ica \\gset
UPDATE workflows.workflow_steps SET status = 'completed', completed_at = now()
WHERE id = :sid AND created_at = :ica;
INSERT INTO workflows.workflow_events (instance_id, step_id, event_type, payload)
VALUES (:iid, :sid, 'step_completed', '{}');
INSERT INTO workflows.workflow_queue (instance_id, instance_created_at, step_id, scheduled_at)
VALUES (:iid, :ica, :sid, now());
COMMIT;
"""

MEMORY_YAML = """\
handlers:
  - name: noop
    exec: echo '{}'
flows:
  - name: mem
    steps:
      - type: human
        name: approve
      - name: after
        handler: noop
"""


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


# -- handlers and flows ---------------------------------------------------------------------------


class Calls:
    """No-op handlers that count their calls and remember when each instance's calls happened."""

    def __init__(self) -> None:
        self.count = 0
        self.times: dict[int, list[float]] = {}
        self._lock = threading.Lock()

    def handler(self, name: str, fail: bool = False) -> Any:
        from floxy_core.errors import HandlerError

        def call(ctx: Any, data: Any) -> Any:
            at = time.perf_counter()
            with self._lock:
                self.count += 1
                self.times.setdefault(ctx.instance_id, []).append(at)
            if fail:
                raise HandlerError("planned failure", retryable=False)
            return data

        call.name = name  # type: ignore[attr-defined]
        return call


def fanout8() -> Any:
    from floxy_core.builder import Builder

    branches = [lambda b, i=i: b.step(f"t{i}", "noop") for i in range(8)]
    return Builder("fanout8").fork("fan", *branches).join("fan_join").step("after", "noop").build()


def compensate3() -> Any:
    from floxy_core.builder import Builder, Options

    return (
        Builder("compensate3")
        .step("s1", "noop")
        .on_failure("undo1", "noop")
        .step("s2", "noop")
        .on_failure("undo2", "noop")
        .step("s3", "fail", Options(max_retries=0))
        .build()
    )


# -- the database side ----------------------------------------------------------------------------


def wal_position(dsn: str) -> str:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT pg_current_wal_flush_lsn()::text").fetchone()
    assert row is not None
    return str(row[0])


def wal_between(dsn: str, cluster: Any, start: str) -> tuple[int, int]:
    """(commit records, WAL bytes) written since `start`, read from the WAL itself.

    Only transactions that wrote something leave a commit record, so read-only statements
    (polls, idle `next_due` checks) do not count: this is what a step costs in durable commits.
    """
    import psycopg

    time.sleep(0.5)  # the WAL writer flushes every 200 ms (synchronous_commit=off)
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT pg_current_wal_flush_lsn()::text, pg_current_wal_flush_lsn() - %s::pg_lsn",
            (start,),
        ).fetchone()
    assert row is not None
    end, size = str(row[0]), int(row[1])
    waldir = str(Path(cluster.datadir, "data", "pg_wal"))
    done = subprocess.run(
        [str(Path(server_bindir(), "pg_waldump")), "-p", waldir, "-s", start, "-e", end,
         "--stats=record"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    found = re.search(r"^Transaction/COMMIT\s+(\d+)", done.stdout, re.M)
    if found is None:
        raise RuntimeError(f"pg_waldump gave no commit count: {done.stdout}{done.stderr}")
    return int(found.group(1)), size


def terminal_count(conn: Any, ids: list[int]) -> int:
    row = conn.execute(
        "SELECT count(*) FROM workflows.workflow_instances WHERE id = ANY(%s) AND status = ANY(%s)",
        (ids, list(TERMINAL)),
    ).fetchone()
    return int(row[0])


def engine_run(
    cluster: Any,
    dsn: str,
    flow: Any,
    instances: int,
    workers: int,
    expect: str,
    engine_steps_per_instance: int = 0,
) -> dict[str, float]:
    """One timed drain of `instances` queued instances by warm workers in this process."""
    import psycopg

    from floxy_core.runtime import Runtime
    from floxy_core.storage.postgres import PostgresStore

    calls = Calls()
    handlers = {"noop": calls.handler("noop"), "fail": calls.handler("fail", fail=True)}
    store = PostgresStore(dsn, max_size=workers + 2)
    try:
        runtime = Runtime(store, handlers, workers=workers)
        runtime.register(flow)
        with psycopg.connect(dsn, autocommit=True) as poll:
            warm = [runtime.start_instance(flow.id, {"warm": i}) for i in range(workers * 2)]
            runtime.start()
            while terminal_count(poll, warm) < len(warm):
                time.sleep(0.02)
            runtime.stop()
            per_instance = calls.count // len(warm)  # the flows are deterministic
            ids = [runtime.start_instance(flow.id, {"i": i}) for i in range(instances)]
            before_calls = calls.count
            start = wal_position(dsn)
            server0 = server_cpu_seconds(cluster.datadir)
            cpu0 = cpu_seconds()
            t0 = time.perf_counter()
            runtime.start()
            # Wait on the in-process call count first: polling the database all along would
            # add its own load to what is measured.
            while calls.count - before_calls < per_instance * instances or (
                terminal_count(poll, ids) < instances
            ):
                if time.perf_counter() - t0 > 600:
                    raise RuntimeError(f"{flow.id}: {instances} instances did not finish in 600 s")
                time.sleep(0.005)
            elapsed = time.perf_counter() - t0
            client_cpu = cpu_seconds() - cpu0
            server_cpu = (server_cpu_seconds(cluster.datadir) or 0.0) - (server0 or 0.0)
            runtime.stop()
            statuses = dict(
                poll.execute(
                    "SELECT status, count(*) FROM workflows.workflow_instances "
                    "WHERE id = ANY(%s) GROUP BY status",
                    (ids,),
                ).fetchall()
            )
    finally:
        store.close()
    if statuses != {expect: instances}:
        raise RuntimeError(f"{flow.id}: expected every instance {expect}, got {statuses}")
    commits, wal = wal_between(dsn, cluster, start)
    steps = calls.count - before_calls + engine_steps_per_instance * instances
    return {
        "seconds": elapsed,
        "steps": steps,
        "steps_per_s": steps / elapsed,
        "instances_per_s": instances / elapsed,
        "commits_per_step": commits / steps,
        "wal_bytes_per_step": wal / steps,
        "client_cpu_ms_per_step": client_cpu * 1000 / steps,
        "server_cpu_ms_per_step": server_cpu * 1000 / steps,
    }


def repeat(runs: int, one: Callable[[], dict[str, float]]) -> dict[str, Any]:
    samples = [one() for _ in range(runs)]
    keys = [k for k in samples[0] if k not in ("seconds", "steps")]
    out: dict[str, Any] = {k: spread([s[k] for s in samples]) for k in keys}
    out["steps"] = samples[0]["steps"]
    return out


def define(conn: Any, workflow_id: str) -> None:
    """A definition row that bulk-written instances can reference."""
    name, _, version = workflow_id.rpartition("-v")
    conn.execute(
        "INSERT INTO workflows.workflow_definitions (id, name, version, definition, content_hash)"
        " VALUES (%s, %s, %s, '{}', 'bench')",
        (workflow_id, name, int(version)),
    )


def pgbench_rate(cluster: Any, clients: int, seconds: int = 10) -> float:
    """Transactions per second of the minimal step transition at `clients` clients."""
    import psycopg

    dsn = cluster.create_database()
    with psycopg.connect(dsn, autocommit=True) as conn:
        define(conn, "pgbench-v1")
        conn.execute(
            "INSERT INTO workflows.workflow_instances (id, workflow_id, status, input, created_at)"
            " SELECT g, 'pgbench-v1', 'running', '{}', now() FROM generate_series(1, 2000) g"
        )
        conn.execute(
            "INSERT INTO workflows.workflow_steps (id, instance_id, step_name, step_type, status,"
            " input, idempotency_key, max_retries, created_at)"
            " SELECT i.id, i.id, 's1', 'task', 'pending', '{}', gen_random_uuid(), 3, i.created_at"
            " FROM workflows.workflow_instances i"
        )
        conn.execute(
            "INSERT INTO workflows.workflow_queue (instance_id, instance_created_at, step_id)"
            " SELECT instance_id, created_at, id FROM workflows.workflow_steps"
        )
        conn.execute("VACUUM ANALYZE")
    pgbench = shutil.which("pgbench") or str(Path(server_bindir(), "pgbench"))
    with tempfile.NamedTemporaryFile("w", suffix=".sql") as script:
        script.write(PGBENCH_SCRIPT)
        script.flush()
        done = subprocess.run(
            [
                pgbench,
                "-n",
                "-M",
                "prepared",
                "-c",
                str(clients),
                "-j",
                str(clients),
                "-T",
                str(seconds),
                "-f",
                script.name,
                dsn,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    cluster.drop_database(dsn)
    found = re.search(r"tps = ([\d.]+)", done.stdout)
    if done.returncode != 0 or found is None or "aborted" in done.stdout:
        raise RuntimeError(f"pgbench failed ({done.returncode}): {done.stdout}{done.stderr}")
    return float(found.group(1))


# -- workloads ------------------------------------------------------------------------------------


def w_pgbench(cluster: Any, runs: int) -> dict[str, Any]:
    return {
        "tps_1_client": spread([pgbench_rate(cluster, 1) for _ in range(runs)]),
        "tps_4_clients": spread([pgbench_rate(cluster, 4) for _ in range(runs)]),
    }


def w_engine(cluster: Any, name: str, workers: int, instances: int | None, runs: int) -> Any:
    count = instances or DEFAULT_INSTANCES[name]
    flow, expect, engine_steps = {
        "W1": (linear_flow("saga3", 3), "completed", 0),
        "W2": (fanout8(), "completed", 2),  # the fork and join rows are engine steps
        "W4": (compensate3(), "failed", 0),
    }[name]

    def one() -> dict[str, float]:
        dsn = cluster.create_database()
        try:
            return engine_run(cluster, dsn, flow, count, workers, expect, engine_steps)
        finally:
            cluster.drop_database(dsn)

    result = repeat(runs, one)
    result["instances"] = count
    return result


def w_history(cluster: Any, workers: int, instances: int | None, runs: int) -> dict[str, Any]:
    """W1 on tables that already hold a million completed steps (and their events)."""
    import psycopg

    count = instances or DEFAULT_INSTANCES["history"]
    dsn = cluster.create_database()
    try:
        n = HISTORY_STEPS // 3 + 1
        log(f"history: writing {n * 3:,} completed steps and {n * 6:,} events")
        t0 = time.perf_counter()
        with psycopg.connect(dsn, autocommit=True) as conn:
            define(conn, "old-v1")
            conn.execute(
                "INSERT INTO workflows.workflow_instances (id, workflow_id, status, input, output,"
                " created_at, started_at, completed_at) SELECT g, 'old-v1', 'completed', '{}',"
                " '{}', now() - interval '1 hour', now(), now() FROM generate_series(1, %s) g",
                (n,),
            )
            conn.execute("SELECT setval('workflows.workflow_instances_id_seq', %s)", (n,))
            conn.execute(
                "INSERT INTO workflows.workflow_steps (instance_id, step_name, step_type, status,"
                " input, output, idempotency_key, max_retries, created_at, started_at,"
                " completed_at) SELECT i, 's' || s, 'task', 'completed', '{}', '{}',"
                " gen_random_uuid(), 3, now() - interval '1 hour', now(), now()"
                " FROM generate_series(1, %s) i, generate_series(1, 3) s",
                (n,),
            )
            conn.execute(
                "INSERT INTO workflows.workflow_events (instance_id, step_id, event_type, payload,"
                " created_at) SELECT s.instance_id, s.id, e, '{}', s.created_at"
                " FROM workflows.workflow_steps s,"
                " unnest(ARRAY['step_started', 'step_completed']) e"
            )
            conn.execute("VACUUM ANALYZE")
        log(f"history written in {time.perf_counter() - t0:.0f}s")
        flow = linear_flow("saga3_history", 3)
        figures = repeat(runs, lambda: engine_run(cluster, dsn, flow, count, workers, "completed"))
    finally:
        cluster.drop_database(dsn)
    return {"history_steps": n * 3, "instances": count, **figures}


def w_latency(cluster: Any, workers: int, runs: int) -> dict[str, Any]:
    """One instance at a time on idle workers woken by NOTIFY: start -> first call, call -> call."""
    from floxy_core.runtime import Runtime
    from floxy_core.storage.postgres import PostgresStore

    dsn = cluster.create_database()
    calls = Calls()
    store = PostgresStore(dsn, max_size=workers + 2)
    first: list[float] = []
    between: list[float] = []
    try:
        runtime = Runtime(store, {"noop": calls.handler("noop")}, workers=workers)
        flow = linear_flow("saga3", 3)
        runtime.register(flow)
        runtime.start()
        for i in range(10 + 50 * runs):
            t0 = time.perf_counter()
            iid = runtime.start_instance(flow.id, {"i": i})
            deadline = time.monotonic() + 30
            while len(calls.times.get(iid, [])) < 3:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"latency: instance {iid} did not finish")
                time.sleep(0.001)
            if i >= 10:  # the first ten warm up connections and prepared statements
                times = calls.times[iid]
                first.append(times[0] - t0)
                between += [b - a for a, b in itertools.pairwise(times)]
            time.sleep(0.05)  # the workers go back to waiting for a NOTIFY
        runtime.stop()
    finally:
        store.close()
        cluster.drop_database(dsn)
    return {
        "start_to_first_call_ms": {
            "p50": percentile(first, 50) * 1000,
            "p99": percentile(first, 99) * 1000,
        },
        "step_to_step_ms": {
            "p50": percentile(between, 50) * 1000,
            "p99": percentile(between, 99) * 1000,
        },
        "samples": len(first),
    }


def w_cli(runs: int) -> dict[str, Any]:
    """W3: `floxyctl run` of three bash steps against Python start-up plus three bash spawns."""
    isolated_env()  # bytecode written (to a private prefix) as an install has it; a private cache
    env = {k: v for k, v in os.environ.items() if k == "FLOXY_CACHE_DIR" or k[:6] != "FLOXY_"}
    env.update(NO_COLOR="1", FLOXY_NO_PLUGINS="1")
    anchor_code = (
        "import subprocess\n"
        "for _ in range(3): subprocess.run(['bash', '-c', 'echo {}'], stdout=subprocess.DEVNULL)"
    )
    w3: list[float] = []
    anchor: list[float] = []
    for _ in range(runs):
        w3.append(
            statistics.median(
                timed_runs([floxyctl_path(), "run", "-f", str(THREE_STEPS)], 30, env=env)
            )
        )
        anchor.append(
            statistics.median(timed_runs([sys.executable, "-c", anchor_code], 30, env=env))
        )
    return {
        "run_ms": spread([t * 1000 for t in w3]),
        "anchor_ms": spread([t * 1000 for t in anchor]),
    }


def w_memory(cluster: Any, instances: int | None) -> dict[str, Any]:
    """floxyd (4 workers) with `instances` instances waiting on a human step: its resident set."""
    from floxy_core.runtime import Runtime
    from floxy_core.storage.postgres import PostgresStore

    count = instances or DEFAULT_INSTANCES["memory"]
    dsn = cluster.create_database()
    work = Path(tempfile.mkdtemp(prefix="floxy-bench-mem-"))
    yaml_file = work / "mem.yaml"
    yaml_file.write_text(MEMORY_YAML)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOXY_", "PG"))}
    env.update(
        FLOXY_DSN=dsn,
        FLOXY_WORKERS="4",
        FLOXY_TECH_ADDR="off",
        FLOXY_STATS_INTERVAL="0",
        FLOXY_NO_PLUGINS="1",
    )
    daemon = subprocess.Popen(
        [sys.executable, "-m", "floxyd", str(yaml_file)],
        env=env,
        stdout=(work / "floxyd.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    store = PostgresStore(dsn, max_size=2)
    try:
        runtime = Runtime(store, {}, workers=1)
        deadline = time.monotonic() + 60
        while True:  # floxyd registers the flow at start-up
            try:
                store.get_definition("mem-v1")
                break
            except Exception:
                if time.monotonic() > deadline or daemon.poll() is not None:
                    raise RuntimeError((work / "floxyd.log").read_text()) from None
                time.sleep(0.2)
        log(f"memory: starting {count:,} instances")
        ids = [runtime.start_instance("mem-v1", {"i": i}) for i in range(count)]
        with store.pool.connection() as conn:
            deadline = time.monotonic() + 600
            while True:
                row = conn.execute(
                    "SELECT count(*) FROM workflows.workflow_steps WHERE step_name = 'approve'"
                    " AND status = 'waiting_decision' AND instance_id = ANY(%s)",
                    (ids,),
                ).fetchone()
                if row is not None and row[0] >= count:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"memory: only {row} instances reached the human step")
                time.sleep(0.5)
        status = Path(f"/proc/{daemon.pid}/status").read_text()
        rss = {
            key: int(re.search(rf"^{key}:\s+(\d+) kB", status, re.M).group(1)) / 1024  # type: ignore[union-attr]
            for key in ("VmRSS", "VmHWM")
        }
    finally:
        daemon.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            daemon.wait(30)
        store.close()
        cluster.drop_database(dsn)
        shutil.rmtree(work, ignore_errors=True)
    return {"instances": count, "rss_mib": rss["VmRSS"], "peak_rss_mib": rss["VmHWM"]}


# -- the run and the report ---------------------------------------------------------------------


@contextlib.contextmanager
def cluster_for(names: list[str]) -> Iterator[Any]:
    if not any(n != "W3" for n in names):
        yield None
        return
    with postgres_database() as (_dsn, cluster):
        if cluster is None:
            raise SystemExit(
                "python -m bench needs its own throwaway cluster: unset FLOXY_BENCH_DSN"
            )
        yield cluster


def run(names: list[str], *, workers: int, instances: int | None, runs: int) -> dict[str, Any]:
    load0 = os.getloadavg()[0]
    results: dict[str, Any] = {
        "meta": {
            "commit": git_commit(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "workers": workers,
            "runs": runs,
            "load_before": round(load0, 2),
        }
    }
    with cluster_for(names) as cluster:
        for name in names:
            log(f"{name} ...")
            t0 = time.perf_counter()
            if name == "pgbench":
                results[name] = w_pgbench(cluster, runs)
            elif name in ("W1", "W2", "W4"):
                results[name] = w_engine(cluster, name, workers, instances, runs)
            elif name == "W3":
                results[name] = w_cli(runs)
            elif name == "latency":
                results[name] = w_latency(cluster, workers, runs)
            elif name == "history":
                results[name] = w_history(cluster, workers, instances, runs)
            elif name == "memory":
                results[name] = w_memory(cluster, instances)
            elif name == "bigflow":
                from bench.bigflow import w_bigflow

                results[name] = w_bigflow(cluster, runs)
            log(f"{name} done in {time.perf_counter() - t0:.0f}s")
    results["meta"]["load_after"] = round(os.getloadavg()[0], 2)
    return results


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _cell(stat: dict[str, float]) -> str:
    return f"{_fmt(stat['median'])} ({_fmt(stat['min'])}-{_fmt(stat['max'])})"


def report(results: dict[str, Any]) -> str:
    """The figures as a table, each with its ratio to the limit it is measured against."""
    meta = results["meta"]
    lines = [
        f"floxy bench at {meta['commit']}, {meta['date']}, {meta['cpus']} CPUs, "
        f"Python {meta['python']}, {meta['workers']} workers, median (min-max) of "
        f"{meta['runs']} runs, load {meta['load_before']} -> {meta['load_after']}",
        "",
    ]
    rows: list[tuple[str, str, str]] = []
    pg = results.get("pgbench")
    limit = pg["tps_4_clients"]["median"] if pg else None
    if pg:
        rows.append(("pgbench", "transitions/s, 1 client", _cell(pg["tps_1_client"])))
        rows.append(("pgbench", "transitions/s, 4 clients", _cell(pg["tps_4_clients"])))
    w1 = results.get("W1", {}).get("steps_per_s", {}).get("median")
    for name in ("W1", "W2", "W4", "history"):
        r = results.get(name)
        if not r:
            continue
        rows.append((name, "steps/s", _cell(r["steps_per_s"])))
        rows.append((name, "instances/s", _cell(r["instances_per_s"])))
        rows.append((name, "commits/step", _cell(r["commits_per_step"])))
        rows.append((name, "WAL bytes/step", _cell(r["wal_bytes_per_step"])))
        rows.append((name, "client CPU ms/step", _cell(r["client_cpu_ms_per_step"])))
        rows.append((name, "server CPU ms/step", _cell(r["server_cpu_ms_per_step"])))
        steps = r["steps_per_s"]["median"]
        if limit:
            rows.append((name, "ratio to pgbench@4 (W1 target >= 0.25)", f"{steps / limit:.3f}"))
        if w1 and name != "W1":
            target = {"W2": ">= 1.0", "W4": ">= 0.8", "history": ">= 0.9"}[name]
            rows.append((name, f"ratio to W1 (target {target})", f"{steps / w1:.3f}"))
    if "W3" in results:
        w3 = results["W3"]
        rows.append(("W3", "floxyctl run, ms", _cell(w3["run_ms"])))
        rows.append(("W3", "anchor (python + 3 bash), ms", _cell(w3["anchor_ms"])))
        ratio = w3["run_ms"]["median"] / w3["anchor_ms"]["median"]
        rows.append(("W3", "ratio to anchor (target <= 2.5)", f"{ratio:.2f}"))
    if "latency" in results:
        lat = results["latency"]
        for key, label in (
            ("start_to_first_call_ms", "start -> first call"),
            ("step_to_step_ms", "step -> next step"),
        ):
            rows.append(
                (
                    "latency",
                    f"{label} p50 / p99, ms",
                    f"{lat[key]['p50']:.2f} / {lat[key]['p99']:.2f}",
                )
            )
    if "memory" in results:
        mem = results["memory"]
        rows.append(
            (
                "memory",
                f"floxyd RSS, {mem['instances']:,} active, MiB (target <= 150)",
                f"{mem['rss_mib']:.1f} (peak {mem['peak_rss_mib']:.1f})",
            )
        )
    if "bigflow" in results:
        from bench.bigflow import report_rows

        rows += report_rows(results["bigflow"])
    width = [max(len(r[i]) for r in rows) for i in range(3)] if rows else [0, 0, 0]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, width, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)
