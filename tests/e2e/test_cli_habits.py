"""What users of kubectl-style CLIs type first (issue 16 item 5): `-h`, `--version`, and a
mistake on the command line answered with one line, as every other floxyctl error is."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from floxy_core import __version__
from floxy_core.errors import HandlerError
from floxy_core.ports import StepContext
from floxy_core.runtime import Runtime
from floxy_core.status import InstanceStatus, StepStatus
from floxy_core.storage.postgres import PostgresStore
from tests.e2e.conftest import floxyctl_exe
from tests.e2e.test_db_cli import Py, drive
from tests.pgcluster import Cluster

FLOW = """
handlers:
  - {name: a, exec: "echo '{\\"ok\\": true}'"}
flows:
  - name: fast
    steps: [a]
"""


def _floxyctl(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*floxyctl_exe(), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "NO_COLOR": "1", "FLOXY_NO_PLUGINS": "1"},
    )


def test_version_prints_the_version_and_exits_0() -> None:
    done = _floxyctl("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"floxyctl {__version__}"


@pytest.mark.parametrize("command", [[], ["run"], ["inspect"], ["validate"], ["dlq", "list"]])
def test_dash_h_is_help_everywhere(command: list[str]) -> None:
    short, long = _floxyctl(*command, "-h"), _floxyctl(*command, "--help")
    assert short.returncode == 0, short.stderr
    assert short.stdout.startswith("Usage: floxyctl")
    assert short.stdout == long.stdout


USAGE_MISTAKES = [
    (["run", "-f", "wf.yaml", "--bogus"], "no such option: --bogus", "floxyctl run"),
    (["run"], "missing", "floxyctl run"),
    (["run", "-f"], "option '-f' requires an argument", "floxyctl run"),
    (["run", "-f", "wf.yaml", "-w", "abc"], "'abc' is not a valid int", "floxyctl run"),
    (["run", "-f", "wf.yaml", "--output", "xml"], "'xml' is not one of", "floxyctl run"),
    (["bogus"], "no such command 'bogus'", "floxyctl"),
    (["--bogus"], "no such option: --bogus", "floxyctl"),
    (["inspect"], "missing argument 'ID'", "floxyctl inspect"),
    (["dlq", "list", "--nope"], "no such option: --nope", "floxyctl dlq list"),
]


@pytest.mark.parametrize(
    ("args", "says", "command"), USAGE_MISTAKES, ids=[" ".join(m[0]) for m in USAGE_MISTAKES]
)
def test_a_usage_mistake_is_one_line_naming_the_help_to_read(
    args: list[str], says: str, command: str, tmp_path: Path
) -> None:
    (tmp_path / "wf.yaml").write_text(FLOW)
    done = _floxyctl(*args, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("floxyctl: error: ")
    assert says in lines[0]
    assert lines[0].endswith(f" (see {command} --help)")


@pytest.mark.parametrize(
    "args",
    [
        ["--bogus"],
        ["-f", "wf.yaml", "-w", "abc"],
        ["-f", "wf.yaml", "extra"],
        ["-f", "wf.yaml", "--output", "JSON"],
    ],
    ids=" ".join,
)
def test_fast_path_and_typer_refuse_alike(args: list[str], tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(FLOW)
    fast = _floxyctl("run", *args, cwd=tmp_path)
    slow = _floxyctl("--no-plugins", "run", *args, cwd=tmp_path)
    assert (fast.returncode, fast.stdout, fast.stderr) == (
        slow.returncode,
        slow.stdout,
        slow.stderr,
    )
    assert fast.returncode == 2
    assert fast.stderr.count("\n") == 1


ECHO = """
handlers:
  - name: echo
    exec: |
      echo "$INPUT"
flows:
  - name: echo
    steps: [echo]
