"""`floxyctl run`: one workflow to completion, in-process, on the in-memory store."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from floxyctl import exits
from floxyctl.common import fail, plugins, print_warnings, refuse
from floxyctl.options import MAX_WORKERS, OutputFormat


def execute(
    *,
    file: Path,
    input_source: str | None,
    flow: str | None,
    workers: int,
    worker_interval: str,
    completion_timeout: str,
    status_check_interval: str,
    debug: bool,
    decide: list[str] | None,
    output: OutputFormat,
) -> int:
    """Check the parsed options, run the flow and return floxyctl's exit code."""
    from floxy_core.durations import parse_duration_ms
    from floxy_core.errors import InputError

    try:
        poll_ms = parse_duration_ms(worker_interval, what="--worker-interval")
        timeout_ms = parse_duration_ms(completion_timeout, what="--completion-timeout")
        status_ms = parse_duration_ms(status_check_interval, what="--status-check-interval")
    except InputError as exc:
        fail(str(exc))
    if workers < 1:
        fail(f"--workers must be at least 1, got {workers}")
    if workers > MAX_WORKERS:
        fail(f"--workers must be at most {MAX_WORKERS}, got {workers}")
    decisions = _parse_decisions(decide or [])
    workflow, handler_specs = _load(file, flow)
    _check_decisions(decisions, workflow)
    data = _run_input(input_source)
    session = _Session(
        workflow=workflow,
        handler_specs=handler_specs,
        data=data,
        workers=workers,
        poll_s=max(poll_ms, 1) / 1000,
        timeout_s=timeout_ms / 1000,
        status_s=max(status_ms, 10) / 1000,
        debug=debug,
        decisions=decisions,
        json_output=output is OutputFormat.json,
    )
    return session.run()


def _parse_decisions(items: list[str]) -> dict[str, str]:
    decisions: dict[str, str] = {}
    for item in items:
        step, sep, answer = item.partition("=")
        answer = answer.strip().lower()
        if not sep or not step.strip() or answer not in ("confirm", "reject"):
            fail(f"--decide expects STEP=confirm or STEP=reject, got {item!r}")
        decisions[step.strip()] = "confirmed" if answer == "confirm" else "rejected"
    return decisions


def _check_decisions(decisions: dict[str, str], workflow: Any) -> None:
    """A --decide for a step that is not a human step of the flow is a typo: say so."""
    from floxy_core.model import StepType

    humans = sorted(n for n, s in workflow.steps.items() if s.type is StepType.HUMAN)
    unknown = sorted(set(decisions) - set(humans))
    if unknown:
        known = ", ".join(humans) if humans else "none"
        fail(
            f"--decide names {', '.join(unknown)}, not a human step of {workflow.id} "
            f"(human steps: {known})"
        )


def _load(file: Path, flow: str | None) -> tuple[Any, Any]:
    from floxy_core.errors import InputError, ValidationError
    from floxy_core.spec import load_workflow_file

    try:
        loaded = load_workflow_file(file)
        print_warnings(loaded.warnings)
        return loaded.flow(flow), loaded
    except ValidationError as exc:
        refuse(file, exc.errors, "run")
    except InputError as exc:
        fail(str(exc))


def _run_input(source: str | None) -> Any:
    """`run`'s input: `-i -` is stdin, a value that starts with `{` or `[` is the JSON itself,
    any other value a file; without `-i`, stdin when it is not a terminal, else `{}`."""
    if source == "-":
        return _decode(sys.stdin.buffer.read(), "stdin")
    if source is not None and source.lstrip().startswith(("{", "[")):
        return _parse(source, "inline input (-i)")
    return _read_input(None if source is None else Path(source))


