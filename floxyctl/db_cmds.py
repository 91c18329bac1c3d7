"""Database-mode commands: register, start, cancel, abort, inspect, status, dlq, decide, migrate,
workflows. They act on a shared PostgreSQL store; floxyd (or any Runtime) runs the steps.

Every command resolves its connection through `floxyctl.db`; none but `migrate` changes the
schema; every command turns floxy and psycopg errors into one `floxyctl: error: ...` line with
exit 2. Heavy imports stay inside the functions so that `floxyctl run` does not pay for them.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer

from floxyctl import exits
from floxyctl.app import FileOpt, OutputOpt, RunInputOpt
from floxyctl.common import fail, given_once, plugins, print_warnings, refuse, usage_error
from floxyctl.db import DB_EPILOG, MIGRATE_EPILOG, DbSettings, connect, guard, open_store, with_db
from floxyctl.logs_cmd import logs
from floxyctl.options import OutputFormat

if TYPE_CHECKING:
    from floxy_core.model import Instance, StepRecord
    from floxy_core.runtime import Runtime
    from floxy_core.storage.postgres import PostgresStore

START_EPILOG = (
    DB_EPILOG + " With --wait the exit code is run's: 0 completed · 1 failed · "
    "3 completion timeout · 4 paused (DLQ or waiting for a human decision) · "
    "5 cancelled or aborted."
)
_MAX_ID = 2**63 - 1


def register(app: typer.Typer) -> None:
    """Add the database commands to `app`."""
    commands: list[tuple[str, Callable[..., None], str]] = [
        ("register", register_cmd, DB_EPILOG),
        ("workflows", workflows, DB_EPILOG),
        ("start", start, START_EPILOG),
        ("cancel", cancel, DB_EPILOG),
        ("abort", abort, DB_EPILOG),
        ("retry", retry, START_EPILOG),
        ("decide", decide, DB_EPILOG),
        ("inspect", inspect, DB_EPILOG),
        ("list", status, DB_EPILOG),
        ("status", status, DB_EPILOG),
        ("logs", logs, DB_EPILOG),
        ("migrate", migrate, MIGRATE_EPILOG),
    ]
    for name, command, epilog in commands:
        app.command(name, epilog=epilog)(with_db(command))
    dlq = typer.Typer(
        help="List dead-letter records and requeue them.",
        no_args_is_help=True,
        rich_markup_mode=None,
    )
    dlq.command("list", epilog=DB_EPILOG)(with_db(dlq_list))
    dlq.command("show", epilog=DB_EPILOG)(with_db(dlq_show))
    dlq.command("requeue", epilog=DB_EPILOG)(with_db(dlq_requeue))
    dlq.command("delete", epilog=DB_EPILOG)(with_db(dlq_delete))
    app.add_typer(dlq, name="dlq")


# -- helpers -----------------------------------------------------------------------------------


def _user() -> str:
    return os.environ.get("USER") or "floxyctl"


def _parse_id(text: str, what: str = "instance ID") -> int:
    """IDs are int64 like the reference's; anything else is a usage error, not a DB error."""
    try:
        value = int(text.strip())
    except ValueError:
        fail(f'invalid {what}: "{text}"')
    if not 0 < value <= _MAX_ID:
        fail(f'invalid {what}: "{text}"')
    return value


def _runtime(store: PostgresStore) -> Runtime:
    """A worker-less runtime: control operations only, with plugin hooks and start vetoes."""
    from floxy_core.wiring import build_runtime

    return build_runtime(store, plugins())


def _when(value: float | datetime | None) -> str:
    """A time in text output: UTC, ISO-8601, to the second (`2026-12-02T13:45:00Z`)."""
    if value is None:
        return "-"
    moment = value if isinstance(value, datetime) else datetime.fromtimestamp(value, UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _iso(value: float | datetime | None) -> str | None:
    from floxy_core.report import iso

    if isinstance(value, datetime):
        value = value.timestamp()
    return iso(value)


def _table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    for line in [headers, *rows]:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip())


def _json(document: Any) -> None:
    from floxyctl import render

    render.print_json(document)


def _read_input(source: str | None) -> Any:
    """`-i` as `run` reads it: a file, `-` for stdin, or the JSON itself (`{...}`, `[...]`);
    without `-i`, stdin when it is not a terminal, else `{}`. Bad JSON: exit 2, with where."""
    from floxyctl.run_cmd import _run_input

    return _run_input(source)


def _new_input_option(default_is: str) -> Any:
    """`-i` of retry and dlq requeue: read as `run` reads it; without it, the old input."""
    return typer.Option(
        "-i",
        "--input",
        metavar="FILE|-|JSON",
        help="New JSON input: a file, - for stdin, or the JSON itself ({...} or [...]); "
        f"default: {default_is}.",
        show_default=False,
    )


