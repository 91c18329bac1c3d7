"""All human-facing output of floxyctl: rich on a terminal, plain lines otherwise."""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

from floxy_core import values
from floxy_core.durations import format_ms
from floxy_core.model import Event, Instance, StepRecord, WorkflowDefinition
from floxy_core.records import record
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


@record(frozen=True)
class StepView:
    """One step as the status table shows it: what became of its call and of its rollback,
    told apart (the stored status alone says `rolled_back` for all of them)."""

    row: StepRecord
    label: str
    icon: str
    style: str
    attempts: int
    notes: tuple[str, ...] = ()


def step_views(steps: list[StepRecord], events: list[Event]) -> list[StepView]:
    """The table's rows, derived from the step rows and the instance's events (a pure function:
    the same inputs give the same rows)."""
    counts = attempts(events)
    by_step: dict[str, list[Event]] = {}
    for event in events:
        if event.step_name:
            by_step.setdefault(event.step_name, []).append(event)
    return [_view(row, by_step.get(row.step_name, []), counts[row.step_name]) for row in steps]


def _view(row: StepRecord, events: list[Event], calls: int) -> StepView:
    from floxy_core.engine.rollback import COMPENSATION_EXHAUSTED, INTERRUPTED_PREFIX

    status = row.status
    label, icon, style = status.value, ICONS.get(status, "○"), STYLES.get(status, "")
    notes = tuple(filter(None, [_compensation_note(events), _decision_note(events)]))
    if status in (StepStatus.ROLLED_BACK, StepStatus.COMPENSATION):
        # what its call had come to before the rollback: it keeps the error it had
        origin = ""
        if row.error is not None and row.error.startswith(INTERRUPTED_PREFIX):
            origin, icon, style = "interrupted", ICONS[StepStatus.INTERRUPTED], "red"
        elif row.error is not None:
            origin, icon, style = "failed", ICONS[StepStatus.FAILED], "red"
        if status is StepStatus.COMPENSATION:
            label = ", ".join(filter(None, [origin, "compensating"]))
        elif _rollback_of(events) == "compensation_success":
            label = ", ".join(filter(None, [origin, "compensated"]))
        else:
            label = f"{origin or 'rolled back'}, nothing to undo"
            style = style if origin else "dim yellow"
    elif status is StepStatus.FAILED and events:
        last = events[-1]
        if last.type == "step_retry":
            label = "failed, will retry"
        elif last.type == "step_failed" and last.payload.get("error") == COMPENSATION_EXHAUSTED:
            label = "compensation failed"
    return StepView(row, label, icon, style, calls, notes)


def _rollback_of(events: list[Event]) -> str | None:
    """How the last rollback of a step ended: `compensation_success`,
    `rolled_back_no_compensation`, or None (not rolled back)."""
    reasons = ("compensation_success", "rolled_back_no_compensation")
    found = [
        e.payload.get("reason")
        for e in events
        if e.type == "step_completed" and e.payload.get("reason") in reasons
    ]
    return str(found[-1]) if found else None


def _compensation_note(events: list[Event]) -> str | None:
    """`↳ compensation: 2 calls, succeeded` and the like, from the compensation events."""
    from floxy_core.engine.rollback import COMPENSATION_EXHAUSTED

    queued = failed = 0
    outcome = ""
    for e in events:
        reason = e.payload.get("reason")
        if e.type == "step_started" and reason == "compensation":
            queued += 1
            outcome = "queued"
        elif e.type == "step_failed" and reason == "compensation_retry":
            failed += 1
            outcome = f"call failed, will retry: {_first_line(str(e.payload.get('error')), 120)}"
        elif e.type == "step_completed" and reason == "compensation_success":
            outcome = "succeeded"
        elif e.type == "step_failed" and e.payload.get("error") == COMPENSATION_EXHAUSTED:
            failed += 1
            cause = _first_line(str(e.payload.get("cause")), 120)
            outcome = f"failed, no retries left: {cause}"
        elif e.type == "step_interrupted" and e.payload.get("compensation"):
            outcome = "interrupted by an abort"
    if not queued:
        return None
    calls = failed + (outcome in ("succeeded", "interrupted by an abort"))
    if not calls:
        return f"↳ compensation: {outcome}"
    return f"↳ compensation: {calls} call{'s' if calls != 1 else ''}, {outcome}"


def _decision_note(events: list[Event]) -> str | None:
    """`↳ confirmed by alice: ok up to 500 EUR` for a human step that was answered."""
    for e in reversed(events):
        decision = e.payload.get("decision")
        if e.type in ("step_completed", "step_failed") and decision:
            comment = e.payload.get("comment")
            who = e.payload.get("decided_by") or "?"
            return f"↳ {decision} by {who}" + (
                f": {_first_line(str(comment), 200)}" if comment else ""
            )
    return None


def _duration(row: StepRecord, now: float | None = None) -> str:
    """How long the step ran; with `now`, a running step's time so far (it ticks)."""
    if row.started_at is None:
        return "-"
    end = row.completed_at
    if end is None:
        if now is None or row.status is not StepStatus.RUNNING:
            return "…"
        end = max(now, row.started_at)
    return format_ms((end - row.started_at) * 1000)


def _first_line(text: str | None, width: int = 80) -> str:
    if not text:
        return ""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= width else line[: width - 1] + "…"