def _read_input(path: Path | None) -> Any:
    """Input from the file `path`, else stdin when it is not a terminal, else `{}`.

    Strict: UTF-8 only, standard JSON only, numbers kept exact, and nothing the stores cannot
    keep (NUL characters, lone surrogates, numbers out of range, deep nesting: `values.py`). An
    empty file is an error, as in the reference; empty stdin is `{}`.
    """
    if path is None:
        return {} if sys.stdin.isatty() else _decode(sys.stdin.buffer.read(), "stdin")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        fail(f"cannot read input file {path}: {exc.strerror or exc}")
    return _decode(raw, str(path), empty=f"input file {path} is empty (expected a JSON document)")


def _decode(raw: bytes, source: str, *, empty: str | None = None) -> Any:
    """The JSON document in the bytes `raw` read from `source`. Nothing at all is `{}`, or the
    error `empty` when one is given."""
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        fail(f"{source} is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})")
    if not text.strip():
        if empty is not None:
            fail(empty)
        return {}
    return _parse(text, source)


def _parse(text: str, source: str) -> Any:
    """One JSON document; an error names `source` and, for bad syntax, the line and column."""
    from floxy_core import values
    from floxy_core.errors import UnstorableValue

    try:
        return values.loads(text)
    except json.JSONDecodeError as exc:
        fail(f"{source} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")
    except ValueError as exc:
        fail(f"{source} is not valid JSON: {exc}")
    except UnstorableValue as exc:
        fail(f"{source} cannot be used as input: {exc}")