def _parse_ms(value: str, what: str) -> int:
    from floxy_core.durations import parse_duration_ms
    from floxy_core.errors import InputError

    try:
        return parse_duration_ms(value, what=what)
    except InputError as exc:
        fail(str(exc))


def _pause_note(instance: Instance, steps: list[StepRecord], dlq: list[Any]) -> str | None:
    """Why an instance that is not terminal will not move on by itself, if it will not."""
    from floxy_core.status import InstanceStatus, StepStatus

    if instance.status is InstanceStatus.DLQ and not any(
        s.status is StepStatus.RUNNING for s in steps
    ):
        records = "; ".join(f"record {d.id} (step {d.step_name}): {d.error}" for d in dlq)
        first = dlq[0].id if dlq else "ID"
        return (
            f"Paused in the DLQ: {records or 'no record'} "
            f"(requeue with: floxyctl dlq requeue {first})"
        )
    waiting = [s.step_name for s in steps if s.status is StepStatus.WAITING_DECISION]
    busy = any(s.status in (StepStatus.RUNNING, StepStatus.PENDING) for s in steps)
    if waiting and not busy:
        return (
            f"Paused: waiting for a human decision on {', '.join(waiting)} "
            f"(answer with: floxyctl decide {instance.id} --step {waiting[0]} confirm|reject)"
        )
    return None


def _report(
    store: PostgresStore,
    instance_id: int,
    json_output: bool,
    elapsed: float | None,
    note: str | None = None,
    *,
    times: bool = False,
) -> None:
    """Print an instance like `floxyctl run` does (json: the same document, notes on stderr)."""
    from floxy_core.report import instance_report
    from floxyctl import render

    instance = store.get_instance(instance_id)
    steps = store.get_steps(instance_id)
    events = store.get_events(instance_id)
    dlq = store.get_dlq(instance_id)
    if note is None and not instance.status.terminal:
        note = _pause_note(instance, steps, dlq)
    retried_as = store.retries_of(instance_id)
    if json_output:
        render.print_json(instance_report(instance, steps, events, dlq, retried_as))
        if note:
            print(note, file=sys.stderr)
        return
    links = [f"Retry of instance {instance.retry_of}."] if instance.retry_of is not None else []
    if retried_as:
        links.append(f"Retried as instance {', '.join(map(str, retried_as))}.")
    if links:
        note = " ".join([*([note] if note else []), *links])
    if elapsed is None:
        end = instance.completed_at if instance.status.terminal else None
        elapsed = max(0.0, (end or time.time()) - instance.created_at)
    detail = None
    if times:
        detail = (
            f"Created {_when(instance.created_at)} · started {_when(instance.started_at)} · "
            f"updated {_when(instance.updated_at)} · completed {_when(instance.completed_at)}"
        )
    render.summary(instance, steps, events, elapsed_s=elapsed, note=note, detail=detail)


# -- register / workflows ----------------------------------------------------------------------


def register_cmd(file: FileOpt, output: OutputOpt = OutputFormat.text, *, db: DbSettings) -> None:
    """Register every flow of a YAML file in the database (floxyd then runs its instances).

    Example: floxyctl register -f order.yaml --dsn postgresql://floxy@db/floxy

    Handlers need not be declared in the file (another worker may provide them): unknown ones
    are warnings. Identical content under an existing version is left unchanged; changed content
    needs a new `version`.
    """
    from floxy_core.errors import FloxyError, ValidationError
    from floxy_core.spec.compiler import compile_document
    from floxy_core.spec.loader import load_file

    try:
        document = load_file(file, require_handlers=False)
        print_warnings(document.warnings)
        loaded = compile_document(document)
    except ValidationError as exc:
        refuse(file, exc.errors, "registered")
    except FloxyError as exc:
        fail(str(exc))
    results: list[dict[str, Any]] = []
    with open_store(db) as store, guard(db, "failed to register workflow: "):
        for flow in loaded.flows:
            inserted = store.save_definition(flow)
            result = "registered" if inserted else "unchanged"
            results.append(
                {"id": flow.id, "name": flow.name, "version": flow.version, "result": result}
            )
            if output is OutputFormat.text:
                print(f"{result} {flow.id}", flush=True)
    if output is OutputFormat.json:
        _json({"workflows": results})


def workflows(output: OutputOpt = OutputFormat.text, *, db: DbSettings) -> None:
    """List the registered workflow definitions, newest version of each name first.

    Example: floxyctl workflows --output json
    """
    with open_store(db) as store, guard(db):
        rows = store.list_definitions()
    if output is OutputFormat.json:
        _json(
            {
                "workflows": [
                    {"id": i, "name": n, "version": v, "created_at": _iso(c)} for i, n, v, c in rows
                ]
            }
        )
        return
    if not rows:
        print("No workflows registered (floxyctl register -f FILE).")
        return
    _table(
        ["ID", "NAME", "VERSION", "CREATED"],
        [[i, n, str(v), _when(c)] for i, n, v, c in rows],
    )


