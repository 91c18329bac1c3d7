"""`floxyctl validate` and `floxyctl graph` as a user runs them: a real process, real files."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def floxyctl_cmd() -> list[str]:
    """The installed console script next to this interpreter, else `python -m floxyctl`."""
    script = Path(sys.executable).with_name("floxyctl")
    if script.exists():
        return [str(script)]
    found = shutil.which("floxyctl")
    return [found] if found else [sys.executable, "-m", "floxyctl"]


def floxyctl(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*floxyctl_cmd(), *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
    )


VALID = """\
handlers:
  - {name: reserve, exec: echo ok}
  - {name: release, exec: echo ok}
  - {name: charge, exec: echo ok}
  - {name: email, exec: echo ok}
  - {name: sms, exec: echo ok}
flows:
  - name: order
    steps:
      - name: reserve-stock
        handler: reserve
        on_failure: release
      - {type: savepoint, name: paid}
      - type: condition
        name: big
        expr: '{{ gt .amount 100 }}'
        else:
          - {name: small, handler: charge}
      - type: parallel
        name: notify
        tasks:
          - {name: mail, handler: email}
          - sms
      - {type: human, name: approve}
"""

TWO_FLOWS = """\
handlers:
  - {name: a, exec: echo ok}
flows:
  - {name: first, steps: [a]}
  - {name: second, version: 2, steps: [a]}
"""

INVALID = """\
handlers:
  - {name: a, exec: echo ok}
flows:
  - name: broken
    colour: red
    steps:
      - nope
      - {type: condition, name: c, expr: '{{ gt .x '}
"""
"""Three problems: an unknown key (line 5), an undeclared handler (7), a bad condition (8)."""


@pytest.fixture
def files(tmp_path: Path) -> Path:
    for name, text in {"valid.yaml": VALID, "two.yaml": TWO_FLOWS, "bad.yaml": INVALID}.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path


def assert_no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr + result.stdout


# --------------------------------------------------------------------------------------------
# validate


def test_validate_valid_file(files: Path) -> None:
    result = floxyctl("validate", "-f", "valid.yaml", "-f", "two.yaml", cwd=files)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "valid.yaml: ok (1 flow: order-v1)",
        "two.yaml: ok (2 flows: first-v1, second-v2)",
    ]
    assert result.stderr == ""


def test_validate_invalid_file_lists_every_error(files: Path) -> None:
    result = floxyctl("validate", "-f", "bad.yaml", cwd=files)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0].startswith("bad.yaml:5:5: flows[0].colour: unknown key")
    assert lines[1].startswith("bad.yaml:7:9: flows[0].steps[0]: ")
    assert '"nope"' in lines[1]
    assert lines[2].startswith("bad.yaml:8:")
    assert "flows[0].steps[1].expr" in lines[2]
    assert lines[3:] == ["3 errors in 1 file"]
    assert_no_traceback(result)


def test_validate_mixed_files_reports_each(files: Path) -> None:
    result = floxyctl("validate", "-f", "valid.yaml", "-f", "bad.yaml", cwd=files)
    assert result.returncode == 2
    assert result.stdout == "valid.yaml: ok (1 flow: order-v1)\n"
    assert result.stderr.splitlines()[-1] == "3 errors in 1 file"


def test_validate_json_output(files: Path) -> None:
    result = floxyctl(
        "validate", "-f", "valid.yaml", "-f", "bad.yaml", "--output", "json", cwd=files
    )
    assert result.returncode == 2
    document = json.loads(result.stdout)
    assert document["valid"] is False
    ok, bad = document["files"]
    assert ok == {
        "file": "valid.yaml",
        "valid": True,
        "flows": ["order-v1"],
        "errors": [],
        "warnings": [],
    }
    assert bad["valid"] is False
    assert bad["flows"] == []
    assert [(e["line"], e["path"]) for e in bad["errors"]] == [
        (5, "flows[0].colour"),
        (7, "flows[0].steps[0]"),
        (8, "flows[0].steps[1].expr"),
    ]
    assert set(bad["errors"][0]) == {"file", "line", "column", "path", "message"}


def test_validate_json_all_valid(files: Path) -> None:
    result = floxyctl("validate", "-f", "two.yaml", "--output", "json", cwd=files)
    assert result.returncode == 0
    assert json.loads(result.stdout)["valid"] is True


def test_validate_missing_file(files: Path) -> None:
    result = floxyctl("validate", "-f", "missing.yaml", cwd=files)
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["missing.yaml:1:1: file not found", "1 error in 1 file"]
    assert_no_traceback(result)


EVERY_ERROR_CLASS = """\
handlers:
  - {name: a, exec: echo a}
  - {name: undo, exec: echo undo}