"""


def _run_json(
    *args: str, cwd: Path, stdin: str | None = None, fast: bool = True
) -> subprocess.CompletedProcess[str]:
    """`floxyctl run ARGS --output json` on the fast path, or through typer."""
    head = ["run"] if fast else ["--no-plugins", "run"]
    return subprocess.run(
        [*floxyctl_exe(), *head, *args, "--output", "json"],
        cwd=cwd,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "NO_COLOR": "1", "FLOXY_NO_PLUGINS": "1"},
    )


def _output(done: subprocess.CompletedProcess[str]) -> object:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["output"]


@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "typer"])
def test_run_takes_the_workflow_file_positionally_or_with_f(fast: bool, tmp_path: Path) -> None:
    (tmp_path / "echo.yaml").write_text(ECHO)
    (tmp_path / "in.json").write_text('{"via": "file"}')
    assert _output(_run_json("echo.yaml", "-i", "in.json", cwd=tmp_path, fast=fast)) == {
        "via": "file"
    }
    assert _output(_run_json("-i", "in.json", "echo.yaml", cwd=tmp_path, fast=fast)) == {
        "via": "file"
    }
    assert _output(_run_json("-f", "echo.yaml", "-i", "in.json", cwd=tmp_path, fast=fast)) == {
        "via": "file"
    }


@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "typer"])
def test_run_input_from_stdin_with_dash_or_inline(fast: bool, tmp_path: Path) -> None:
    (tmp_path / "echo.yaml").write_text(ECHO)
    piped = _run_json("echo.yaml", "-i", "-", cwd=tmp_path, stdin='{"via": "stdin"}', fast=fast)
    assert _output(piped) == {"via": "stdin"}
    inline = _run_json("echo.yaml", "-i", '{"a":1}', cwd=tmp_path, fast=fast)
    assert _output(inline) == {"a": 1}
    # inline JSON wins over stdin, as a file does
    both = _run_json("echo.yaml", "--input=[1, 2]", cwd=tmp_path, stdin="{}", fast=fast)
    assert _output(both) == [1, 2]


@pytest.mark.parametrize(
    ("args", "stdin", "says"),
    [
        (["-i", '{"a":1,}'], None, "inline input (-i) is not valid JSON: "),
        (["-i", "-"], '{\n "a": tru\n}', "stdin is not valid JSON: "),
        (["-i", "bad.json"], None, "bad.json is not valid JSON: "),
    ],
    ids=["inline", "stdin", "file"],
)
def test_bad_input_json_is_one_line_with_the_position(
    args: list[str], stdin: str | None, says: str, tmp_path: Path
) -> None:
    (tmp_path / "echo.yaml").write_text(ECHO)
    (tmp_path / "bad.json").write_text("[1,\n 2,,\n]")
    done = _run_json("echo.yaml", *args, cwd=tmp_path, stdin=stdin)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"floxyctl: error: {says}")
    assert " at line " in lines[0] and " column " in lines[0]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ([], "missing the workflow file"),
        (["echo.yaml", "-f", "echo.yaml"], "the workflow file is given twice"),
        (["echo.yaml", "other.yaml"], "got unexpected extra argument(s) (other.yaml)"),
    ],
    ids=["none", "twice", "two-files"],
)
def test_run_wants_exactly_one_workflow_file(args: list[str], says: str, tmp_path: Path) -> None:
    (tmp_path / "echo.yaml").write_text(ECHO)
    done = _floxyctl("run", *args, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith(f"floxyctl: error: {says}")
    assert done.stderr.endswith(" (see floxyctl run --help)\n")


APPROVAL = """
handlers:
  - {name: pack, exec: "echo '{}'"}
flows:
  - name: approval
    steps:
      - {type: human, name: approve}
      - pack
