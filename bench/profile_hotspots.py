"""Profile the two slowest paths and print their hotspots with their share of time.

    .venv/bin/python bench/profile_hotspots.py cli       # floxyctl run -f three_steps.yaml
    .venv/bin/python bench/profile_hotspots.py postgres  # PostgresStore, 4 workers, no-op steps
    .venv/bin/python bench/profile_hotspots.py memory    # MemoryStore, 4 workers, no-op steps

`cli` samples `floxyctl run` in-process with pyinstrument (pip install pyinstrument) over
several runs, each in a fresh interpreter, and reports inclusive time per function and per
import. `postgres` and `memory` run the worker threads under cProfile (one profiler per
thread, merged) and report the share of worker wall time per function, plus the SQL round
trips per step. Neither changes any floxy code.
"""

from __future__ import annotations

import cProfile
import io
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import run as bench  # noqa: E402  (bench/run.py)

# FLOXY_PROFILE_CPU=1: per-thread CPU time instead of wall time (where the client burns CPU,
# not where it waits for the server).
TIMER = time.thread_time if os.environ.get("FLOXY_PROFILE_CPU") else time.perf_counter

# -- cli: pyinstrument over fresh interpreters ------------------------------------------------


def _cli_child(out: str) -> None:
    """One `floxyctl run` under pyinstrument; inclusive seconds per frame key → JSON."""
    from pyinstrument import Profiler

    def leave(code: int) -> None:
        raise SystemExit(code)

    os._exit = leave  # type: ignore[assignment]  # `run` ends with os._exit: keep the profile
    sys.argv = ["floxyctl", "run", "-f", str(bench.THREE_STEPS)]
    profiler = Profiler(interval=0.0002)
    profiler.start()
    code = 0
    try:
        from floxyctl.__main__ import main

        main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        profiler.stop()
    session = profiler.last_session
    assert session is not None
    root = session.root_frame()
    inclusive: dict[str, float] = defaultdict(float)
    imports: dict[str, float] = defaultdict(float)
    self_by_package: dict[str, float] = defaultdict(float)

    def package(path: str) -> str:
        if path.startswith("<frozen importlib"):
            return "(import machinery)"
        if not path:
            return "(builtins)"
        for marker in ("site-packages/", "lib/python3.11/"):
            if marker in path:
                rest = path.split(marker, 1)[1]
                return rest.split("/", 1)[0].removesuffix(".py")
        if str(ROOT) + "/" in path:
            return path.split(str(ROOT) + "/", 1)[1].split("/", 1)[0]
        return path

    def walk(frame: Any, seen: frozenset[str], importing: frozenset[str], parent: str) -> None:
        if frame.is_synthetic:  # "[self]": time spent in the parent frame itself
            self_by_package[package(parent)] += frame.time
            return
        path = frame.file_path or ""
        short = path.split("site-packages/")[-1].split(str(ROOT) + "/")[-1]
        short = short.split("lib/python3.11/")[-1]
        key = f"{short}:{frame.function}"
        if key not in seen:
            inclusive[key] += frame.time
            seen = seen | {key}
        if frame.function == "<module>":
            pkg = package(path)
            if pkg not in importing:
                imports[pkg] += frame.time
                importing = importing | {pkg}
        for child in frame.children:
            walk(child, seen, importing, path)

    if root is not None:
        walk(root, frozenset(), frozenset(), "")
    Path(out).write_text(
        json.dumps(
            {
                "duration": session.duration,
                "inclusive": inclusive,
                "self_by_package": self_by_package,
                "imports": imports,
                "code": code,
            }
        )
    )