# -- start / cancel / abort / decide -----------------------------------------------------------


OutputFormatOpt = Annotated[
    OutputFormat | None,
    typer.Option(
        "--output",
        help="text for people; json for programs (one document on stdout). Default: text.",
        show_default=False,
    ),
]
"""`--output` of start, cancel and abort, whose `-o` is shared with the reference CLI's meaning."""


def _target_and_format(
    argument: str | None,
    long_opt: tuple[str, str | None],
    dash_o: list[str] | None,
    output: OutputFormat | None,
    *,
    what: str,
    metavar: str,
    command: str,
    named_hint: bool = False,
) -> tuple[str, OutputFormat]:
    """The workflow or instance of start, cancel and abort, and the output format.

    `-o json` and `-o text` are the output format, as everywhere else in floxyctl (kubectl's
    `-o`); any other `-o` value is the workflow or instance, as in the reference CLI. The long
    options always mean one thing (`--workflow json` is a workflow named json), and the target
    may be the argument instead. Each is given once (`-o order-v1 -o json` is fine).
    """
    flag, value = long_opt
    values = dash_o or []
    formats = [OutputFormat(v) for v in values if v in OutputFormat.__members__]
    targets = [v for v in values if v not in OutputFormat.__members__]
    if output is not None:
        formats.append(output)
    if len(set(formats)) > 1:
        usage_error(
            "the output format is given twice: " + " and ".join(f.value for f in formats), command
        )
    if value is not None:
        targets.append(value)
    if len(targets) > 1:
        usage_error(f"the {what} is given twice: " + " and ".join(targets), command)
    if argument is None and not targets and formats and values:
        shown = next(v for v in values if v in OutputFormat.__members__)
        named = f"; for a {what} named {shown}: {flag} {shown}" if named_hint else ""
        usage_error(
            f"missing the {what}: {command} {metavar} (-o {shown} is the output format{named})",
            command,
        )
    target = given_once(
        argument,
        targets[0] if targets else None,
        what=what,
        metavar=metavar,
        flag=flag if value is not None else "-o",
        command=command,
    )
    return target, (formats[0] if formats else OutputFormat.text)


WaitOpt = Annotated[
    bool,
    typer.Option("--wait", help="Follow the instance until it ends (floxyd runs its steps)."),
]
CompletionTimeoutOpt = Annotated[
    str, typer.Option("--completion-timeout", help="With --wait: give up after (exit 3).")
]
StatusCheckOpt = Annotated[
    str, typer.Option("--status-check-interval", help="With --wait: time between checks.")
]


def start(
    workflow_arg: Annotated[
        str | None,
        typer.Argument(
            metavar="WORKFLOW",
            help="Workflow to start: name-vN, or a name for its latest version (or -o WORKFLOW).",
            show_default=False,
        ),
    ] = None,
    workflow_opt: Annotated[
        str | None,
        typer.Option(
            "--workflow",
            metavar="WORKFLOW",
            help="The workflow, whatever its name (--workflow json starts a workflow named json).",
            show_default=False,
        ),
    ] = None,
    dash_o: Annotated[
        list[str] | None,
        typer.Option(
            "-o",
            metavar="WORKFLOW|json|text",
            help="json or text: the output format (as --output); anything else: the workflow.",
            show_default=False,
        ),
    ] = None,
    input_source: RunInputOpt = None,
    wait: WaitOpt = False,
    completion_timeout: CompletionTimeoutOpt = "10m",
    status_check_interval: StatusCheckOpt = "500ms",
    output_opt: OutputFormatOpt = None,
    *,
    db: DbSettings,
) -> None:
    """Start an instance of a registered workflow; workers (floxyd) run its steps.

    Example: floxyctl start order-v1 -i input.json --wait -o json
    """
    workflow, output = _target_and_format(
        workflow_arg,
        ("--workflow", workflow_opt),
        dash_o,
        output_opt,
        what="workflow",
        metavar="WORKFLOW",
        command="floxyctl start",
        named_hint=True,
    )
    waiting = _Waiting(wait, completion_timeout, status_check_interval)
    data = _read_input(input_source)
    with open_store(db) as store:
        with guard(db, "failed to start workflow: "):
            started = time.monotonic()
            instance_id = _runtime(store).start_instance(workflow, data)
        waiting.follow(
            store,
            db,
            instance_id,
            started,
            output,
            f"Workflow instance started with ID: {instance_id}",
        )


