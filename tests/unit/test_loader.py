"""The workflow loader: every error class at its file, line, column and path."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent
from typing import Any

import pytest

from floxy_core.errors import SpecError, ValidationError
from floxy_core.spec.loader import Document, format_path, load_document, load_file

HANDLERS = """\
handlers:
  - {name: a, exec: echo a}
  - {name: b, exec: echo b}
  - {name: undo, exec: echo undo}
"""
"""Lines 1-4 of most documents below; their flows start on line 5."""


def doc(text: str) -> str:
    return HANDLERS + dedent(text)


def errors_of(text: str, *, path: str = "wf.yaml", **kw: Any) -> list[SpecError]:
    with pytest.raises(ValidationError) as info:
        load_document(text, path, **kw)
    return info.value.errors


def only_error(text: str, **kw: Any) -> SpecError:
    errors = errors_of(text, **kw)
    assert len(errors) == 1, "\n".join(map(str, errors))
    return errors[0]


def at(err: SpecError) -> tuple[str, int, int, str]:
    return (err.file, err.line, err.column, err.path)


def col(text: str, line: int, token: str, nth: int = 1) -> int:
    """1-based column of the nth `token` on `line` of `text`: where an error should point."""
    source = text.splitlines()[line - 1]
    index = -1
    for _ in range(nth):
        index = source.index(token, index + 1)
    return index + 1


def test_col_helper() -> None:
    assert col("ab\n  x: x\n", 2, "x") == 3
    assert col("ab\n  x: x\n", 2, "x", 2) == 6


# --------------------------------------------------------------------------------------------
# Valid documents


VALID = doc(
    """\
    flows:
      - name: order
        steps:
          - a
          - name: charge
            handler: b
            on_failure: undo
            retry_strategy: ""
          - name: ship
            handler: a
            on_failure: undo
          - {type: save_point, name: sp}
          - type: parallel
            name: p
            tasks:
              - {name: a2, handler: a}
              - {name: pb, handler: b, on_failure: {handler: undo, name: undo_pb}}
    """
)


def test_valid_document_loads_as_plain_data() -> None:
    document = load_document(VALID, "wf.yaml")
    assert document.path == "wf.yaml"
    assert document.warnings == ()
    steps = document.data["flows"][0]["steps"]
    assert steps[0] == "a"
    assert steps[3] == {"type": "save_point", "name": "sp"}  # aliases are not normalised
    assert steps[1]["retry_strategy"] == ""

    def check_plain(node: Any) -> None:
        assert type(node) in (dict, list, str, int, float, bool, type(None)), type(node)
        if isinstance(node, dict):
            for key, value in node.items():
                assert type(key) is str
                check_plain(value)
        elif isinstance(node, list):
            for value in node:
                check_plain(value)

    check_plain(document.data)


def test_scalars_become_plain_python_types() -> None:
    document = load_document(
        doc(
            """\
            flows:
              - name: f
                dlq: &t true
                version: &v 2
                steps:
                  - name: a
                    metadata:
                      flag: *t
                      n: *v
                      f: 1.5
                      s: |
                        text
                      d: 2024-01-02
                      7: seven
            """
        )
    )
    flow = document.data["flows"][0]
    assert flow["dlq"] is True and flow["version"] == 2 and type(flow["version"]) is int
    meta = flow["steps"][0]["metadata"]
    assert meta == {"flag": True, "n": 2, "f": 1.5, "s": "text\n", "d": "2024-01-02", "7": "seven"}
    assert type(meta["flag"]) is bool and type(meta["f"]) is float and type(meta["s"]) is str


def test_same_compensation_on_many_steps_is_fine() -> None:
    load_document(VALID)  # `undo` compensates charge and ship


def test_where_returns_positions_of_values_items_and_keys() -> None:
    document = load_document(VALID, "wf.yaml")
    assert document.where(()) == (1, 1)
    assert document.where(("flows",)) == (6, 3)  # the `-` of the first flow
    assert document.where(("flows", 0)) == (6, 5)
    assert document.where(("flows", 0, "name")) == (6, 11)
    assert document.where(("flows", 0, "steps", 0)) == (8, 9)  # shorthand `a`
    assert document.where(("flows", 0, "steps", 1)) == (9, 9)
    assert document.where(("flows", 0, "steps", 1, "handler")) == (10, 18)
    assert document.where(("flows", 0, "steps", 3, "type")) == (16, 16)
    on_failure_name = ("flows", 0, "steps", 4, "tasks", 1, "on_failure", "name")
    assert document.where(on_failure_name) == (21, col(VALID, 21, "undo_pb"))
    assert document.where_key(on_failure_name) == (21, col(VALID, 21, "name", 2))
    assert document.where_key(("flows", 0, "steps", 1, "handler")) == (10, 9)
    # unknown paths fall back to the nearest ancestor
    assert document.where(("flows", 0, "steps", 1, "nope", 3)) == (9, 9)
    assert document.where(("nope",)) == (1, 1)


def test_where_of_an_empty_value_is_its_key() -> None:
    text = doc("flows:\n  - name: f\n    description:\n    steps: [a]\n")
    err = only_error(text)
    assert at(err) == ("wf.yaml", 7, 5, "flows[0].description")
    assert err.message == "expected a string, got nothing (null)"


def test_format_path() -> None:
    assert format_path(("flows", 0, "steps", 2, "handler")) == "flows[0].steps[2].handler"
    assert format_path(("flows", 0, "steps", 2, "branches", 1, 0)) == (
        "flows[0].steps[2].branches[1][0]"
    )
    assert format_path(()) == ""
    assert format_path(("tls",)) == "tls"


# --------------------------------------------------------------------------------------------
# Stage 1: reading and YAML


def test_yaml_syntax_error_has_line_and_column() -> None:
    err = only_error(doc("flows:\n  - name: f\n    steps: x: y\n"))
    assert at(err) == ("wf.yaml", 7, 13, "")
    assert "YAML syntax error" in err.message
    assert "mapping values are not allowed" in err.message
    assert str(err).startswith("wf.yaml:7:13: YAML syntax error")


def test_unclosed_flow_sequence_points_at_the_end() -> None:
    err = only_error(doc("flows:\n  - name: f\n    steps: [a\n"))
    assert (err.line, err.column) == (8, 1)
    assert "while parsing a flow sequence at line 7" in err.message


def test_duplicate_key() -> None:
    err = only_error(doc("flows:\n  - name: f\n    steps: [a]\n    name: g\n"))
    assert at(err) == ("wf.yaml", 8, 5, "")
    assert err.message == 'duplicate key "name" in the mapping starting at line 6'


def test_control_character_is_a_syntax_error() -> None:
    err = only_error("flows:\n  - name: \x07\n")
    assert (err.line, err.column) == (2, 11)
    assert "YAML syntax error" in err.message


@pytest.mark.parametrize("text", ["", "\n", "# nothing here\n", "---\n"])
def test_empty_file(text: str) -> None:
    err = only_error(text)
    assert at(err) == ("wf.yaml", 1, 1, "")
    assert "empty" in err.message


def test_no_flows() -> None:
    err = only_error(HANDLERS)
    assert at(err) == ("wf.yaml", 1, 1, "")
    assert err.message == 'missing required key "flows"'
    err = only_error(HANDLERS + "flows: []\n")
    assert at(err) == ("wf.yaml", 5, 8, "flows")
    assert err.message == "must not be empty"


def test_top_level_must_be_a_mapping() -> None:
    err = only_error("- a\n- b\n")
    assert at(err) == ("wf.yaml", 1, 1, "")
    assert err.message == "expected a mapping at the top level, got a list"


def test_alias_bomb_is_one_error() -> None:
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 9):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]")
    lines.append("flows: *l8")
    err = only_error("\n".join(lines) + "\n")
    assert err.message.startswith("document too large")


def test_deep_nesting_is_one_error() -> None:
    err = only_error("flows: " + "[" * 80 + "]" * 80 + "\n")
    assert "nesting deeper than" in err.message


def test_unreadable_files(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    with pytest.raises(ValidationError) as info:
        load_file(missing)
    [err] = info.value.errors
    assert at(err) == (str(missing), 1, 1, "")
    assert err.message == "file not found"

    with pytest.raises(ValidationError) as info:
        load_file(tmp_path)
    assert [e.message for e in info.value.errors] == ["is a directory, not a file"]

    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("flows:\n  - name: caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ValidationError) as info:
        load_file(str(latin1))
    [err] = info.value.errors
    assert at(err) == (str(latin1), 2, 14, "")
    assert err.message.startswith("not valid UTF-8 (byte 0xe9")


def test_unreadable_file_permission_denied_even_as_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def deny(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", deny)
    with pytest.raises(ValidationError) as info:
        load_file(tmp_path / "x.yaml")
    assert [(e.file, e.line, e.column, e.message) for e in info.value.errors] == [
        (str(tmp_path / "x.yaml"), 1, 1, "permission denied")
    ]


def test_load_file_reads_and_names_the_file(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("\ufeff" + VALID, encoding="utf-8")  # a BOM is tolerated
    document = load_file(good)
    assert isinstance(document, Document)
    assert document.path == str(good)
    assert document.where(("flows", 0, "name")) == (6, 11)


# --------------------------------------------------------------------------------------------
# Stage 2: schema errors


def test_unknown_key_points_at_the_key() -> None:
    err = only_error(doc("flows:\n  - name: f\n    steps:\n      - name: a\n        retries: 3\n"))
    assert at(err) == ("wf.yaml", 9, 9, "flows[0].steps[0].retries")
    assert err.message.startswith('unknown key "retries" (allowed: name, type, handler, ')
    assert err.message.endswith('did you mean "max_retries"?')
    assert str(err).startswith("wf.yaml:9:9: flows[0].steps[0].retries: unknown key")


def test_unknown_key_at_top_level_and_in_flow() -> None:
    errors = errors_of(doc("flows:\n  - name: f\n    retry: 1\n    steps: [a]\nextra: 1\n"))
    assert [at(e) for e in errors] == [
        ("wf.yaml", 7, 5, "flows[0].retry"),
        ("wf.yaml", 9, 1, "extra"),
    ]
    assert errors[1].message == 'unknown key "extra" (allowed: tls, handlers, flows)'


def test_missing_required_points_at_the_mapping() -> None:
    err = only_error(doc("flows:\n  - name: f\n    steps:\n      - handler: a\n"))
    assert at(err) == ("wf.yaml", 8, 9, "flows[0].steps[0]")
    assert err.message == 'missing required key "name"'


def test_missing_exec_of_handler() -> None:
    err = only_error("handlers:\n  - name: a\nflows: [{name: f, steps: [a]}]\n")
    assert at(err) == ("wf.yaml", 2, 5, "handlers[0]")
    assert err.message == 'missing required key "exec"'


def test_wrong_type() -> None:
    text = doc("flows:\n  - name: f\n    steps:\n      - {name: a, max_retries: abc}\n")
    err = only_error(text)
    assert at(err) == ("wf.yaml", 8, col(text, 8, "abc"), "flows[0].steps[0].max_retries")
    assert err.column == 32
    assert err.message == 'expected an integer, got "abc"'


def test_wrong_type_of_a_step_is_one_message() -> None:
    err = only_error(doc("flows:\n  - name: f\n    steps:\n      - 42\n"))
    assert at(err) == ("wf.yaml", 8, 9, "flows[0].steps[0]")
    assert err.message == "expected a string or a mapping, got 42"


def test_bad_duration() -> None:
    text = doc("flows:\n  - name: f\n    steps:\n      - {name: a, delay: 5 minutes}\n")
    err = only_error(text)
    assert at(err) == ("wf.yaml", 8, col(text, 8, "5 min"), "flows[0].steps[0].delay")
    assert err.message == 'invalid duration "5 minutes" (use milliseconds or 250ms, 2s, 5m, 1h)'


def test_unknown_retry_strategy_is_fixed_with_a_warning() -> None:
    """The reference silently treats an unknown strategy as fixed; we load it and say so."""
    text = doc("flows:\n  - name: f\n    steps:\n      - {name: a, retry_strategy: fast}\n")
    document = load_document(text, "wf.yaml")
    [warning] = document.warnings
    assert at(warning) == ("wf.yaml", 8, col(text, 8, "fast"), "flows[0].steps[0].retry_strategy")
    assert "fast" in warning.message and "fixed" in warning.message


def test_unknown_step_type_is_one_message() -> None:
    text = doc("flows:\n  - name: f\n    steps:\n      - {type: loop, name: x, times: 3}\n")
    err = only_error(text)  # not also 'unknown key "times"': the shape is unknown
    assert at(err) == ("wf.yaml", 8, col(text, 8, "loop"), "flows[0].steps[0].type")
    assert err.message == (
        'unknown step type "loop" (expected task, parallel, condition, savepoint, fork, human)'
    )


def test_errors_come_from_the_shape_the_type_selects() -> None:
    text = doc(
        """\
        flows:
          - name: f
            steps:
              - type: fork
                name: fk
                branches: [[a], [b]]
                join: {name: j, strategy: some}
              - type: condition
                name: c
                else: [undo]
        """
    )
    errors = errors_of(text)
    assert [(at(e), e.message) for e in errors] == [
        (
            ("wf.yaml", 11, col(text, 11, "some"), "flows[0].steps[0].join.strategy"),
            'must be one of all, any (got "some")',
        ),
        (("wf.yaml", 12, 9, "flows[0].steps[1]"), 'missing required key "expr" or "condition"'),
    ]


def test_parallel_tasks_must_be_tasks() -> None:
    text = doc(
        "flows:\n  - name: f\n    steps:\n      - type: parallel\n        name: p\n"
        "        tasks: [a, {type: human, name: h}]\n"
    )
    err = only_error(text)
    assert at(err) == ("wf.yaml", 10, col(text, 10, "human"), "flows[0].steps[0].tasks[1].type")
    assert err.message == 'a parallel block can only hold tasks, got type "human"'


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("max_retries", "-1", "must not be negative, got -1"),
        ("timeout", "-5", "must not be negative, got -5"),
        ("retry_max_delay", "-5", "must not be negative, got -5"),
        ("priority", "-2", "must not be negative, got -2"),
        ("priority", "101", "must be at most 100, got 101"),
    ],
)
def test_negative_and_out_of_range_numbers(field: str, value: str, message: str) -> None:
    text = doc(f"flows:\n  - name: f\n    steps:\n      - {{name: a, {field}: {value}}}\n")
    err = only_error(text)
    assert at(err) == ("wf.yaml", 8, col(text, 8, value), f"flows[0].steps[0].{field}")
    assert err.message == message


def test_empty_name() -> None:
    err = only_error(doc("flows:\n  - name: ''\n    steps: [a]\n"))
    assert at(err) == ("wf.yaml", 6, 11, "flows[0].name")
    assert err.message == "must not be empty"


def test_bad_plugin_handler_type() -> None:
    text = "handlers:\n  - {name: k, type: Kafka}\nflows: [{name: f, steps: [k]}]\n"
    err = only_error(text)
    assert at(err) == ("wf.yaml", 2, col(text, 2, "Kafka"), "handlers[0].type")
    assert err.message.startswith('invalid handler type "Kafka"')


# --------------------------------------------------------------------------------------------
# Stage 3: semantic checks


def test_duplicate_step_in_main_list() -> None:
    err = only_error(doc("flows:\n  - name: f\n    steps:\n      - a\n      - {name: a}\n"))
    assert at(err) == ("wf.yaml", 9, 16, "flows[0].steps[1].name")
    assert err.message == 'duplicate name "a": step "a" clashes with step "a" declared at 8:9'


def test_duplicate_step_in_parallel() -> None:
    text = doc(
        """\
        flows:
          - name: f
            steps:
              - type: parallel
                name: p
                tasks: [a, {name: a, handler: b}]
        """
    )
    err = only_error(text)
    assert at(err) == ("wf.yaml", 10, 27, "flows[0].steps[0].tasks[1].name")
    assert 'clashes with step "a" declared at 10:17' in err.message


def test_duplicate_step_in_else_branch() -> None:
    text = doc(
        """\
        flows:
          - name: f
            steps:
              - b
              - type: condition
                name: c
                expr: "{{ true }}"
                else:
                  - {name: b}
        """
    )
    err = only_error(text)
    assert at(err) == ("wf.yaml", 13, 20, "flows[0].steps[1].else[0].name")
    assert err.message == 'duplicate name "b": step "b" clashes with step "b" declared at 8:9'


def test_duplicate_step_across_fork_branches() -> None:
    text = doc(
        """\
        flows:
          - name: f
            steps:
              - type: fork
                name: fk
                branches:
                  - [a]
                  - [b, a]
        """
    )
    err = only_error(text)
    assert at(err) == ("wf.yaml", 12, col(text, 12, "a"), "flows[0].steps[0].branches[1][1]")
    assert f'step "a" clashes with step "a" declared at 11:{col(text, 11, "a")}' in err.message


def test_step_named_like_a_parallel_join() -> None:
    text = doc(
        """\
        flows:
          - name: f
            steps:
              - type: parallel
                name: p
                tasks: [a, b]
              - {name: p_join, handler: a}
        """
    )
    err = only_error(text)
    assert at(err) == ("wf.yaml", 11, col(text, 11, "p_join"), "flows[0].steps[1].name")
    assert err.message == (
        'duplicate name "p_join": step "p_join" clashes with join "p_join" of parallel "p" '
        f"declared at 9:{col(text, 9, 'p')}"  # the join is implicit: its parallel's name
    )


def test_fork_join_named_like_a_step() -> None:
    text = doc(
        """\
        flows:
          - name: f
            steps:
              - a
              - type: fork
                name: fk
                branches: [[b], [undo]]
                join: {name: a}
        """
    )
    err = only_error(text)
    assert at(err) == ("wf.yaml", 12, col(text, 12, "a}"), "flows[0].steps[1].join.name")
    assert f'join "a" of fork "fk" clashes with step "a" declared at 8:{col(text, 8, "a")}' in (
        err.message
    )


def test_default_fork_join_name_is_reserved_too() -> None:
    text = doc(
        """\
        flows:
          - name: f
            steps:
              - type: fork
                name: fk
                branches: [[a], [b]]
              - {name: fk_join, handler: a}
        """
    )
    err = only_error(text)
    assert at(err) == ("wf.yaml", 11, col(text, 11, "fk_join"), "flows[0].steps[1].name")
    assert 'clashes with join "fk_join" of fork "fk"' in err.message


def test_compensation_shadows_step() -> None:
    text = doc(
        """\
        flows:
          - name: f
            steps:
              - {name: undo, handler: a}
              - {name: pay, handler: b, on_failure: undo}
        """
    )
    err = only_error(text)
    assert at(err) == ("wf.yaml", 9, 45, "flows[0].steps[1].on_failure")
    assert err.message == 'compensation "undo" shadows step "undo" declared at 8:16'


def test_compensation_mapping_name_shadows_step() -> None:
    text = doc(
        """\
        flows:
          - name: f
            steps:
              - name: pay
                handler: b
                on_failure: {handler: undo, name: ship}
              - {name: ship, handler: a}
        """
    )
    err = only_error(text)
    assert at(err) == ("wf.yaml", 10, 43, "flows[0].steps[0].on_failure.name")
    assert err.message == 'compensation "ship" shadows step "ship" declared at 11:16'


def test_compensation_defined_two_ways() -> None:
    text = doc(
        """\
        flows:
          - name: f
            steps:
              - {name: pay, handler: b, on_failure: undo}
              - {name: ship, handler: a, on_failure: {handler: undo, max_retries: 9}}
        """
    )
    err = only_error(text)
    assert at(err) == ("wf.yaml", 9, 56, "flows[0].steps[1].on_failure.handler")
    assert err.message == 'compensation "undo" is defined differently at 8:45'


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("_root_", 'name "_root_" is reserved'),
        ("cond#x", 'name "cond#x": names starting with "cond#" are reserved'),
    ],
)
def test_reserved_names(name: str, message: str) -> None:
    text = doc(
        f"flows:\n  - name: f\n    steps:\n      - a\n      - {{type: savepoint, name: '{name}'}}\n"
    )
    err = only_error(text)
    assert at(err) == ("wf.yaml", 9, 33, "flows[0].steps[1].name")
    assert err.message == message


def test_reserved_parallel_name_is_reported_once() -> None:
    text = doc(
        "flows:\n  - name: f\n    steps:\n      - {type: parallel, name: 'cond#p', tasks: [a, b]}\n"
    )
    err = only_error(text)
    assert at(err) == ("wf.yaml", 8, 32, "flows[0].steps[0].name")


def undeclared(name: str, implicit: bool = False) -> str:
    message = f'handler "{name}" is not declared under handlers'
    return message + (
        " (a task without handler: calls the handler named like the step)" if implicit else ""
    )


def test_undeclared_handler_is_an_error() -> None:
    text = doc(
        """\
        flows:
          - name: f
            steps:
              - zeta
              - {name: s, handler: eta}
              - {name: theta, on_failure: iota}
        """
    )
    errors = errors_of(text)
    assert [(at(e), e.message) for e in errors] == [
        (("wf.yaml", 8, col(text, 8, "zeta"), "flows[0].steps[0]"), undeclared("zeta", True)),
        (("wf.yaml", 9, col(text, 9, "eta"), "flows[0].steps[1].handler"), undeclared("eta")),
        (
            ("wf.yaml", 10, col(text, 10, "theta"), "flows[0].steps[2].name"),
            undeclared("theta", True),
        ),
        (
            ("wf.yaml", 10, col(text, 10, "iota"), "flows[0].steps[2].on_failure"),
            undeclared("iota"),
        ),
    ]


def test_undeclared_handler_is_a_warning_for_the_daemon() -> None:
    text = doc("flows:\n  - name: f\n    steps:\n      - zeta\n      - {name: s, handler: eta}\n")
    document = load_document(text, "wf.yaml", require_handlers=False)
    assert [(at(w), w.message) for w in document.warnings] == [
        (("wf.yaml", 8, 9, "flows[0].steps[0]"), undeclared("zeta", True)),
        (("wf.yaml", 9, col(text, 9, "eta"), "flows[0].steps[1].handler"), undeclared("eta")),
    ]
    assert document.data["flows"][0]["steps"][0] == "zeta"
    # other errors are still errors
    errors = errors_of(text + "      - zeta\n", require_handlers=False)
    assert [e.message for e in errors] == [
        'duplicate name "zeta": step "zeta" clashes with step "zeta" declared at 8:9'
    ]


def test_handlers_in_parallel_and_fork_are_checked() -> None:
    text = doc(
        """\
        flows:
          - name: f
            steps:
              - type: parallel
                name: p
                tasks: [a, {name: t, handler: nope, on_failure: {handler: gone}}]
              - type: fork
                name: fk
                branches: [[b], [missing]]
        """
    )
    errors = errors_of(text)
    assert [(e.line, e.column, e.path) for e in errors] == [
        (10, col(text, 10, "nope"), "flows[0].steps[0].tasks[1].handler"),
        (10, col(text, 10, "gone"), "flows[0].steps[0].tasks[1].on_failure.handler"),
        (13, col(text, 13, "missing"), "flows[0].steps[1].branches[1][0]"),
    ]


def test_duplicate_handler_and_duplicate_flow() -> None:
    text = doc(
        """\
          - {name: a, exec: echo again}
        flows:
          - {name: f, steps: [a]}
          - {name: f, version: 2, steps: [a]}
          - {name: f, version: 1, steps: [b]}
        """
    )
    errors = errors_of(text)
    assert [(at(e), e.message) for e in errors] == [
        (("wf.yaml", 5, 12, "handlers[3].name"), 'duplicate handler "a" (first declared at 2:12)'),
        (
            ("wf.yaml", 9, 12, "flows[2].name"),
            'duplicate flow "f" version 1 (first declared at 7:12)',
        ),
    ]


def test_same_step_name_in_two_flows_is_fine() -> None:
    load_document(doc("flows:\n  - {name: f, steps: [a, b]}\n  - {name: g, steps: [a, b]}\n"))


def test_bad_condition() -> None:
    text = doc(
        """\
        flows:
          - name: f
            steps:
              - a
              - type: condition
                name: c
                expr: "{{ gt .amount 100 "
        """
    )
    err = only_error(text)
    assert at(err) == ("wf.yaml", 11, 15, "flows[0].steps[1].expr")
    assert err.message.startswith('invalid condition "{{ gt .amount 100 ": ')


def test_bad_condition_under_its_alias() -> None:
    text = doc(
        """\
        flows:
          - name: f
            steps:
              - a
              - {type: condition, name: c, condition: "{{ gt .amount }"}
        """
    )
    err = only_error(text)
    assert at(err) == ("wf.yaml", 9, col(text, 9, '"{{'), "flows[0].steps[1].condition")
    assert err.message.startswith("invalid condition")


def test_good_conditions_pass() -> None:
    text = doc(
        """\
        flows:
          - name: f
            steps:
              - a
              - type: condition
                name: c
                expr: "{{ gt .amount 100 }}"
                else: [b]
              - {type: condition, name: c2, condition: '{{ eq .kind "x" }}'}
              - undo
        """
    )
    load_document(text)


def test_parallel_with_one_task() -> None:
    text = doc("flows:\n  - name: f\n    steps:\n      - {type: parallel, name: p, tasks: [a]}\n")
    err = only_error(text)
    assert at(err) == ("wf.yaml", 8, col(text, 8, "[a]"), "flows[0].steps[0].tasks")
    assert err.message == "a parallel block needs at least 2 tasks, got 1"


def test_fork_with_one_branch_and_an_empty_branch() -> None:
    text = doc(
        """\
        flows:
          - name: f
            steps:
              - {type: fork, name: fk, branches: [[a]]}
              - {type: fork, name: fk2, branches: [[b], []]}
        """
    )
    errors = errors_of(text)
    assert [(at(e), e.message) for e in errors] == [
        (
            ("wf.yaml", 8, col(text, 8, "[[a]]"), "flows[0].steps[0].branches"),
            "a fork needs at least 2 branches, got 1",
        ),
        (
            ("wf.yaml", 9, col(text, 9, "[]"), "flows[0].steps[1].branches[1]"),
            "a fork branch must have at least 1 step",
        ),
    ]


def test_empty_else() -> None:
    text = doc(
        "flows:\n  - name: f\n    steps:\n      - a\n"
        "      - {type: condition, name: c, expr: '{{ true }}', else: []}\n"
    )
    err = only_error(text)
    assert at(err) == ("wf.yaml", 9, col(text, 9, "[]"), "flows[0].steps[1].else")
    assert err.message == "else must not be empty (omit it instead)"


def test_partially_invalid_data_does_not_crash() -> None:
    text = doc(
        """\
        flows:
          - name: 5
            version: x
            steps:
              - {type: parallel, name: [1], tasks: {a: 1}}
              - {type: fork, name: fk, branches: [a, 3], join: 7}
              - {type: condition, name: c, expr: 5, else: {a: 1}}
              - {name: t, on_failure: {name: 3}}
              - {name: u, handler: 9}
          - 7
        """
    )
    errors = errors_of(text, require_handlers=False)
    # one message per problem, each at its node; the semantic pass skips what is malformed
    assert [(e.line, e.path) for e in errors] == [
        (6, "flows[0].name"),
        (7, "flows[0].version"),
        (9, "flows[0].steps[0].name"),
        (9, "flows[0].steps[0].tasks"),
        (10, "flows[0].steps[1].branches[0]"),
        (10, "flows[0].steps[1].branches[1]"),
        (10, "flows[0].steps[1].join"),
        (11, "flows[0].steps[2].expr"),
        (11, "flows[0].steps[2].else"),
        (12, "flows[0].steps[3].on_failure"),
        (12, "flows[0].steps[3].on_failure.name"),
        (13, "flows[0].steps[4].handler"),
        (14, "flows[1]"),
    ]
    assert errors[0].message == "expected a string, got 5"


def test_three_errors_are_all_reported_sorted_by_line() -> None:
    text = doc(
        """\
        flows:
          - name: f
            steps:
              - {name: s1, handler: a, delay: soon}
              - {name: s2, handler: nowhere}
              - {name: s3, handler: b, colour: red}
        """
    )
    with pytest.raises(ValidationError) as info:
        load_document(text, "three.yaml")
    errors = info.value.errors
    assert [(e.line, e.path) for e in errors] == [
        (8, "flows[0].steps[0].delay"),
        (9, "flows[0].steps[1].handler"),
        (10, "flows[0].steps[2].colour"),
    ]
    assert str(info.value).splitlines() == [str(e) for e in errors]
    assert str(info.value).splitlines()[0].startswith("three.yaml:8:")


def test_a_savepoint_inside_a_fork_branch_is_an_error_at_its_line() -> None:
    text = doc(
        """\
        flows:
          - name: f
            steps:
              - type: fork
                name: fk
                branches:
                  - [a, {type: savepoint, name: sp}]
                  - [b]
        """
    )
    err = only_error(text)
    assert at(err)[:2] == ("wf.yaml", 11)
    assert 'savepoint "sp" is inside a fork branch' in err.message
    assert str(err).startswith("wf.yaml:11:")
