"""All human-facing output of floxyctl: rich on a terminal, plain lines otherwise."""

from __future__ import annotations

import os
import sys
from collections import Counter
from typing import TYPE_CHECKING, Any, TextIO

from floxy_core import values
from floxy_core.durations import format_ms
from floxy_core.model import Event, Instance, StepRecord
from floxy_core.status import InstanceStatus, StepStatus

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

ICONS = {
    StepStatus.COMPLETED: "✓",
    StepStatus.FAILED: "✗",
    StepStatus.ROLLED_BACK: "↺",
    StepStatus.COMPENSATION: "↺",
    StepStatus.RUNNING: "▶",
    StepStatus.SKIPPED: "-",
    StepStatus.INTERRUPTED: "⊘",
    StepStatus.WAITING_DECISION: "?",
    StepStatus.PAUSED: "‖",
    StepStatus.REJECTED: "✗",
}
STYLES = {
    StepStatus.COMPLETED: "green",
    StepStatus.FAILED: "red",
    StepStatus.REJECTED: "red",
    StepStatus.ROLLED_BACK: "yellow",
    StepStatus.COMPENSATION: "yellow",
    StepStatus.RUNNING: "cyan",
    StepStatus.WAITING_DECISION: "magenta",
    StepStatus.PAUSED: "magenta",
    StepStatus.SKIPPED: "dim",
    StepStatus.INTERRUPTED: "red",
}
INSTANCE_STYLES = {
    InstanceStatus.COMPLETED: "bold green",
    InstanceStatus.FAILED: "bold red",
    InstanceStatus.CANCELLED: "bold yellow",
    InstanceStatus.ABORTED: "bold yellow",
    InstanceStatus.DLQ: "bold magenta",
}


def fancy(stream: TextIO) -> bool:
    """Rich output only for a terminal, and never when NO_COLOR is set."""
    return stream.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def attempts(events: list[Event]) -> Counter[str]:
    return Counter(
        e.step_name
        for e in events
        if e.type == "step_started" and e.step_name and "reason" not in e.payload
    )


def _duration(row: StepRecord) -> str:
    if row.started_at is None:
        return "-"
    end = row.completed_at
    if end is None:
        return "…"
    return format_ms((end - row.started_at) * 1000)


def _first_line(text: str | None, width: int = 80) -> str:
    if not text:
        return ""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= width else line[: width - 1] + "…"


def steps_table(
    steps: list[StepRecord], events: list[Event], title: str | None = None
) -> RenderableType:
    from rich.table import Table
    from rich.text import Text

    counts = attempts(events)
    table = Table(title=title, title_justify="left", expand=False, box=None, pad_edge=False)
    for column in ("", "step", "type", "status", "attempts", "duration", "error"):
        table.add_column(column, no_wrap=column != "error")
    for row in steps:
        style = STYLES.get(row.status, "")
        table.add_row(
            Text(ICONS.get(row.status, "○"), style=style),
            row.step_name,
            row.step_type.value,
            Text(row.status.value, style=style),
            str(counts.get(row.step_name, 0)),
            _duration(row),
            Text(_first_line(row.error), style="red"),
        )
    return table


def plain_steps(steps: list[StepRecord], events: list[Event], out: TextIO) -> None:
    counts = attempts(events)
    width = max((len(r.step_name) for r in steps), default=4)
    for row in steps:
        line = (
            f"  {ICONS.get(row.status, '○')} {row.step_name:<{width}}  {row.status.value:<16} "
            f"attempts={counts.get(row.step_name, 0)} duration={_duration(row)}"
        )
        error = _first_line(row.error, 200)
        print(line + (f"  error: {error}" if error else ""), file=out)


def summary(
    instance: Instance,
    steps: list[StepRecord],
    events: list[Event],
    *,
    elapsed_s: float,
    note: str | None = None,
    detail: str | None = None,
) -> None:
    """The final report of `floxyctl run` on stdout; `detail` is a line under the head."""
    out = sys.stdout
    head = (
        f"Workflow {instance.workflow_id} (instance {instance.id}) "
        f"{instance.status.value} in {format_ms(elapsed_s * 1000)}"
    )
    if fancy(out):
        console = console_for(out)
        console.print(head, style=INSTANCE_STYLES.get(instance.status, "bold"))
        if detail:
            console.print(detail, style="dim", markup=False)
        console.print(steps_table(steps, events))
        if note:
            console.print(note, style="magenta")
        if instance.status is InstanceStatus.COMPLETED:
            console.print("Output:", style="bold")
            from rich.highlighter import JSONHighlighter

            # rich's print_json would parse the text again into floats (1e400 → Infinity)
            console.print(JSONHighlighter()(values.dumps(instance.output, indent=2)))
        elif instance.error:
            console.print(f"Error: {instance.error}", style="red", markup=False)
        return
    print(head, file=out)
    if detail:
        print(detail, file=out)
    plain_steps(steps, events, out)
    if note:
        print(note, file=out)
    if instance.status is InstanceStatus.COMPLETED:
        print("Output: " + values.dumps(instance.output), file=out)
    elif instance.error:
        print(f"Error: {instance.error}", file=out)


def console_for(stream: TextIO) -> Console:
    from rich.console import Console

    return Console(file=stream, highlight=False, soft_wrap=False)


def print_json(document: Any) -> None:
    sys.stdout.write(values.dumps(document, indent=2) + "\n")
    sys.stdout.flush()