class _Waiting:
    """`--wait` and its timings, shared by the commands that start an instance."""

    def __init__(self, wait: bool, completion_timeout: str, status_check_interval: str) -> None:
        self.wait = wait
        self.timeout_s = _parse_ms(completion_timeout, "--completion-timeout") / 1000
        self.every_s = max(_parse_ms(status_check_interval, "--status-check-interval"), 10) / 1000

    def follow(
        self,
        store: PostgresStore,
        db: DbSettings,
        instance_id: int,
        started: float,
        output: OutputFormat,
        line: str,
        document: dict[str, Any] | None = None,
    ) -> None:
        """Say what started (`line`, or `document` in json), then follow it with --wait."""
        json_output = output is OutputFormat.json
        if not self.wait:
            if json_output:
                _json({"instance_id": instance_id, **(document or {})})
            else:
                print(line)
            return
        if not json_output:
            print(line, flush=True)
        with guard(db):
            deadline = started + self.timeout_s
            note, code = _follow(
                store, instance_id, deadline, self.every_s, self.timeout_s, live=not json_output
            )
            _report(store, instance_id, json_output, time.monotonic() - started, note)
        raise typer.Exit(code)


UNCLAIMED_HINT_S = 5.0
"""How long `start --wait` lets the first step wait for a worker before it says none came."""


def _unclaimed(steps: list[StepRecord]) -> bool:
    """No worker has taken any step of the instance yet."""
    from floxy_core.status import StepStatus

    return all(s.status is StepStatus.PENDING and s.started_at is None for s in steps)


def _follow(
    store: PostgresStore,
    instance_id: int,
    deadline: float,
    every: float,
    timeout_s: float,
    *,
    live: bool = True,
) -> tuple[str | None, int]:
    """Poll until the instance ends, pauses for good, or the deadline passes; with `live`, show
    its progress on stderr meanwhile (render.Progress)."""
    from floxyctl import render

    progress = render.Progress(sys.stderr, _definition_of(store, instance_id)) if live else None
    if progress is None:
        return _poll(store, instance_id, deadline, every, timeout_s, None)
    with progress:
        return _poll(store, instance_id, deadline, every, timeout_s, progress)


def _definition_of(store: PostgresStore, instance_id: int) -> Any:
    """The definition an instance runs on, for the steps not reached yet (None if unreadable)."""
    from floxy_core.errors import FloxyError

    try:
        return store.get_definition(store.get_instance(instance_id).workflow_id)
    except FloxyError:
        return None


def _poll(
    store: PostgresStore,
    instance_id: int,
    deadline: float,
    every: float,
    timeout_s: float,
    progress: Any,
) -> tuple[str | None, int]:
    """Poll until the instance ends, pauses for good, or the deadline passes; say once on stderr
    when no worker takes the first step within UNCLAIMED_HINT_S."""
    from floxyctl.run_cmd import _exit_code

    began = time.monotonic()
    hint_at: float | None = began + UNCLAIMED_HINT_S
    while True:
        instance = store.get_instance(instance_id)
        steps = store.get_steps(instance_id)
        if progress is not None:
            progress.update(instance, steps, store.get_events(instance_id))
        if instance.status.terminal:
            return None, _exit_code(instance.status)
        note = _pause_note(instance, steps, store.get_dlq(instance_id))
        if note is not None:
            return note, exits.PAUSED
        now = time.monotonic()
        if hint_at is not None and not _unclaimed(steps):
            hint_at = None
        elif hint_at is not None and (now >= hint_at or now >= deadline):
            hint_at = None
            print(
                f"floxyctl: warning: no worker has picked up instance {instance_id} after "
                f"{now - began:.0f}s — is floxyd running against this database?",
                file=sys.stderr,
                flush=True,
            )
        if now >= deadline:
            return (
                f"Timed out after {timeout_s:g}s (--completion-timeout); "
                f"instance {instance_id} is {instance.status} and keeps going.",
                exits.TIMEOUT,
            )
        wake = deadline if hint_at is None else min(deadline, hint_at)
        time.sleep(min(every, max(0.0, wake - time.monotonic()) + 0.01))


InstanceArg = Annotated[
    str | None, typer.Argument(metavar="ID", help="Instance ID (or -o ID).", show_default=False)
]
InstanceOpt = Annotated[
    str | None,
    typer.Option("--instance", metavar="ID", help="Instance ID.", show_default=False),
]
InstanceDashO = Annotated[
    list[str] | None,
    typer.Option(
        "-o",
        metavar="ID|json|text",
        help="json or text: the output format (as --output); anything else: the instance ID.",
        show_default=False,
    ),
]
RequestedByOpt = Annotated[
    str | None,
    typer.Option(
        "--requested-by", help="Who asks (default: $USER, else floxyctl).", show_default=False
    ),
]


