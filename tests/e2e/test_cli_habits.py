"""What users of kubectl-style CLIs type first (issue 16 item 5): `-h`, `--version`, and a
mistake on the command line answered with one line, as every other floxyctl error is."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from floxy_core import __version__
from tests.e2e.conftest import floxyctl_exe

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


def _db_ctl(*args: str, dsn: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOXY_", "PG"))}
    return subprocess.run(
        [*floxyctl_exe(), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
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
