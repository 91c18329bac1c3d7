"""`floxyctl validate` and `floxyctl graph` as a user runs them: a real process, real files."""

from __future__ import annotations

import json
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
    assert ok == {"file": "valid.yaml", "valid": True, "flows": ["order-v1"], "errors": []}
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