def _stop(
    kind: str,
    argument: str | None,
    instance_opt: str | None,
    dash_o: list[str] | None,
    reason: str,
    requested_by: str | None,
    output_opt: OutputFormat | None,
    db: DbSettings,
) -> None:
    instance, output = _target_and_format(
        argument,
        ("--instance", instance_opt),
        dash_o,
        output_opt,
        what="instance ID",
        metavar="ID",
        command=f"floxyctl {kind}",
    )
    instance_id = _parse_id(instance)
    who = requested_by or _user()
    with open_store(db) as store, guard(db, f"failed to {kind} workflow: "):
        runtime = _runtime(store)
        if kind == "cancel":
            runtime.cancel(instance_id, who, reason)
        else:
            runtime.abort(instance_id, who, reason)
        now = store.get_instance(instance_id).status.value
    if output is OutputFormat.json:
        _json({"instance_id": instance_id, "requested": kind, "status": now})
        return
    what = "cancellation" if kind == "cancel" else "abort"
    print(f"Workflow instance {instance_id} {what} requested")


def retry(
    instance: Annotated[str, typer.Argument(metavar="ID", help="Instance ID.", show_default=False)],
    input_source: Annotated[
        str | None, _new_input_option("the old instance's input; only with --from start")
    ] = None,
    start_from: Annotated[
        str,
        typer.Option(
            "--from",
            metavar="start|savepoint",
            help="Start over, or resume right after the savepoint the old instance kept, "
            "reusing the outputs of the steps before it.",
        ),
    ] = "start",
    requested_by: RequestedByOpt = None,
    wait: WaitOpt = False,
    completion_timeout: CompletionTimeoutOpt = "10m",
    status_check_interval: StatusCheckOpt = "500ms",
    output: OutputOpt = OutputFormat.text,
    *,
    db: DbSettings,
) -> None:
    """Retry a failed, cancelled or aborted instance as a new instance linked to it.

    The old instance stays as it ended. Example: floxyctl retry 42 --from savepoint --wait
    """
    instance_id = _parse_id(instance)
    if start_from not in ("start", "savepoint"):
        fail(f'invalid --from: "{start_from}" (expected start or savepoint)')
    waiting = _Waiting(wait, completion_timeout, status_check_interval)
    data = _read_input(input_source) if input_source is not None else None
    with open_store(db) as store:
        with guard(db, f"failed to retry instance {instance_id}: "):
            started = time.monotonic()
            new_id = _runtime(store).retry(
                instance_id, data, start_from=start_from, requested_by=requested_by or _user()
            )
        waiting.follow(
            store,
            db,
            new_id,
            started,
            output,
            f"Instance {instance_id} retried (from {start_from}) as instance {new_id}",
            {"retry_of": instance_id, "from": start_from},
        )


def cancel(
    instance_id: InstanceArg = None,
    instance: InstanceOpt = None,
    dash_o: InstanceDashO = None,
    reason: Annotated[str, typer.Option("--reason", help="Why.")] = "Cancelled via floxyctl",
    requested_by: RequestedByOpt = None,
    output: OutputFormatOpt = None,
    *,
    db: DbSettings,
) -> None:
    """Cancel an instance: active steps stop, completed ones are compensated, ends cancelled.

    Example: floxyctl cancel 42 --reason "customer changed their mind"
    """
    _stop("cancel", instance_id, instance, dash_o, reason, requested_by, output, db)


def abort(
    instance_id: InstanceArg = None,
    instance: InstanceOpt = None,
    dash_o: InstanceDashO = None,
    reason: Annotated[str, typer.Option("--reason", help="Why.")] = "Aborted via floxyctl",
    requested_by: RequestedByOpt = None,
    output: OutputFormatOpt = None,
    *,
    db: DbSettings,
) -> None:
    """Abort an instance: active steps stop, nothing is compensated, ends aborted.

    Example: floxyctl abort 42 --reason "runaway job"
    """
    _stop("abort", instance_id, instance, dash_o, reason, requested_by, output, db)