def profile_cli(runs: int, spec_cache: bool) -> None:
    import importlib.util

    if importlib.util.find_spec("pyinstrument") is None:
        raise SystemExit(
            "profile_hotspots.py cli needs pyinstrument: .venv/bin/pip install pyinstrument"
        )
    bench.isolated_env()
    if not spec_cache:
        os.environ["FLOXY_NO_CACHE"] = "1"
    what = "warm workflow-file cache" if spec_cache else "no workflow-file cache (FLOXY_NO_CACHE=1)"
    ctl = bench.floxyctl_path()
    # Warm the bytecode cache, then time plain runs (no profiler) for the wall-clock context.
    walls = bench.timed_runs([ctl, "run", "-f", str(bench.THREE_STEPS)], runs)
    bare = bench.timed_runs([sys.executable, "-c", "pass"], runs)
    durations: list[float] = []
    inclusive: dict[str, list[float]] = defaultdict(list)
    self_pkg: dict[str, list[float]] = defaultdict(list)
    imports: dict[str, list[float]] = defaultdict(list)
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(runs + 1):
            out = os.path.join(tmp, f"{i}.json")
            subprocess.run(
                [sys.executable, __file__, "_cli_child", out],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                cwd=ROOT,
                check=True,
            )
            if i == 0:
                continue
            data = json.loads(Path(out).read_text())
            durations.append(data["duration"])
            for k, v in data["inclusive"].items():
                inclusive[k].append(v)
            for k, v in data["self_by_package"].items():
                self_pkg[k].append(v)
            for k, v in data["imports"].items():
                imports[k].append(v)
    wall = statistics.median(walls)
    profiled = statistics.median(durations)
    print(
        f"floxyctl run -f {bench.THREE_STEPS.relative_to(ROOT)}, {what}: "
        f"median wall {wall * 1000:.0f} ms"
    )
    print(f"  interpreter start+exit (python -c pass): {statistics.median(bare) * 1000:.0f} ms")
    print(f"  profiled main() (pyinstrument, {runs} runs, median): {profiled * 1000:.0f} ms")

    def med(values: list[float]) -> float:
        return statistics.median(values + [0.0] * (runs - len(values)))

    rows = sorted(((med(v), k) for k, v in inclusive.items()), reverse=True)
    ours = ("floxy_core/", "floxyctl/")
    print("\nfloxy functions, inclusive time (median), share of profiled main() (>= 1%):")
    for t, k in rows:
        if k.startswith(ours) and t / profiled >= 0.01:
            print(f"  {t * 1000:7.1f} ms  {100 * t / profiled:5.1f}%  {k}")
    print("\nImports, outermost import of each package (includes what it imports):")
    for t, k in sorted(((med(v), k) for k, v in imports.items()), reverse=True)[:18]:
        print(f"  {t * 1000:7.1f} ms  {100 * t / profiled:5.1f}%  {k}")
    print("\nOther library functions, inclusive (>= 4%):")
    skip = ("<frozen", "threading.py:", "runpy.py:", *ours)
    for t, k in rows:
        if t / profiled >= 0.04 and not k.startswith(skip) and not k.endswith(":<module>"):
            print(f"  {t * 1000:7.1f} ms  {100 * t / profiled:5.1f}%  {k}")
    print("\nSelf time by package (where the CPU actually is):")
    for t, k in sorted(((med(v), k) for k, v in self_pkg.items()), reverse=True)[:15]:
        print(f"  {t * 1000:7.1f} ms  {100 * t / profiled:5.1f}%  {k}")


# -- engine: cProfile per worker thread --------------------------------------------------------


def _profiled_runtime_class() -> Any:
    from floxy_core.runtime import Runtime

    class ProfiledRuntime(Runtime):
        """Each worker thread runs under its own cProfile; `stats()` merges them."""

        profiles: list[cProfile.Profile]

        def _worker(self, name: str) -> None:
            profile = cProfile.Profile(TIMER)
            self.profiles.append(profile)
            profile.enable()
            try:
                super()._worker(name)
            finally:
                profile.disable()

    return ProfiledRuntime


def print_stats(profiles: list[cProfile.Profile], total_thread_s: float, top: int) -> None:
    stream = io.StringIO()
    stats = pstats.Stats(profiles[0], stream=stream)
    for p in profiles[1:]:
        stats.add(p)
    raw = stats.stats  # type: ignore[attr-defined]

    def label(func: tuple[str, int, str]) -> str:
        path, line, name = func
        path = path.split("site-packages/")[-1].split("/work/main/")[-1]
        path = path.split("lib/python3.11/")[-1]
        return f"{path}:{line}:{name}" if line else name

    print(f"\nShare of worker wall time, inclusive (cumulative), total {total_thread_s:.1f} s:")
    rows = sorted(raw.items(), key=lambda kv: -kv[1][3])
    shown = 0
    for func, (_cc, nc, _tt, ct, _callers) in rows:
        name = label(func)
        if name.startswith(("threading.py", "<")) or "_worker" in name:
            continue
        print(f"  {100 * ct / total_thread_s:5.1f}%  {ct:7.2f}s  {nc:8d} calls  {name}")
        shown += 1
        if shown >= top:
            break
    print(f"\nShare of worker wall time, self (tottime), total {total_thread_s:.1f} s:")
    for func, (_cc, nc, tt, _ct, _callers) in sorted(raw.items(), key=lambda kv: -kv[1][2])[:top]:
        print(f"  {100 * tt / total_thread_s:5.1f}%  {tt:7.2f}s  {nc:8d} calls  {label(func)}")