flows:
  - name: everything_wrong
    colour: red
    steps:
      - {name: a, on_failure: undo}
      - {name: a, handler: a}
      - {name: "cond#x", handler: a}
      - {name: b, handler: a, on_failure: a}
      - {type: parallel, name: p, tasks: [{name: only, handler: a}]}
      - ghost
      - {type: condition, name: c, expr: "{{ gt .x "}
"""
"""One error of each of the seven classes the loader checks, one per line from line 6 on."""

DIAGNOSTIC = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+):(?P<col>\d+): (?P<path>\S+): (?P<msg>.+)$")


def test_validate_reports_every_error_class_of_a_file(tmp_path: Path) -> None:
    (tmp_path / "all.yaml").write_text(EVERY_ERROR_CLASS, encoding="utf-8")
    result = floxyctl("validate", "-f", "all.yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    *lines, summary = result.stderr.splitlines()
    assert summary == "7 errors in 1 file"
    found = []
    for line in lines:
        match = DIAGNOSTIC.match(line)
        assert match, f"not FILE:LINE:COL: PATH: message: {line!r}"
        found.append((match["file"], int(match["line"]), int(match["col"]), match["path"]))
    assert found == [
        ("all.yaml", 6, 5, "flows[0].colour"),
        ("all.yaml", 9, 16, "flows[0].steps[1].name"),
        ("all.yaml", 10, 16, "flows[0].steps[2].name"),
        ("all.yaml", 11, 43, "flows[0].steps[3].on_failure"),
        ("all.yaml", 12, 42, "flows[0].steps[4].tasks"),
        ("all.yaml", 13, 9, "flows[0].steps[5]"),
        ("all.yaml", 14, 42, "flows[0].steps[6].expr"),
    ]
    messages = [DIAGNOSTIC.match(line)["msg"] for line in lines]  # type: ignore[index]
    assert messages[0].startswith('unknown key "colour"')
    assert messages[1].startswith('duplicate name "a": step "a" clashes with step "a"')
    assert messages[2] == 'name "cond#x": names starting with "cond#" are reserved'
    assert messages[3] == 'compensation "a" shadows step "a" declared at 8:16'
    assert messages[4] == "a parallel block needs at least 2 tasks, got 1"
    assert messages[5].startswith('handler "ghost" is not declared under handlers')
    assert messages[6].startswith('invalid condition "{{ gt .x ": ')
    assert_no_traceback(result)


# --------------------------------------------------------------------------------------------
# validate: several files at once


def test_validate_takes_several_files_after_one_f(files: Path) -> None:
    result = floxyctl("validate", "-f", "valid.yaml", "two.yaml", cwd=files)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "valid.yaml: ok (1 flow: order-v1)",
        "two.yaml: ok (2 flows: first-v1, second-v2)",
    ]
    assert result.stderr == ""


def test_validate_mixes_repeated_f_and_extra_files(files: Path) -> None:
    (files / "bad2.yaml").write_text(INVALID.replace("colour: red", "size: xl"), encoding="utf-8")
    result = floxyctl(
        "validate", "-f", "bad.yaml", "-f", "valid.yaml", "bad2.yaml", "two.yaml", cwd=files
    )
    assert result.returncode == 2
    assert result.stdout.splitlines() == [
        "valid.yaml: ok (1 flow: order-v1)",
        "two.yaml: ok (2 flows: first-v1, second-v2)",
    ]
    *lines, summary = result.stderr.splitlines()
    assert summary == "6 errors in 2 files"
    assert [line.split(":", 1)[0] for line in lines] == ["bad.yaml"] * 3 + ["bad2.yaml"] * 3
    assert 'unknown key "size"' in lines[3]


def test_validate_a_shell_glob(files: Path) -> None:
    """`-f *.yaml` is what users type: the shell passes every match after the one -f."""
    result = subprocess.run(
        ["bash", "-c", '"$@" validate -f *.yaml', "bash", *floxyctl_cmd()],
        cwd=files,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert result.returncode == 2
    assert sorted(result.stdout.splitlines()) == [
        "two.yaml: ok (2 flows: first-v1, second-v2)",
        "valid.yaml: ok (1 flow: order-v1)",
    ]
    assert result.stderr.splitlines()[-1] == "3 errors in 1 file"
    assert all(line.startswith("bad.yaml:") for line in result.stderr.splitlines()[:-1])


def test_validate_every_example(files: Path) -> None:
    examples = sorted((Path(__file__).parents[2] / "examples" / "yaml").glob("*.yaml"))
    assert len(examples) > 3
    result = floxyctl("validate", "-f", *examples, cwd=files)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == len(examples)
    assert result.stderr == ""


def test_validate_several_files_json(files: Path) -> None:
    result = floxyctl(
        "validate", "-f", "two.yaml", "bad.yaml", "missing.yaml", "--output", "json", cwd=files
    )
    assert result.returncode == 2
    assert result.stderr == ""
    document = json.loads(result.stdout)
    assert [(f["file"], f["valid"], len(f["errors"])) for f in document["files"]] == [
        ("two.yaml", True, 0),
        ("bad.yaml", False, 3),
        ("missing.yaml", False, 1),
    ]


def test_validate_without_a_file_is_a_usage_error(files: Path) -> None:
    result = floxyctl("validate", cwd=files)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "floxyctl: error: no workflow file given: floxyctl validate -f FILE [FILE...]"
    ]


# --------------------------------------------------------------------------------------------
# validate: reference compatibility

LENIENT = """\
handlers:
  - {name: a, exec: echo a}
