"""The issue-7 workloads, each printed as a ratio to the database or start-up limit it runs against.

    .venv/bin/python -m bench all                       # every workload, median of 3 runs each
    .venv/bin/python -m bench W1 --workers 4 --instances 1000
    .venv/bin/python -m bench pgbench W1 W4 --json out.json

Workloads (no-op Python handlers, so the engine's own cost shows):

  pgbench   the database limit: one minimal step transition per transaction, 1 and 4 clients
  W1        saga-3: 3 sequential steps, 1,000 instances, 4 workers, one process
  W2        fanout-8: fork of 8 tasks -> join -> 1 step, 200 instances
  W3        `floxyctl run` of a 3-step bash workflow, 30 runs, against a bare Python start-up
            plus 3 bash spawns (the anchor)
  W4        compensate-3: s1, s2 succeed, s3 fails at once, 2 compensations; 500 instances
  latency   start -> first handler call and handler -> next handler, one instance at a time
  history   W1 again after 1,000,000 completed steps are in the tables
  memory    floxyd RSS with 4 workers and 10,000 active instances (waiting on a human step)
  bigflow   one long instance per case, in memory and on PostgreSQL: per-step cost at 100 and
            at 10,000 sequential steps, a fork of 1,000 branches, peak RSS (bench/bigflow.py)

Timing starts with warm workers and a backlog already queued, and ends when the last instance is
terminal. Throughputs and W3 are the median of 3 runs with min-max; latency pools its samples,
memory is one run. See docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import sys

from bench import saga

ORDER = ["pgbench", "W1", "W2", "W4", "W3", "latency", "history", "memory", "bigflow"]


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="floxy engine benchmarks against the database limit (docs/performance.md)",
    )
    parser.add_argument("workloads", nargs="+", metavar="WORKLOAD", help="|".join([*ORDER, "all"]))
    parser.add_argument("--workers", type=int, default=4, help="engine workers (default 4)")
    parser.add_argument("--instances", type=int, default=None, help="override the instance count")
    parser.add_argument("--runs", type=int, default=3, help="runs per workload (default 3)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args()
    names = ORDER if "all" in args.workloads else args.workloads
    unknown = [n for n in names if n not in ORDER]
    if unknown:
        parser.error(f"unknown workload(s): {', '.join(unknown)} (choose from {', '.join(ORDER)})")
    if args.workers < 1 or (args.instances is not None and args.instances < 1):
        parser.error("--workers and --instances must be at least 1")
    results = saga.run(
        [n for n in ORDER if n in names],
        workers=args.workers,
        instances=args.instances,
        runs=args.runs,
    )
    print(saga.report(results))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(results, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