def explain_hot_queries(dsn: str, instance_id: int) -> None:
    """Server-side planning and execution time of the per-step queries (EXPLAIN ANALYZE)."""
    from datetime import UTC, datetime

    import psycopg

    from floxy_core.storage.postgres.sql import q

    now = datetime.now(UTC)
    print("\nServer side, one EXPLAIN (ANALYZE) each, custom plan (first execution):")
    with psycopg.connect(dsn, autocommit=True) as conn:
        created = conn.execute(
            "SELECT created_at FROM workflows.workflow_instances WHERE id = %s", (instance_id,)
        ).fetchone()[0]
        probes = [
            ("lock_load", {"id": instance_id, "created": created, "now": now}),
            ("claim", {"now": now, "rate": 0.0}),
            ("next_due", {}),
        ]
        parts = conn.execute(
            "SELECT count(*) FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent "
            "WHERE p.relname = 'workflow_steps'"
        ).fetchone()
        print(f"  (workflow_steps and the other partitioned tables have {parts[0]} partitions)")
        for name, params in probes:
            with conn.transaction(force_rollback=True):
                lines = [
                    r[0]
                    for r in conn.execute(
                        "EXPLAIN (ANALYZE, SUMMARY, TIMING off) " + q(name), params
                    ).fetchall()
                ]
            plan = lines[-2].strip()
            execution = lines[-1].strip()
            print(f"  {name:18s} {plan:24s} {execution:26s} ({len(lines)} plan lines)")


def profile_engine(kind: str, instances: int, top: int) -> None:
    if kind == "postgres":
        with bench.postgres_database() as (dsn, _cluster):
            _profile_engine(kind, instances, top, dsn)
    else:
        _profile_engine(kind, instances, top, None)


def _profile_engine(kind: str, instances: int, top: int, dsn: str | None) -> None:
    from floxy_core.storage.memory import MemoryStore

    flow = bench.linear_flow(f"prof_{kind}", 5)
    inc, read = bench.counting()
    store: Any
    trips = None
    if dsn is not None:
        from floxy_core.storage.postgres import PostgresStore

        trips = bench.RoundTrips()
        trips.install()
        store = PostgresStore(dsn, max_size=8)
    else:
        store = MemoryStore(seed=1)
    try:
        cls = _profiled_runtime_class()
        runtime = cls(store, {"noop": bench.Noop("noop", inc)}, workers=4)
        runtime.profiles = []
        runtime.register(flow)
        ids = [runtime.start_instance(flow.id, {"i": i}) for i in range(instances)]
        if trips is not None:
            trips.enabled = True
        t0 = time.perf_counter()
        runtime.start()
        while True:
            done = sum(1 for i in ids if store.get_instance(i).status.terminal)
            if done == len(ids):
                break
            time.sleep(0.1)
        elapsed = time.perf_counter() - t0
        runtime.stop()
        if trips is not None:
            trips.enabled = False
        steps = read()
        print(
            f"{kind}: {steps} steps in {elapsed:.2f}s = "
            f"{steps / elapsed:.0f} steps/s under cProfile"
        )
        print_stats(runtime.profiles, elapsed * len(runtime.profiles), top)
        if trips is not None and dsn is not None:
            rows = trips.per_step(steps)
            total = sum(v["per_step"] for v in rows.values())
            print(f"\nSQL round trips: {total:.2f} per step (statement wall time, client side)")
            for k, v in rows.items():
                each = v["ms_each"]
                cost = (
                    ""
                    if each is None
                    else f"  {each:6.2f} ms each  {each * v['per_step']:6.2f} ms/step"
                )
                print(f"  {v['per_step']:5.2f}/step  {k:32s}{cost}")
            explain_hot_queries(dsn, ids[len(ids) // 2])
    finally:
        if dsn is not None:
            store.close()


def main() -> int:
    if len(sys.argv) >= 2 and sys.argv[1] == "_cli_child":
        _cli_child(sys.argv[2])
        return 0
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", choices=["cli", "postgres", "memory"])
    parser.add_argument("--runs", type=int, default=10, help="cli: profiled runs")
    parser.add_argument("--instances", type=int, default=300, help="postgres/memory backlog")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--no-spec-cache",
        action="store_true",
        help="cli: profile with FLOXY_NO_CACHE=1 (a file's first run) instead of a cache hit",
    )
    args = parser.parse_args()
    try:
        if args.path == "cli":
            profile_cli(args.runs, spec_cache=not args.no_spec_cache)
        else:
            bench.isolated_env()
            profile_engine(args.path, args.instances, args.top)
    finally:
        cache = os.environ.get("FLOXY_CACHE_DIR", "")
        if "floxy-bench-spec-cache-" in cache:
            import shutil

            shutil.rmtree(cache, ignore_errors=True)
    return 0


if __name__ == "__main__":
    import signal

    def _terminated(signum: int, frame: Any) -> None:
        raise SystemExit(f"terminated (signal {signum})")

    signal.signal(signal.SIGTERM, _terminated)
    sys.exit(main())
