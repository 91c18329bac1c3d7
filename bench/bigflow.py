"""The big-flow workload: one instance of a long flow, on each store, in a fresh process.

    .venv/bin/python -m bench bigflow                 # memory and PostgreSQL, median of 3
    .venv/bin/python -m bench.bigflow memory seq 10000   # one case, JSON on stdout

Cases: sequential no-op steps at 100 and at 10,000 steps, and a fork of 1,000 no-op branches.
Each case runs in its own process (`--child`) so its peak RSS is its own; the worker loop runs
on the main thread (`Runtime.run_once`, one item per call),
so the figure is the engine's and the store's cost per step, not thread wake-ups. The 100-step
case runs 20 instances one after another, so that its per-step figure is not a few milliseconds.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

CASES = [("seq", 100), ("seq", 10_000), ("fork", 1_000)]
INSTANCES = {100: 20}


def flow(shape: str, size: int) -> Any:
    from floxy_core.builder import Builder

    if shape == "seq":
        builder = Builder(f"bigseq{size}")
        for i in range(size):
            builder.step(f"s{i}", "noop")
        return builder.build()
    branches = [lambda b, i=i: b.step(f"b{i}", "noop") for i in range(size)]
    return Builder(f"bigfork{size}").fork("fan", *branches).join("fan_join").build()


def _rss_mib(key: str) -> float:
    status = Path("/proc/self/status").read_text()
    found = re.search(rf"^{key}:\s+(\d+) kB", status, re.M)
    return int(found.group(1)) / 1024 if found else 0.0


def child(store_kind: str, shape: str, size: int, dsn: str | None) -> dict[str, Any]:
    """Run the case here and return its figures."""
    from floxy_core.runtime import Runtime
    from floxy_core.status import InstanceStatus
    from floxy_core.storage.memory import MemoryStore

    if store_kind == "memory":
        store: Any = MemoryStore(seed=1)
    else:
        from floxy_core.storage.postgres import PostgresStore

        assert dsn is not None
        store = PostgresStore(dsn, max_size=2)
    try:
        runtime = Runtime(store, {"noop": lambda ctx, data: data}, workers=1)

        def drain(definition: Any, count: int) -> tuple[float, list[int]]:
            runtime.register(definition)
            ids: list[int] = []
            t0 = time.perf_counter()
            for i in range(count):
                ids.append(runtime.start_instance(definition.id, {"i": i}))
                while runtime.run_once("bench"):
                    pass
            return time.perf_counter() - t0, ids

        drain(flow("seq", 10), 2)  # warm: imports, prepared statements, connections
        definition = flow(shape, size)
        rss_before = _rss_mib("VmRSS")
        count = INSTANCES.get(size, 1)
        seconds, ids = drain(definition, count)
        statuses = {store.get_instance(i).status for i in ids}
        if statuses != {InstanceStatus.COMPLETED}:
            raise RuntimeError(f"{definition.id}: instances ended {statuses}")
        steps = len(definition.steps) * count
        return {
            "store": store_kind,
            "shape": shape,
            "size": size,
            "instances": count,
            "steps": steps,
            "seconds": seconds,
            "us_per_step": seconds / steps * 1e6,
            "rss_before_mib": rss_before,
            "peak_rss_mib": _rss_mib("VmHWM"),
        }
    finally:
        if store_kind != "memory":
            store.close()


def run_case(store_kind: str, shape: str, size: int, dsn: str | None) -> dict[str, Any]:
    """One case in a fresh interpreter (its own peak RSS)."""
    args = [sys.executable, "-m", "bench.bigflow", "--child", store_kind, shape, str(size)]
    done = subprocess.run(
        [*args, *([dsn] if dsn else [])],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parents[1],
    )
    if done.returncode != 0:
        raise RuntimeError(f"bigflow {store_kind} {shape} {size} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def w_bigflow(cluster: Any, runs: int) -> dict[str, Any]:
    """Every case on both stores, `runs` times each; medians of the per-step figures."""
    import statistics

    from bench.run import log

    out: dict[str, Any] = {}
    for store_kind in ("memory", "postgres"):
        for shape, size in CASES:
            samples = []
            for _ in range(runs):
                dsn = cluster.create_database() if store_kind == "postgres" else None
                try:
                    samples.append(run_case(store_kind, shape, size, dsn))
                finally:
                    if dsn:
                        cluster.drop_database(dsn)
            key = f"{store_kind}_{shape}{size}"
            out[key] = {
                "us_per_step": statistics.median(s["us_per_step"] for s in samples),
                "us_per_step_min": min(s["us_per_step"] for s in samples),
                "us_per_step_max": max(s["us_per_step"] for s in samples),
                "peak_rss_mib": max(s["peak_rss_mib"] for s in samples),
                "rss_before_mib": statistics.median(s["rss_before_mib"] for s in samples),
                "steps": samples[0]["steps"],
            }
            log(f"bigflow {key}: {out[key]['us_per_step']:.0f} us/step")
        short, long = out[f"{store_kind}_seq100"], out[f"{store_kind}_seq10000"]
        out[f"{store_kind}_ratio_10000_to_100"] = long["us_per_step"] / short["us_per_step"]
    return out


def report_rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    for store_kind in ("memory", "postgres"):
        for shape, size in CASES:
            r = result.get(f"{store_kind}_{shape}{size}")
            if r is None:
                continue
            what = f"{size:,} sequential steps" if shape == "seq" else f"fork of {size:,}"
            rows.append(
                (
                    "bigflow",
                    f"{store_kind}, {what}: us/step (peak RSS MiB)",
                    f"{r['us_per_step']:,.0f} ({r['us_per_step_min']:,.0f}-"
                    f"{r['us_per_step_max']:,.0f}) ({r['peak_rss_mib']:.0f})",
                )
            )
        ratio = result.get(f"{store_kind}_ratio_10000_to_100")
        if ratio is not None:
            rows.append(
                ("bigflow", f"{store_kind}, per step 10,000 / 100 (target <= 1.5)", f"{ratio:.2f}")
            )
    return rows


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--child":
        store_kind, shape, size = argv[1], argv[2], int(argv[3])
        dsn = argv[4] if len(argv) > 4 else None
        print(json.dumps(child(store_kind, shape, size, dsn)))
        return 0
    store_kind, shape, size = argv[0], argv[1], int(argv[2])
    print(json.dumps(run_case(store_kind, shape, size, argv[3] if len(argv) > 3 else None)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