def decide(
    instance: Annotated[str, typer.Argument(metavar="ID", help="Instance ID.", show_default=False)],
    decision: Annotated[
        str,
        typer.Argument(
            metavar="confirm|reject", help="confirm (continue) or reject (abort the instance)."
        ),
    ],
    step: Annotated[
        str | None,
        typer.Option("--step", help="Human step name (default: the newest human step)."),
    ] = None,
    comment: Annotated[str | None, typer.Option("--comment", help="Recorded comment.")] = None,
    by: Annotated[
        str | None, typer.Option("--by", help="Who decides (default: $USER, else floxyctl).")
    ] = None,
    output: OutputOpt = OutputFormat.text,
    *,
    db: DbSettings,
) -> None:
    """Answer a human step that waits for a decision.

    Example: floxyctl decide 42 --step manager_approval confirm --comment "ok up to 500 EUR"
    """
    from floxy_core.model import StepType

    instance_id = _parse_id(instance)
    who = by or _user()
    answers = {"confirm": "confirmed", "confirmed": "confirmed"}
    answers |= {"reject": "rejected", "rejected": "rejected"}
    answer = answers.get(decision.strip().lower())
    if answer is None:
        fail(f"decision must be confirm or reject, got {decision!r}")
    with open_store(db) as store, guard(db, "failed to record the decision: "):
        name = step
        if name is None:
            humans = [s for s in store.get_steps(instance_id) if s.step_type is StepType.HUMAN]
            name = humans[-1].step_name if humans else None
        _runtime(store).decide(instance_id, name, answer, who, comment)
        now = store.get_instance(instance_id).status.value
    if output is OutputFormat.json:
        _json({"instance_id": instance_id, "step": name, "decision": answer, "status": now})
        return
    print(f"Workflow instance {instance_id}: step {name} {answer} by {who} (instance {now})")


# -- inspect / status --------------------------------------------------------------------------


def inspect(
    instance: Annotated[str, typer.Argument(metavar="ID", help="Instance ID.", show_default=False)],
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            help="Follow the instance live until it ends or pauses, then show it; exit codes "
            "as start --wait.",
        ),
    ] = False,
    status_check_interval: Annotated[
        str, typer.Option("--status-check-interval", help="With --follow: time between checks.")
    ] = "500ms",
    output: OutputOpt = OutputFormat.text,
    *,
    db: DbSettings,
) -> None:
    """Show one instance: status, times (UTC), steps, output or error (json: run's document).

    Example: floxyctl inspect 42 --follow
    """
    instance_id = _parse_id(instance)
    every = max(_parse_ms(status_check_interval, "--status-check-interval"), 10) / 1000
    json_output = output is OutputFormat.json
    with open_store(db) as store, guard(db):
        if not follow:
            _report(store, instance_id, json_output, None, times=True)
            return
        note, code = _follow(
            store, instance_id, float("inf"), every, float("inf"), live=not json_output
        )
        _report(store, instance_id, json_output, None, note, times=True)
    raise typer.Exit(code)


WAITING = "waiting"
"""How `status` shows a running instance whose human step waits for a decision."""


def _status_filter(text: str | None) -> str | None:
    """`--status` in any case: an instance status, or `waiting`."""
    from floxy_core.status import InstanceStatus

    if text is None:
        return None
    known = [s.value for s in InstanceStatus] + [WAITING]
    wanted = text.strip().lower()
    if wanted not in known:
        fail(f"--status: unknown status {text!r} (one of: {', '.join(known)})")
    return wanted


_NAMES_SHOWN = 10
"""An unknown `--workflow` lists the registered names when there are at most this many."""


def _workflow_ids(wanted: str, known: list[tuple[str, str, int, Any]]) -> list[str]:
    """The definition ids `--workflow` means: one id (name-vN), or every version of a name."""
    if any(d[0] == wanted for d in known):
        return [wanted]
    ids = [d[0] for d in known if d[1] == wanted]
    if ids:
        return ids
    names = sorted({d[1] for d in known})
    if not names:
        hint = "no workflow is registered: floxyctl register -f FILE"
    elif len(names) <= _NAMES_SHOWN:
        hint = "registered: " + ", ".join(names)
    else:
        hint = f"{len(names)} are registered: floxyctl workflows lists them"
    fail(f"--workflow: workflow {wanted!r} is not registered ({hint})")


_MAX_AGO = timedelta(days=36_500)
"""The longest duration ago `--since`/`--until` take: a century holds every instance, and
much longer ones overflow Python's timedelta."""


def _ago(value: str) -> timedelta | None:
    """`30m`, `2h`, `1h30m`, `7d`, `1d12h` (the one duration grammar); None when `value` is not
    a duration with units (a bare number is not one: `2026` is more likely a year)."""
    from floxy_core.durations import parse_seconds
    from floxy_core.errors import InputError

    try:
        seconds = parse_seconds(value)
    except InputError:
        return None
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        return timedelta.max


def _time_bound(text: str, flag: str) -> datetime | timedelta:
    """`--since`/`--until`: an ISO-8601 time (UTC when it names no zone), or a duration meaning
    that long before the database's clock."""
    value = text.strip()
    ago = _ago(value)
    if ago is not None and ago > _MAX_AGO:
        fail(f"{flag}: {text!r} is too far back (at most {_MAX_AGO.days} days)")
    if ago is not None:
        return ago
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        fail(
            f"{flag}: invalid time {text!r} (an ISO-8601 time such as 2026-12-02T13:45:00Z, "
            "or a duration ago such as 30m, 2h, 7d)"
        )
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _check_window(since: datetime | timedelta | None, until: datetime | timedelta | None) -> None:
    """Refuse a window that cannot hold anything, when both ends are of one kind."""
    if since is None or until is None or type(since) is not type(until):
        return
    empty = since >= until if isinstance(since, datetime) else since <= until  # type: ignore[operator]
    if empty:
        fail(f"--since must be before --until (got --since {since} and --until {until})")