"""


def _db_ctl(*args: str, dsn: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOXY_", "PG"))}
    return subprocess.run(
        [*floxyctl_exe(), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        env={**env, "NO_COLOR": "1", "FLOXY_NO_PLUGINS": "1", "FLOXY_DSN": dsn},
    )


@pytest.mark.parametrize("command", ["cancel", "abort"])
def test_cancel_and_abort_take_the_id_as_an_argument_like_inspect(command: str) -> None:
    # The id is read before any connection: no database is needed to see it was taken.
    closed = "postgresql://nobody@127.0.0.1:1/none?connect_timeout=1"
    for args in (["12x"], ["-o", "12x"], ["--instance=12x"]):
        done = _db_ctl(command, *args, dsn=closed)
        assert done.returncode == 2
        assert done.stderr == 'floxyctl: error: invalid instance ID: "12x"\n'
    for args, says in (
        (["5", "-o", "5"], "the instance ID is given twice, as ID and with -o"),
        ([], f"missing the instance ID: floxyctl {command} ID (or -o ID)"),
    ):
        done = _db_ctl(command, *args, dsn=closed)
        assert done.returncode == 2
        assert done.stderr == f"floxyctl: error: {says} (see floxyctl {command} --help)\n"


def test_cancel_and_abort_by_positional_id(pg_dsn: str, tmp_path: Path) -> None:
    (tmp_path / "approval.yaml").write_text(APPROVAL)
    registered = _db_ctl("register", "-f", str(tmp_path / "approval.yaml"), dsn=pg_dsn)
    assert registered.returncode == 0, registered.stderr
    ids = []
    for _ in range(2):
        started = _db_ctl("start", "-o", "approval-v1", "--output", "json", dsn=pg_dsn)
        assert started.returncode == 0, started.stderr
        ids.append(json.loads(started.stdout)["instance_id"])
    for command, instance_id, status in (
        ("cancel", ids[0], "cancelled"),
        ("abort", ids[1], "aborted"),
    ):
        done = _db_ctl(command, str(instance_id), "--output", "json", dsn=pg_dsn)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["status"] == status
        shown = _db_ctl("inspect", str(instance_id), "--output", "json", dsn=pg_dsn)
        assert json.loads(shown.stdout)["status"] == status


# -- shell completion (issue 16 item 5) -----------------------------------------------------

COMPLETION_SCRIPTS = {
    "bash": "complete -o default -F _floxyctl_completion floxyctl",
    "zsh": "#compdef floxyctl",
    "fish": "complete --command floxyctl",
}


@pytest.mark.parametrize("shell", sorted(COMPLETION_SCRIPTS))
def test_show_completion_prints_the_script_of_the_shell_named(shell: str) -> None:
    # The shell named wins over the one floxyctl runs under (a bash script for zsh would be
    # written to ~/.zfunc without a word).
    done = _floxyctl("--show-completion", shell)
    assert done.returncode == 0, done.stderr
    assert COMPLETION_SCRIPTS[shell] in done.stdout
    assert "_FLOXYCTL_COMPLETE" in done.stdout


def test_the_completion_script_completes_commands_and_options() -> None:
    def complete(words: str) -> list[str]:
        done = subprocess.run(
            floxyctl_exe(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            stdin=subprocess.DEVNULL,
            env={
                **os.environ,
                "_FLOXYCTL_COMPLETE": "complete_bash",
                "COMP_WORDS": words,
                "COMP_CWORD": str(len(words.split()) - 1),
            },
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    assert {"start", "status"} <= set(complete("floxyctl st"))
    assert {"--workers", "--worker-interval"} <= set(complete("floxyctl run --w"))


def test_install_completion_writes_the_script_where_the_shell_reads_it(tmp_path: Path) -> None:
    done = subprocess.run(
        [*floxyctl_exe(), "--install-completion", "bash"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "HOME": str(tmp_path), "NO_COLOR": "1"},
    )
    assert done.returncode == 0, done.stderr
    script = tmp_path / ".bash_completions" / "floxyctl.sh"
    assert "_floxyctl_completion" in script.read_text()
    assert str(script) in (tmp_path / ".bashrc").read_text()


@pytest.mark.parametrize("args", [["--show-completion", "tcsh"], ["--show-completion"]])
def test_a_completion_mistake_is_one_line(args: list[str]) -> None:
    done = _floxyctl(*args)
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("floxyctl: error: "), done.stderr


# -- -o json everywhere (kubectl's -o), with the reference CLI's -o kept ----------------------


@pytest.mark.parametrize("head", [["run"], ["--no-plugins", "run"]], ids=["fast-path", "typer"])
def test_run_takes_dash_o_json(head: list[str], tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(FLOW)
    done = _floxyctl(*head, "wf.yaml", "-o", "json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "completed"
    assert json.loads(_floxyctl(*head, "wf.yaml", "-ojson", cwd=tmp_path).stdout)["output"]


@pytest.mark.parametrize(
    ("args", "key"), [(["validate", "wf.yaml"], "valid"), (["plugins"], "plugins")]
)
def test_dash_o_json_on_the_commands_without_a_database(
    args: list[str], key: str, tmp_path: Path
) -> None:
    (tmp_path / "wf.yaml").write_text(FLOW)
    done = _floxyctl(*args, "-o", "json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert key in json.loads(done.stdout)


CLOSED = "postgresql://nobody@127.0.0.1:1/none?connect_timeout=1"
"""A database nobody listens on: what is refused here is refused before connecting."""


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (
            ["start", "-o", "json"],
            "missing the workflow: floxyctl start WORKFLOW "
            "(-o json is the output format; for a workflow named json: --workflow json)",
        ),
        (["start", "-o", "a", "-o", "b"], "the workflow is given twice: a and b"),
        (["start", "-o", "a", "--workflow", "b"], "the workflow is given twice: a and b"),
        (["start", "a", "--workflow", "b"], "the workflow is given twice, as WORKFLOW and with "),
        (
            ["start", "a", "-o", "text", "--output", "json"],
            "the output format is given twice: text and json",
        ),
        (
            ["cancel", "-o", "json"],
            "missing the instance ID: floxyctl cancel ID (-o json is the output format)",
        ),
        (["abort", "-o", "5", "-o", "6"], "the instance ID is given twice: 5 and 6"),
        (["abort", "-o", "json", "-o", "text"], "the output format is given twice: json and text"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else "",
)
def test_dash_o_mistakes_on_start_cancel_abort(args: list[str], says: str) -> None:
    done = _db_ctl(*args, dsn=CLOSED)
    assert done.returncode == 2
    assert done.stdout == ""
    command = f"floxyctl {args[0]}"
    assert done.stderr.startswith(f"floxyctl: error: {says}"), done.stderr
    assert done.stderr.endswith(f" (see {command} --help)\n")
    assert done.stderr.count("\n") == 1


HABITS = """
handlers:
  - {name: pack, exec: "echo '{}'"}