flows:
  - name: lenient
    steps:
      - {name: a, retry_strategy: backoff, metadata: {retry_strategy: anything}}
      - {type: condition, name: c, expr: "", condition: "{{ gt .x 1 }}"}
"""


def test_unknown_retry_strategy_is_a_warning(tmp_path: Path) -> None:
    (tmp_path / "lenient.yaml").write_text(LENIENT, encoding="utf-8")
    result = floxyctl("validate", "-f", "lenient.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "lenient.yaml: ok (1 flow: lenient-v1)\n"
    assert result.stderr.splitlines() == [
        "floxyctl: warning: lenient.yaml:6:35: flows[0].steps[0].retry_strategy: "
        'unknown retry_strategy "backoff" is treated as fixed '
        "(expected fixed, linear or exponential)"
    ]
    as_json = floxyctl("validate", "-f", "lenient.yaml", "--output", "json", cwd=tmp_path)
    assert as_json.returncode == 0 and as_json.stderr == ""
    (entry,) = json.loads(as_json.stdout)["files"]
    assert [(w["line"], w["path"]) for w in entry["warnings"]] == [
        (6, "flows[0].steps[0].retry_strategy")
    ]


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ('expr: ""', "flows[0].steps[0].expr: must not be empty"),
        ('expr: "", condition: ""', "flows[0].steps[0].condition: must not be empty"),
        ('expr: "", condition: "{{ gt .x "', "flows[0].steps[0].condition: invalid condition"),
    ],
)
def test_an_empty_expr_falls_back_to_condition(
    tmp_path: Path, condition: str, message: str
) -> None:
    (tmp_path / "c.yaml").write_text(
        f"flows:\n  - name: f\n    steps:\n      - {{type: condition, name: c, {condition}}}\n",
        encoding="utf-8",
    )
    result = floxyctl("validate", "-f", "c.yaml", cwd=tmp_path)
    assert result.returncode == 2
    first = result.stderr.splitlines()[0]
    assert first.startswith("c.yaml:4:") and message in first, result.stderr


GO_TEMPLATE = """\
flows:
  - name: f
    steps:
      - type: condition
        name: mug
        expr: '{{ if eq (slice .sku 0 4) "MUG-" }}true{{ else }}false{{ end }}'
      - type: condition
        name: loop
        expr: '{{ range $i, $v := .l }}{{ if gt $v 1 }}{{ break }}{{ end }}{{ end }}true'
