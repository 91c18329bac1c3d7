"""Periodic statistics: instance counts and the active instances, as a table or as log lines."""

from __future__ import annotations

import logging
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from floxy_core.storage.postgres.store import ActiveInstance, PostgresStore

log = logging.getLogger("floxyd.stats")

ACTIVE_LIMIT = 20
"""At most this many active instances are listed; the rest are counted."""


@dataclass(frozen=True)
class Snapshot:
    counts: dict[str, int]
    active: list[ActiveInstance]


def take_snapshot(store: PostgresStore) -> Snapshot:
    """The reference's counts plus the oldest active instances (one extra query). The reference
    counts an instance waiting for a human decision as running; `listing_stats` tells it apart."""
    counts = store.listing_stats()
    counts["running"] += counts.pop("waiting")
    return Snapshot(counts, store.active_instances(ACTIVE_LIMIT))


def format_runtime(seconds: float) -> str:
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def _counts_line(counts: dict[str, int]) -> str:
    keys = ("total", "completed", "failed", "running", "pending", "active")
    return " | ".join(f"{k.capitalize()}: {counts.get(k, 0)}" for k in keys)


def log_snapshot(snapshot: Snapshot) -> None:
    """Log lines: one for the counts, one per active instance (fields in JSON logs)."""
    counts = snapshot.counts
    log.info("workflow statistics: %s", _counts_line(counts), extra={"fields": dict(counts)})
    for inst in snapshot.active:
        fields = {
            "instance_id": inst.id,
            "workflow": inst.workflow_id,
            "status": inst.status,
            "step": inst.current_step,
            "progress": inst.progress,
            "rolled_back": inst.rolled_back_steps,
            "runtime_s": round(inst.runtime_s),
        }
        log.info(
            "active instance %d: workflow %s, status %s, step %s, steps %s, rolled back %d, "
            "runtime %s",
            inst.id,
            inst.workflow_id,
            inst.status,
            inst.current_step,
            inst.progress,
            inst.rolled_back_steps,
            format_runtime(inst.runtime_s),
            extra={"fields": fields},
        )
    hidden = counts.get("active", 0) - len(snapshot.active)
    if hidden > 0:
        log.info("... and %d more active instances", hidden)


def print_table(snapshot: Snapshot) -> None:
    """A rich table on the terminal (stdout)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(file=sys.stdout)
    stamp = datetime.now().astimezone().strftime("%H:%M:%S")
    console.print(f"[bold]Workflow statistics[/bold] {stamp}  {_counts_line(snapshot.counts)}")
    if not snapshot.active:
        console.print("No active workflow instances")
        return
    table = Table()
    for column in ("ID", "Workflow", "Status", "Step", "Steps", "Rolled back", "Runtime"):
        table.add_column(column, justify="right" if column in ("ID", "Steps") else "left")
    for inst in snapshot.active:
        table.add_row(
            str(inst.id),
            escape(inst.workflow_id),
            inst.status,
            escape(inst.current_step),
            inst.progress,
            str(inst.rolled_back_steps),
            format_runtime(inst.runtime_s),
        )
    hidden = snapshot.counts.get("active", 0) - len(snapshot.active)
    if hidden > 0:
        table.caption = f"... and {hidden} more active instances"
    console.print(table)


class StatsPrinter:
    """A thread printing statistics every `interval` seconds until stopped."""

    def __init__(self, store: Any, interval: float, *, table: bool, on_error: Any = None) -> None:
        self._store = store
        self._interval = interval
        self._table = table
        self._on_error = on_error
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="floxyd-stats", daemon=True)
        self._failing = False

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        next_at = time.monotonic() + self._interval
        while not self._stop.wait(max(0.0, next_at - time.monotonic())):
            next_at = max(next_at + self._interval, time.monotonic())
            try:
                snapshot = take_snapshot(self._store)
            except Exception as exc:
                if self._on_error is not None:
                    self._on_error()
                if not self._failing:
                    log.warning("statistics unavailable: %s", exc)
                self._failing = True
                continue
            self._failing = False
            if self._table:
                print_table(snapshot)
            else:
                log_snapshot(snapshot)