flows:
  - name: approval
    steps:
      - {type: human, name: approve}
      - pack
  - name: json
    steps:
      - {type: human, name: approve}
  - name: pay
    dlq: true
    steps:
      - {name: charge, handler: charge, max_retries: 0}
"""


@pytest.fixture(scope="module")
def habits_db(pg_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One database with HABITS registered, for the tests below (a clone costs seconds)."""
    dsn = pg_cluster.create_database()
    path = tmp_path_factory.mktemp("habits") / "habits.yaml"
    path.write_text(HABITS)
    try:
        registered = _db_ctl("register", "-f", str(path), "--output", "json", dsn=dsn)
        assert registered.returncode == 0, registered.stderr
        assert {w["id"] for w in json.loads(registered.stdout)["workflows"]} == {
            "approval-v1",
            "json-v1",
            "pay-v1",
        }
        yield dsn
    finally:
        pg_cluster.drop_database(dsn)


def _db_json(*args: str, dsn: str, stdin: str | None = None) -> Any:
    done = _db_ctl(*args, dsn=dsn, stdin=stdin)
    assert done.returncode == 0, (args, done.stderr)
    return json.loads(done.stdout)


def _workflow_of(instance_id: int, dsn: str) -> str:
    return str(_db_json("inspect", str(instance_id), "-o", "json", dsn=dsn)["workflow_id"])


def test_start_dash_o_is_the_format_or_the_workflow(habits_db: str) -> None:
    dsn = habits_db
    for args in (
        ["approval-v1", "-o", "json"],
        ["-o", "json", "approval-v1"],
        ["-o", "approval-v1", "-o", "json"],
        ["-o", "json", "-o", "approval"],
        ["--workflow", "approval-v1", "--output", "json"],
    ):
        started = _db_json("start", *args, dsn=dsn)
        assert set(started) == {"instance_id"}, args
        assert _workflow_of(started["instance_id"], dsn) == "approval-v1"
    for args in (["-o", "approval-v1"], ["approval-v1"], ["approval", "-o", "text"]):
        done = _db_ctl("start", *args, dsn=dsn)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("Workflow instance started with ID: ")
    # A workflow literally named json: --workflow json, or as the argument.
    for args in (["--workflow", "json", "-o", "json"], ["json", "-o", "json"]):
        started = _db_json("start", *args, dsn=dsn)
        assert _workflow_of(started["instance_id"], dsn) == "json-v1"
    plain = _db_ctl("start", "--workflow", "json", dsn=dsn)
    assert plain.stdout.startswith("Workflow instance started with ID: "), plain.stderr