"""


def test_validate_accepts_go_template_conditions_and_reports_a_misspelled_function(
    tmp_path: Path,
) -> None:
    (tmp_path / "go.yaml").write_text(GO_TEMPLATE, encoding="utf-8")
    result = floxyctl("validate", "-f", "go.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (tmp_path / "typo.yaml").write_text(GO_TEMPLATE.replace("slice", "slise"), encoding="utf-8")
    result = floxyctl("validate", "-f", "typo.yaml", cwd=tmp_path)
    assert result.returncode == 2
    first = result.stderr.splitlines()[0]
    assert first.startswith("typo.yaml:6:") and 'function "slise" not defined at 10' in first, first


# --------------------------------------------------------------------------------------------
# graph


def test_graph_mermaid(files: Path) -> None:
    result = floxyctl("graph", "-f", "valid.yaml", cwd=files)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert text.startswith("flowchart TD\n")
    assert '["reserve-stock<br/>handler: reserve"]' in text
    assert "-.->|on_failure|" in text
    assert "-->|true|" in text
    assert "-->|false|" in text
    assert '[/"notify (parallel)"\\]' in text
    assert '(("notify_join (all)"))' in text
    assert '"⤺ paid"' in text
    assert '"👤 approve"' in text
    assert "class " in text and " compensation;" in text


def test_graph_dot(files: Path) -> None:
    result = floxyctl("graph", "-f", "valid.yaml", "--format", "dot", cwd=files)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert text.startswith('digraph "order-v1" {\n')
    assert 'label="on_failure", style=dashed' in text
    assert 'label="true"' in text and 'label="false"' in text
    assert "shape=diamond" in text and "shape=trapezium" in text and "shape=circle" in text
    dot = shutil.which("dot")
    assert dot, "graphviz `dot` is needed to check DOT output (scripts/test.sh installs it)"
    parsed = subprocess.run(
        [dot, "-Tsvg"], input=text, capture_output=True, text=True, timeout=60, check=False
    )
    assert parsed.returncode == 0, parsed.stderr
    assert "<svg" in parsed.stdout


def test_graph_is_deterministic(files: Path) -> None:
    first = floxyctl("graph", "-f", "valid.yaml", cwd=files).stdout
    assert first and floxyctl("graph", "-f", "valid.yaml", cwd=files).stdout == first


def test_graph_needs_flow_when_file_has_several(files: Path) -> None:
    result = floxyctl("graph", "-f", "two.yaml", cwd=files)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "first" in result.stderr and "second" in result.stderr
    assert "--flow" in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert_no_traceback(result)


def test_graph_picks_flow(files: Path) -> None:
    result = floxyctl(
        "graph", "-f", "two.yaml", "--flow", "second-v2", "--format", "dot", cwd=files
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith('digraph "second-v2" {')


def test_graph_invalid_file_reports_like_validate(files: Path) -> None:
    result = floxyctl("graph", "-f", "bad.yaml", cwd=files)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0].startswith("bad.yaml:5:5: ")
    assert lines[-1] == "3 errors in 1 file"
    assert_no_traceback(result)


def test_graph_missing_file(files: Path) -> None:
    result = floxyctl("graph", "-f", "missing.yaml", cwd=files)
    assert result.returncode == 2
    assert "missing.yaml:1:1: file not found" in result.stderr
    assert_no_traceback(result)


def test_help_texts_teach(files: Path) -> None:
    for command in ("validate", "graph"):
        result = floxyctl(command, "--help", cwd=files)
        assert result.returncode == 0
        assert f"floxyctl {command} -f" in result.stdout  # an example
        assert "--output" in result.stdout or "--format" in result.stdout
    validate = floxyctl("validate", "--help", cwd=files).stdout
    assert "[FILE]..." in validate and "*.yaml" in validate
