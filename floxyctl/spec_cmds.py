"""`floxyctl validate` and `floxyctl graph`: check and draw workflow files without running them.

Both commands report a bad file the same way (`FILE:LINE:COL: PATH: message` per problem on
stderr, a summary line, exit 2) so editors and CI can parse either one.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from floxyctl import exits
from floxyctl.app import FileOpt, OutputOpt
from floxyctl.common import fail, plugins, plural, print_warnings
from floxyctl.options import OutputFormat

if TYPE_CHECKING:
    from floxy_core.errors import SpecError
    from floxy_core.model import WorkflowFile


class GraphFormat(StrEnum):
    mermaid = "mermaid"
    dot = "dot"


FilesOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "-f",
        "--file",
        help="Workflow YAML file to check (repeat -f to check several).",
        metavar="<path>",
        show_default=False,
    ),
]
MoreFilesArg = Annotated[
    list[Path] | None,
    typer.Argument(
        help="More files to check, e.g. what a shell glob expands to: -f examples/yaml/*.yaml.",
        metavar="[FILE]...",
        show_default=False,
    ),
]
FlowOpt = Annotated[
    str | None,
    typer.Option(
        "--flow", help="Flow to draw (name or name-vN); required if the file has several."
    ),
]
FormatOpt = Annotated[
    GraphFormat,
    typer.Option(
        "--format",
        help="mermaid: paste into Markdown or mermaid.live; dot: pipe into Graphviz (dot -Tsvg).",
    ),
]


SPEC_EPILOG = "Exit codes: 0 valid · 2 invalid file, unknown flow or bad usage."


def register(app: typer.Typer) -> None:
    app.command(epilog=SPEC_EPILOG)(validate)
    app.command(epilog=SPEC_EPILOG)(graph)


def _load(path: Path, *, build: bool = False) -> tuple[WorkflowFile | None, list[SpecError]]:
    """The loaded file, or every problem in it; never raises for a bad or missing file.

    With `build`, handlers are also created (and closed again) so that what only the handler
    types can check — plugin types and their schemas, URLs, TLS files — is reported too.
    """
    from floxy_core.errors import FloxyError, SpecError, ValidationError
    from floxy_core.handlers.registry import HandlerBuildError, build_handlers, close_handlers
    from floxy_core.spec import load_workflow_file

    try:
        loaded = load_workflow_file(path)
    except ValidationError as exc:
        return None, list(exc.errors)
    except FloxyError as exc:  # anything else the loader lets through still belongs to the file
        return None, [SpecError(str(path), 1, 1, "", str(exc))]
    if build:
        try:
            close_handlers(build_handlers(loaded, plugins=plugins()))
        except HandlerBuildError as exc:
            return None, exc.errors(str(path))
    return loaded, []


def _print_errors(errors: list[SpecError], files_with_errors: int) -> None:
    for error in errors:
        print(str(error), file=sys.stderr)
    summary = f"{plural(len(errors), 'error')} in {plural(files_with_errors, 'file')}"
    print(summary, file=sys.stderr)


def validate(
    files: FilesOpt = None,
    more_files: MoreFilesArg = None,
    output: OutputOpt = OutputFormat.text,
) -> None:
    """Check workflow files without running anything: YAML, schema, names, handlers, conditions.

    Every file is checked, and every problem of every file is reported at once as
    FILE:LINE:COL: PATH: message (on stderr); valid files print "FILE: ok (...)" on stdout.
    Warnings (e.g. a retry_strategy taken as fixed) go to stderr and do not fail the file.
    Exit 0 when every file is valid, 2 otherwise.

    \b
    Examples:
      floxyctl validate -f order.yaml
      floxyctl validate -f a.yaml -f b.yaml --output json
      floxyctl validate -f examples/yaml/*.yaml
    """
    paths = [*(files or []), *(more_files or [])]
    if not paths:
        fail("no workflow file given: floxyctl validate -f FILE [FILE...]")
    results = [(path, *_load(path, build=True)) for path in paths]
    valid = all(not errors for _, _, errors in results)
    if output is OutputFormat.json:
        import json

        document = {
            "valid": valid,
            "files": [
                {
                    "file": str(path),
                    "valid": not errors,
                    "flows": [flow.id for flow in loaded.flows] if loaded else [],
                    "errors": [error.to_json() for error in errors],
                    "warnings": [w.to_json() for w in loaded.warnings] if loaded else [],
                }
                for path, loaded, errors in results
            ],
        }
        print(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        all_errors: list[SpecError] = []
        for path, loaded, errors in results:
            if loaded is not None:
                print_warnings(loaded.warnings)
                ids = ", ".join(flow.id for flow in loaded.flows)
                print(f"{path}: ok ({plural(len(loaded.flows), 'flow')}: {ids})")
            all_errors.extend(errors)
        if all_errors:
            _print_errors(all_errors, sum(1 for _, _, errors in results if errors))
    raise typer.Exit(exits.OK if valid else exits.USAGE)


def graph(
    file: FileOpt,
    flow: FlowOpt = None,
    fmt: FormatOpt = GraphFormat.mermaid,
) -> None:
    """Print the graph of one flow: steps, branches, joins and compensations (dashed).

    The file is validated first; a bad file is reported like `floxyctl validate` does.

    \b
    Examples:
      floxyctl graph -f order.yaml > order.mmd
      floxyctl graph -f order.yaml --flow refund --format dot | dot -Tsvg > refund.svg
    """
    from floxy_core.errors import InputError

    loaded, errors = _load(file)
    if loaded is None:
        _print_errors(errors, 1)
        raise typer.Exit(exits.USAGE)
    print_warnings(loaded.warnings)
    try:
        definition = loaded.flow(flow)
    except InputError as exc:
        fail(str(exc))

    from floxyctl.graph_render import to_dot, to_mermaid

    render = to_dot if fmt is GraphFormat.dot else to_mermaid
    sys.stdout.write(render(definition))