@pytest.mark.parametrize("command", ["cancel", "abort"])
def test_cancel_and_abort_dash_o_is_the_format_or_the_instance(
    command: str, habits_db: str
) -> None:
    dsn = habits_db
    ended = {"cancel": "cancelled", "abort": "aborted"}[command]
    for args in (["-o", "{}", "-o", "json"], ["{}", "-o", "json"], ["-o", "json", "-o", "{}"]):
        instance_id = _db_json("start", "approval-v1", "-o", "json", dsn=dsn)["instance_id"]
        filled = [a.replace("{}", str(instance_id)) for a in args]
        done = _db_json(command, *filled, dsn=dsn)
        assert done == {"instance_id": instance_id, "requested": command, "status": ended}
    instance_id = _db_json("start", "approval-v1", "-o", "json", dsn=dsn)["instance_id"]
    done = _db_ctl(command, "-o", str(instance_id), dsn=dsn)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"Workflow instance {instance_id} ")


def test_dash_o_json_on_every_database_command(habits_db: str, tmp_path: Path) -> None:
    dsn = habits_db
    first = _db_json("start", "approval-v1", "-o", "json", dsn=dsn)["instance_id"]
    path = tmp_path / "habits.yaml"
    path.write_text(HABITS)
    assert {
        w["result"]
        for w in _db_json("register", "-f", str(path), "-o", "json", dsn=dsn)["workflows"]
    } == {"unchanged"}
    assert _db_json("workflows", "-o", "json", dsn=dsn)["workflows"]
    assert _db_json("inspect", str(first), "-o", "json", dsn=dsn)["status"] == "running"
    assert _db_json("list", "-o", "json", dsn=dsn)["instances"]
    assert _db_json("status", "-o", "json", dsn=dsn)["stats"]["total"] >= 1
    assert _db_json("logs", str(first), "-o", "json", dsn=dsn)["logs"] == []
    assert _db_json("dlq", "list", "-o", "json", dsn=dsn)["dlq"] == []
    assert _db_json("migrate", "--status", "-o", "json", dsn=dsn)["migrations"]
    assert _db_json("migrate", "--dry-run", "-o", "json", dsn=dsn) == {"pending": []}
    _db_json("cancel", str(first), "-o", "json", dsn=dsn)
    retried = _db_json("retry", str(first), "-o", "json", dsn=dsn)
    assert retried["retry_of"] == first

    store = PostgresStore(dsn, max_size=2)
    try:
        worker = Runtime(store, {"charge": Py("charge", _declined), "pack": Py("pack", _echo)})
        waiting = _db_json("start", "approval-v1", "-o", "json", dsn=dsn)["instance_id"]
        drive(worker, waiting, lambda: _waits_for_a_human(store, waiting))
        decided = _db_json("decide", str(waiting), "confirm", "-o", "json", dsn=dsn)
        assert decided["decision"] == "confirmed"
        paid = _db_json("start", "pay-v1", "-o", "json", dsn=dsn)["instance_id"]

        def in_dlq() -> bool:
            return store.get_instance(paid).status is InstanceStatus.DLQ

        drive(worker, paid, in_dlq)
        (record,) = _db_json("dlq", "list", "--instance", str(paid), "-o", "json", dsn=dsn)["dlq"]
        assert _db_json("dlq", "show", str(record["id"]), "-o", "json", dsn=dsn) == record
        requeued = _db_json("dlq", "requeue", str(record["id"]), "-o", "json", dsn=dsn)
        assert requeued == {"dlq_id": record["id"], "instance_id": paid, "step": "charge"}
        drive(worker, paid, in_dlq)
    finally:
        store.close()
    (again,) = _db_json("dlq", "list", "--instance", str(paid), "-o", "json", dsn=dsn)["dlq"]
    deleted = _db_json("dlq", "delete", str(again["id"]), "-o", "json", dsn=dsn)
    assert deleted == {"dlq_id": again["id"], "deleted": True}


def _declined(ctx: StepContext, data: Any) -> Any:
    raise HandlerError("card declined", retryable=False)


def _echo(ctx: StepContext, data: Any) -> Any:
    return data


def _waits_for_a_human(store: PostgresStore, instance_id: int) -> bool:
    return any(s.status is StepStatus.WAITING_DECISION for s in store.get_steps(instance_id))