def steps_table(
    steps: list[StepRecord],
    events: list[Event],
    title: str | None = None,
    *,
    now: float | None = None,
    unreached: Sequence[tuple[str, str]] = (),
) -> RenderableType:
    """The rich table; `now` makes running durations tick, `unreached` (name, type) lists the
    steps of the definition not reached yet, dimmed."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, title_justify="left", expand=False, box=None, pad_edge=False)
    for column in ("", "step", "type", "status", "attempts", "duration", "details"):
        table.add_column(column, no_wrap=column != "details")
    for view in step_views(steps, events):
        row = view.row
        details = Text(_first_line(row.error), style="red")
        for note in view.notes:
            details.append("\n" if details else "")
            details.append(note, style="dim")
        table.add_row(
            Text(view.icon, style=view.style),
            row.step_name,
            row.step_type.value,
            Text(view.label, style=view.style),
            str(view.attempts),
            _duration(row, now),
            details,
        )
    for name, kind in unreached:
        table.add_row(Text("·", style="dim"), name, kind, "—", "", "", "", style="dim")
    return table


def plain_steps(steps: list[StepRecord], events: list[Event], out: TextIO) -> None:
    views = step_views(steps, events)
    width = max((len(v.row.step_name) for v in views), default=4)
    label_width = max([16, *(len(v.label) for v in views)])
    for view in views:
        row = view.row
        line = (
            f"  {view.icon} {row.step_name:<{width}}  {view.label:<{label_width}} "
            f"attempts={view.attempts} duration={_duration(row)}"
        )
        error = _first_line(row.error, 200)
        print(line + (f"  error: {error}" if error else ""), file=out)
        for note in view.notes:
            print(f"{' ' * (width + 6)}{note}", file=out)


class Progress:
    """What a follower of a running instance shows on `stream` (stderr) while it waits: on a
    terminal, the step table redrawn in place (running durations tick, the steps not reached
    yet listed dimmed); otherwise one line per change, `12:00:01Z reserve running`.

    `update` takes each new snapshot; nothing here reads a store or sleeps.
    """

    def __init__(self, stream: TextIO, definition: WorkflowDefinition | None = None) -> None:
        self.stream = stream
        self.fancy = fancy(stream)
        self._planned = _planned_steps(definition)
        self._snapshot: tuple[Instance, list[StepRecord], list[Event]] | None = None
        self._shown: dict[str, str] = {}
        self._status: str | None = None
        self._live: Any = None

    def __enter__(self) -> Progress:
        self.start()
        return self

    def start(self) -> None:
        if self.fancy:
            from rich.live import Live

            self._live = Live(
                console=console_for(self.stream),
                get_renderable=self._renderable,
                refresh_per_second=4,
                transient=True,
            )
            self._live.start()

    def __exit__(self, *exc: object) -> None:
        self.pause()

    def pause(self) -> None:
        """Clear the live table (before a prompt, or at the end)."""
        if self._live is not None:
            self._live.stop()

    def resume(self) -> None:
        if self._live is not None:
            self._live.start()

    def update(self, instance: Instance, steps: list[StepRecord], events: list[Event]) -> None:
        self._snapshot = (instance, steps, events)
        if self._live is not None:
            self._live.refresh()
            return
        for line in self._changes(instance, steps, events):
            print(line, file=self.stream, flush=True)

    def _renderable(self) -> RenderableType:
        from rich.text import Text

        if self._snapshot is None:
            return Text("waiting for the instance…", style="dim")
        instance, steps, events = self._snapshot
        reached = {r.step_name for r in steps}
        unreached = [(n, t) for n, t in self._planned if n not in reached]
        title = f"{instance.workflow_id} #{instance.id}: {instance.status}"
        return steps_table(steps, events, title, now=time.time(), unreached=unreached)

    def _changes(
        self, instance: Instance, steps: list[StepRecord], events: list[Event]
    ) -> list[str]:
        """A line for each step whose shown status changed, and for the instance's status."""
        now = time.time()
        last_at: dict[str | None, float] = {}
        for event in events:
            last_at[event.step_name] = event.at
        changes: list[tuple[float, str]] = []
        for view in step_views(steps, events):
            row = view.row
            if self._shown.get(row.step_name) == view.label:
                continue
            self._shown[row.step_name] = view.label
            line = f"{row.step_name} {view.label}"
            if row.completed_at is not None and row.started_at is not None:
                line += f" {_duration(row)}"
            error = _first_line(row.error, 200)
            if error:
                line += f"  error: {error}"
            changes.append((last_at.get(row.step_name, now), line))
        if instance.status.value != self._status:
            self._status = instance.status.value
            at = instance.updated_at or now
            changes.append((at, f"instance {instance.id} {instance.status}"))
        # in the order they happened (the instance's end comes after its last step's)
        changes.sort(key=lambda change: change[0])
        return [f"{_clock(at)} {line}" for at, line in changes]


def _planned_steps(definition: WorkflowDefinition | None) -> list[tuple[str, str]]:
    """The steps of a definition in its order, compensation handlers left out."""
    if definition is None:
        return []
    from floxy_core.graph import graph_of

    graph = graph_of(definition)
    compensations = set()
    for name in definition.steps:
        comp = graph.compensation_of(name)
        if comp is not None:
            compensations.add(comp.name)
    return [(n, s.type.value) for n, s in definition.steps.items() if n not in compensations]


def _clock(at: float | None) -> str:
    """`12:00:01Z`: a change's time in UTC (the event's, else now)."""
    return time.strftime("%H:%M:%SZ", time.gmtime(time.time() if at is None else at))


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