def status(
    state: Annotated[
        str | None,
        typer.Option(
            "--status",
            help="Only instances in this status, any case (e.g. running, failed, dlq); "
            "waiting: running and waiting for a human decision.",
        ),
    ] = None,
    workflow: Annotated[
        str | None,
        typer.Option("--workflow", help="Only instances of this workflow (name-vN or name)."),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            metavar="TIME",
            help="Only instances created at or after TIME: ISO-8601 (UTC unless it says "
            "otherwise) or a duration ago (30m, 2h, 7d).",
            show_default=False,
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(
            "--until",
            metavar="TIME",
            help="Only instances created before TIME (as for --since).",
            show_default=False,
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, help="Page size: at most this many.")
    ] = 50,
    page: Annotated[int, typer.Option("--page", min=1, help="Which page, from 1.")] = 1,
    output: OutputOpt = OutputFormat.text,
    *,
    db: DbSettings,
) -> None:
    """List recent instances (newest first), a page at a time, and the counts of all instances
    by status.

    An instance waiting for a human decision is listed as `waiting` (its stored status is
    `running`). Example: floxyctl status --status failed --workflow order --since 2h --page 2
    """
    wanted = _status_filter(state)
    after = _time_bound(since, "--since") if since is not None else None
    before = _time_bound(until, "--until") if until is not None else None
    _check_window(after, before)
    with open_store(db) as store, guard(db):
        ids = None if workflow is None else _workflow_ids(workflow, store.list_definitions())
        found, more = store.list_instances_page(
            status=wanted,
            workflow_ids=ids,
            since=after,
            until=before,
            limit=limit,
            offset=(page - 1) * limit,
        )
        stats = store.listing_stats()
    next_page = page + 1 if more else None
    if output is OutputFormat.json:
        _json(
            {
                "instances": [
                    {
                        "id": row.instance.id,
                        "workflow_id": row.instance.workflow_id,
                        "status": row.shown,
                        "waiting_steps": list(row.waiting),
                        "created_at": _iso(row.instance.created_at),
                        "updated_at": _iso(row.instance.updated_at),
                        "error": row.instance.error,
                    }
                    for row in found
                ],
                "page": page,
                "next_page": next_page,
                "stats": stats,
            }
        )
        return
    if found:
        _table(
            ["ID", "WORKFLOW", "STATUS", "CREATED", "UPDATED"],
            [
                [
                    str(row.instance.id),
                    row.instance.workflow_id,
                    row.shown,
                    _when(row.instance.created_at),
                    _when(row.instance.updated_at),
                ]
                for row in found
            ],
        )
    elif page > 1:
        print(f"No instances on page {page}.")
    else:
        print("No instances match.")
    if found and (more or page > 1):
        first = (page - 1) * limit + 1
        shown = f"Page {page}: instances {first}-{first + len(found) - 1}"
        print(shown + (f"; more with --page {next_page}." if more else "; the last page."))
    print(" | ".join(f"{key.capitalize()}: {value}" for key, value in stats.items()))


# -- dlq ---------------------------------------------------------------------------------------


def dlq_list(
    instance: Annotated[
        str | None, typer.Option("--instance", help="Only records of this instance.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many.")] = 100,
    output: OutputOpt = OutputFormat.text,
    *,
    db: DbSettings,
) -> None:
    """List dead-letter records: steps that failed in a `dlq: true` flow, waiting for requeue.

    Example: floxyctl dlq list --instance 42 --output json
    """
    instance_id = _parse_id(instance) if instance is not None else None
    with open_store(db) as store, guard(db):
        records = store.get_dlq(instance_id, limit=limit)
    if output is OutputFormat.json:
        _json({"dlq": [_dlq_document(r) for r in records]})
        return
    if not records:
        print("The DLQ is empty.")
        return
    _table(
        ["ID", "INSTANCE", "WORKFLOW", "STEP", "CREATED", "REASON", "ERROR"],
        [
            [
                str(r.id),
                str(r.instance_id),
                r.workflow_id,
                r.step_name,
                _when(r.created_at),
                r.reason or "",
                " ".join((r.error or "").split())[:80],
            ]
            for r in records
        ],
    )