class _Session:
    """One `run`: builds the runtime, follows the instance, answers humans, handles Ctrl-C."""

    def __init__(
        self,
        *,
        workflow: Any,
        handler_specs: Any,
        data: Any,
        workers: int,
        poll_s: float,
        timeout_s: float,
        status_s: float,
        debug: bool,
        decisions: dict[str, str],
        json_output: bool,
    ) -> None:
        self.workflow = workflow
        self.file = handler_specs
        self.data = data
        self.workers = workers
        self.poll_s = poll_s
        self.timeout_s = timeout_s
        self.status_s = status_s
        self.debug = debug
        self.decisions = decisions
        self.json_output = json_output
        self.interrupts = 0
        self.handled_interrupts = 0

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        self.interrupts += 1

    def run(self) -> int:
        from floxy_core.handlers.registry import HandlerBuildError, build_handlers, close_handlers
        from floxy_core.plugins import StartVetoed
        from floxy_core.storage.memory import MemoryStore
        from floxy_core.wiring import build_runtime

        def debug_log(line: str) -> None:
            print(line, file=sys.stderr, flush=True)

        loaded = plugins()
        try:
            handlers = build_handlers(
                self.file,
                debug_log=debug_log if self.debug else None,
                plugins=loaded,
                only={s.handler for s in self.workflow.steps.values() if s.handler},
            )
        except HandlerBuildError as exc:
            refuse(self.file.path, exc.errors(self.file.path), "run")
        store = MemoryStore()
        runtime = build_runtime(
            store,
            loaded,
            handlers,
            workers=self.workers,
            poll_interval=self.poll_s,
            debug=self.debug,
        )
        runtime.register(self.workflow)
        started = time.monotonic()
        previous = signal.signal(signal.SIGINT, self._on_sigint)
        try:
            try:
                instance_id = runtime.start_instance(self.workflow.id, self.data)
            except StartVetoed as exc:
                fail(str(exc))
            try:
                runtime.start()
            except RuntimeError as exc:  # e.g. "can't start new thread" under a low ulimit
                fail(f"cannot start {self.workers} worker threads ({exc}); try fewer --workers")
            note, code = self._follow(runtime, instance_id, started)
            # The state when floxyctl stopped waiting: stopping the runtime hands unfinished
            # steps back (a step running at a completion timeout would then show as pending).
            snapshot = (
                store.get_instance(instance_id),
                store.get_steps(instance_id),
                store.get_events(instance_id),
                store.get_dlq(instance_id),
            )
        finally:
            runtime.stop(grace=0.0)
            close_handlers(handlers)
            signal.signal(signal.SIGINT, previous)
        self._report(*snapshot, elapsed=time.monotonic() - started, note=note)
        return code

    def _follow(self, runtime: Any, instance_id: int, started: float) -> tuple[str | None, int]:
        from floxy_core.status import InstanceStatus, StepStatus
        from floxyctl import render

        store = runtime.store
        # progress on stderr: a live table on a terminal, one line per change otherwise
        live = None if self.json_output else render.Progress(sys.stderr, self.workflow)
        if live is not None:
            live.start()
        deadline = started + self.timeout_s
        seen = -1
        next_frame = 0.0
        try:
            while True:
                self._handle_interrupts(runtime, instance_id)
                instance = store.get_instance(instance_id)
                status = instance.status
                if live is not None and (time.monotonic() >= next_frame or status.terminal):
                    # at the display's own rate: a table of a long flow costs its length
                    next_frame = time.monotonic() + 1 / 12
                    live.update(
                        instance, store.get_steps(instance_id), store.get_events(instance_id)
                    )
                if status.terminal:
                    return None, _exit_code(status)
                # only the rows in these statuses: reading every row on each change made a run
                # quadratic in the flow's length
                if status is InstanceStatus.DLQ and not store.get_steps(
                    instance_id, StepStatus.RUNNING
                ):
                    return (
                        "Paused: a step failed and the flow is in DLQ mode "
                        "(requeue it with floxyctl dlq requeue in database mode).",
                        exits.PAUSED,
                    )
                waiting = store.get_steps(instance_id, StepStatus.WAITING_DECISION)
                if waiting and status is InstanceStatus.RUNNING:
                    steps = store.get_steps(instance_id)
                    note = self._answer_humans(runtime, instance_id, waiting, steps, live)
                    if note is not None:
                        return note, exits.PAUSED
                if time.monotonic() >= deadline:
                    return (
                        f"Timed out after {self.timeout_s:g}s (--completion-timeout); "
                        f"instance is {status}.",
                        exits.TIMEOUT,
                    )
                seen = self._wait_change(runtime, seen, min(self.status_s, 0.1))
        finally:
            if live is not None:
                live.pause()

    def _wait_change(self, runtime: Any, seen: int, timeout: float) -> int:
        with runtime.changed:
            runtime.changed.wait_for(lambda: runtime.generation != seen, timeout)
            return int(runtime.generation)

    def _handle_interrupts(self, runtime: Any, instance_id: int) -> None:
        from floxy_core.errors import ConflictError

        while self.handled_interrupts < self.interrupts:
            self.handled_interrupts += 1
            user = os.environ.get("USER") or "floxyctl"
            kind = "cancel" if self.handled_interrupts == 1 else "abort"
            print(
                "\nfloxyctl: Ctrl-C: cancelling (compensations run; Ctrl-C again to abort)"
                if kind == "cancel"
                else "\nfloxyctl: Ctrl-C again: aborting (no compensation)",
                file=sys.stderr,
            )
            with contextlib.suppress(ConflictError):
                if kind == "cancel":
                    runtime.cancel(instance_id, user, "interrupted (Ctrl-C)")
                else:
                    runtime.abort(instance_id, user, "interrupted twice (Ctrl-C)")

    def _answer_humans(
        self, runtime: Any, instance_id: int, waiting: list[Any], steps: list[Any], live: Any
    ) -> str | None:
        """Apply --decide answers, ask on a terminal, or say why the run pauses."""
        from floxy_core.errors import ConflictError
        from floxy_core.status import StepStatus

        user = os.environ.get("USER") or "floxyctl"
        for row in waiting:
            answer = self.decisions.get(row.step_name)
            if answer is None and sys.stdin.isatty() and sys.stderr.isatty():
                if live is not None:
                    live.pause()
                try:
                    answer = _ask(
                        row.step_name,
                        row.input,
                        functools.partial(self._prompt_moot, runtime, instance_id, row.step_name),
                    )
                finally:
                    if live is not None:
                        live.resume()
                if answer is None and self._prompt_moot(runtime, instance_id, row.step_name):
                    return None  # Ctrl-C or the decision timed out: let _follow handle it
            if answer is None:
                continue
            with contextlib.suppress(ConflictError):
                runtime.decide(instance_id, row.step_name, answer, user)
            return None
        busy = any(s.status in (StepStatus.RUNNING, StepStatus.PENDING) for s in steps)
        timed = any(self.workflow.steps[r.step_name].timeout_ms for r in waiting)
        if busy or timed:  # a decision timeout will reject the step: keep waiting for it
            return None
        names = ", ".join(r.step_name for r in waiting)
        return (
            f"Paused: waiting for a human decision on {names} "
            f"(answer with --decide {waiting[0].step_name}=confirm|reject)."
        )

    def _prompt_moot(self, runtime: Any, instance_id: int, step_name: str) -> bool:
        """True when the question on screen no longer needs an answer: Ctrl-C was pressed, or
        the step stopped waiting (decision timeout) or the instance stopped running."""
        from floxy_core.status import InstanceStatus, StepStatus

        if self.interrupts > self.handled_interrupts:
            return True
        store = runtime.store
        if store.get_instance(instance_id).status is not InstanceStatus.RUNNING:
            return True
        return not any(
            s.step_name == step_name
            for s in store.get_steps(instance_id, StepStatus.WAITING_DECISION)
        )

    def _report(
        self,
        instance: Any,
        steps: list[Any],
        events: list[Any],
        dlq: list[Any],
        *,
        elapsed: float,
        note: str | None,
    ) -> None:
        from floxyctl import render

        if self.json_output:
            from floxy_core.report import instance_report

            render.print_json(instance_report(instance, steps, events, dlq))
            if note:
                print(note, file=sys.stderr)
            return
        render.summary(instance, steps, events, elapsed_s=elapsed, note=note)