# -- -i as run takes it: a file, - for stdin, or the JSON itself -------------------------------


@pytest.mark.parametrize(
    ("args", "stdin", "says"),
    [
        (
            ["start", "--workflow", "approval", "-i", '{"a":1,}'],
            None,
            "inline input (-i) is not valid JSON: ",
        ),
        (
            ["start", "--workflow", "approval", "-i", "-"],
            '{\n "a": tru\n}',
            "stdin is not valid JSON: ",
        ),
        (["retry", "5", "-i", "[1,\n 2,,]"], None, "inline input (-i) is not valid JSON: "),
        (["retry", "5", "-i", "-"], "{nope", "stdin is not valid JSON: "),
        (["dlq", "requeue", "7", "-i", "{]"], None, "inline input (-i) is not valid JSON: "),
        (["dlq", "requeue", "7", "-i", "-"], "[", "stdin is not valid JSON: "),
    ],
    ids=["start-inline", "start-stdin", "retry-inline", "retry-stdin", "dlq-inline", "dlq-stdin"],
)
def test_bad_input_json_of_the_database_commands_is_one_line_with_the_position(
    args: list[str], stdin: str | None, says: str
) -> None:
    done = _db_ctl(*args, dsn=CLOSED, stdin=stdin)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"floxyctl: error: {says}")
    assert " at line " in lines[0] and " column " in lines[0]


def test_start_retry_and_requeue_take_input_from_stdin_or_inline(habits_db: str) -> None:
    # Only options that were there before -o json, so that this fails for want of -i alone.
    dsn = habits_db

    def input_of(instance_id: int) -> Any:
        return _db_json("inspect", str(instance_id), "--output", "json", dsn=dsn)["input"]

    piped = _db_json(
        "start", "--workflow", "approval", "-i", "-", "--output", "json", dsn=dsn, stdin='{"p": 1}'
    )
    assert input_of(piped["instance_id"]) == {"p": 1}
    inline = _db_json(
        "start", "--workflow", "approval", "-i", '{"a":1}', "--output", "json", dsn=dsn, stdin="{}"
    )
    assert input_of(inline["instance_id"]) == {"a": 1}
    listed = _db_json(
        "start", "--workflow", "approval", "--input=[1, 2]", "--output", "json", dsn=dsn
    )
    assert input_of(listed["instance_id"]) == [1, 2]

    _db_json("cancel", str(piped["instance_id"]), "--output", "json", dsn=dsn)
    retried = _db_json(
        "retry", str(piped["instance_id"]), "-i", '{"r": 2}', "--output", "json", dsn=dsn
    )
    assert input_of(retried["instance_id"]) == {"r": 2}
    _db_json("cancel", str(inline["instance_id"]), "--output", "json", dsn=dsn)
    again = _db_json(
        "retry",
        str(inline["instance_id"]),
        "-i",
        "-",
        "--output",
        "json",
        dsn=dsn,
        stdin='{"s": 3}',
    )
    assert input_of(again["instance_id"]) == {"s": 3}

    store = PostgresStore(dsn, max_size=2)
    try:
        worker = Runtime(store, {"charge": Py("charge", _declined)})
        paid = _db_json(
            "start", "--workflow", "pay", "-i", '{"amount": 5}', "--output", "json", dsn=dsn
        )
        paid_id = paid["instance_id"]

        def in_dlq() -> bool:
            return store.get_instance(paid_id).status is InstanceStatus.DLQ

        drive(worker, paid_id, in_dlq)
        for source, stdin, expected in (
            ('{"amount": 6}', None, {"amount": 6}),
            ("-", '{"amount": 7}', {"amount": 7}),
        ):
            (record,) = _db_json(
                "dlq", "list", "--instance", str(paid_id), "--output", "json", dsn=dsn
            )["dlq"]
            requeue = ["dlq", "requeue", str(record["id"]), "-i", source, "--output", "json"]
            assert _db_json(*requeue, dsn=dsn, stdin=stdin)["instance_id"] == paid_id
            charge = next(s for s in store.get_steps(paid_id) if s.step_name == "charge")
            assert charge.input == expected
            drive(worker, paid_id, in_dlq)
    finally:
        store.close()