def _dlq_document(r: Any) -> dict[str, Any]:
    return {
        "id": r.id,
        "instance_id": r.instance_id,
        "workflow_id": r.workflow_id,
        "step": r.step_name,
        "step_type": r.step_type.value,
        "input": r.input,
        "error": r.error,
        "reason": r.reason,
        "created_at": _iso(r.created_at),
    }


DlqIdArg = Annotated[
    str, typer.Argument(metavar="DLQ_ID", help="DLQ record ID.", show_default=False)
]


def dlq_show(record: DlqIdArg, output: OutputOpt = OutputFormat.text, *, db: DbSettings) -> None:
    """Show one dead-letter record with its input and full error.

    Example: floxyctl dlq show 7 --output json
    """
    dlq_id = _parse_id(record, "DLQ record ID")
    with open_store(db) as store, guard(db):
        found = store.find_dlq(dlq_id)
    document = _dlq_document(found)
    if output is OutputFormat.json:
        _json(document)
        return
    for key in ("id", "instance_id", "workflow_id", "step", "step_type", "reason", "created_at"):
        print(f"{key}: {document[key]}")
    from floxy_core import values

    print("input: " + values.dumps(found.input))
    print("error: " + (found.error or ""))


def dlq_delete(record: DlqIdArg, output: OutputOpt = OutputFormat.text, *, db: DbSettings) -> None:
    """Delete a dead-letter record you have dealt with by hand (nothing is run).

    Example: floxyctl dlq delete 7
    """
    dlq_id = _parse_id(record, "DLQ record ID")
    with open_store(db) as store, guard(db, "failed to delete: "):
        store.delete_dlq(dlq_id)
    if output is OutputFormat.json:
        _json({"dlq_id": dlq_id, "deleted": True})
        return
    print(f"DLQ record {dlq_id} deleted")


def dlq_requeue(
    record: Annotated[
        str, typer.Argument(metavar="DLQ_ID", help="DLQ record ID.", show_default=False)
    ],
    input_source: Annotated[str | None, _new_input_option("the step's old input")] = None,
    output: OutputOpt = OutputFormat.text,
    *,
    db: DbSettings,
) -> None:
    """Requeue a dead-letter record: the step runs again and the instance resumes.

    Example: floxyctl dlq requeue 7 -i fixed-input.json
    """
    dlq_id = _parse_id(record, "DLQ record ID")
    new_input = _read_input(input_source) if input_source is not None else None
    with open_store(db) as store, guard(db, "failed to requeue: "):
        found = store.find_dlq(dlq_id)
        instance_id = _runtime(store).requeue(dlq_id, new_input)
    if output is OutputFormat.json:
        _json({"dlq_id": dlq_id, "instance_id": instance_id, "step": found.step_name})
        return
    print(f"DLQ record {dlq_id} requeued: instance {instance_id} resumes at step {found.step_name}")


# -- migrate -----------------------------------------------------------------------------------


def migrate(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would be applied; change nothing.")
    ] = False,
    show_status: Annotated[
        bool,
        typer.Option("--status", help="List every migration with when it was applied."),
    ] = False,
    output: OutputOpt = OutputFormat.text,
    *,
    db: DbSettings,
) -> None:
    """Apply pending schema migrations (the only command that changes the schema).

    Example: floxyctl migrate --status
    """
    from floxy_core.storage.postgres import migrations

    if dry_run and show_status:
        fail("--dry-run and --status do not go together: choose one")
    json_output = output is OutputFormat.json
    with connect(db) as conn, guard(db):
        if show_status:
            states = migrations.status(conn)
        else:
            changed = migrations.migrate(conn, dry_run=dry_run)
    if show_status:
        _migration_status(states, json_output)
        return
    key = "pending" if dry_run else "applied"
    if json_output:
        _json({key: [m.filename for m in changed]})
        return
    if not changed:
        print("Nothing to apply: the schema is up to date.")
    for m in changed:
        print(f"{'would apply' if dry_run else 'applied'} {m.filename}")


def _migration_status(states: list[Any], json_output: bool) -> None:
    edited = [s.migration.filename for s in states if not s.checksum_ok]
    if json_output:
        _json(
            {
                "migrations": [
                    {
                        "version": s.migration.version,
                        "file": s.migration.filename,
                        "applied_at": _iso(s.applied_at),
                        "edited": not s.checksum_ok,
                    }
                    for s in states
                ]
            }
        )
    else:
        rows = [
            [
                s.migration.filename,
                _when(s.applied_at) if s.applied_at else "pending",
                "" if s.checksum_ok else "EDITED after it was applied",
            ]
            for s in states
        ]
        _table(["MIGRATION", "APPLIED", ""], rows)
    if edited:
        fail(
            "applied migrations were changed afterwards: "
            + ", ".join(edited)
            + " (never edit a released migration; add a new one)"
        )