def _ask(step: str, data: Any, moot: Callable[[], bool]) -> str | None:
    """Ask on the terminal; None at end of input or as soon as `moot()` says the answer is no
    longer wanted (checked every 0.1 s, so Ctrl-C is not stuck behind a blocking read)."""
    from floxy_core import values

    preview = values.dumps(data, spaced=True)
    if len(preview) > 400:
        preview = preview[:399] + "…"
    print(f"\nStep {step!r} waits for a human decision. Input: {preview}", file=sys.stderr)
    while True:
        print("Confirm (continue) or reject (abort)? [c/r] ", end="", file=sys.stderr, flush=True)
        answer = _read_line(sys.stdin.fileno(), moot)
        if answer is None:
            print(file=sys.stderr, flush=True)
            return None
        choice = answer.strip().lower()
        if choice in ("c", "confirm", "y", "yes"):
            return "confirmed"
        if choice in ("r", "reject", "n", "no"):
            return "rejected"


def _read_line(fd: int, moot: Callable[[], bool], poll_s: float = 0.1) -> str | None:
    """One line from the terminal `fd` without blocking for longer than `poll_s` at a time.

    `sys.stdin.readline()` would block through Ctrl-C: our SIGINT handler only counts, and
    Python retries the interrupted read (PEP 475).
    """
    import select

    pending = b""
    while not moot():
        try:
            ready, _, _ = select.select([fd], [], [], poll_s)
            if not ready:
                continue
            chunk = os.read(fd, 1024)
        except OSError:  # the terminal went away
            return None
        if not chunk:
            return None
        pending += chunk
        if b"\n" in pending:
            return pending.split(b"\n", 1)[0].decode("utf-8", "replace")
    return None


def _exit_code(status: Any) -> int:
    from floxy_core.status import InstanceStatus

    return {
        InstanceStatus.COMPLETED: exits.OK,
        InstanceStatus.FAILED: exits.FAILED,
        InstanceStatus.CANCELLED: exits.STOPPED,
        InstanceStatus.ABORTED: exits.STOPPED,
    }.get(status, exits.FAILED)
