"""The JSON Schema of workflow files: valid 2020-12, accepts reference and extended files,
rejects unknown keys everywhere."""

from __future__ import annotations

import copy
import json
from textwrap import dedent
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from ruamel.yaml import YAML

from floxy_core.resources import schema_path


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    with schema_path().open(encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    return data


@pytest.fixture(scope="module")
def validator(schema: dict[str, Any]) -> Draft202012Validator:
    return Draft202012Validator(schema)


def parse(text: str) -> Any:
    return YAML(typ="safe", pure=True).load(dedent(text))


def problems(validator: Draft202012Validator, data: Any) -> list[tuple[list[Any], str]]:
    return [(list(e.absolute_path), e.validator) for e in validator.iter_errors(data)]


def test_schema_is_valid_2020_12(schema: dict[str, Any]) -> None:
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].endswith("workflow.schema.json")
    assert schema["title"]


def test_every_property_has_a_description(schema: dict[str, Any]) -> None:
    missing: list[str] = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            for name, sub in node.get("properties", {}).items():
                if isinstance(sub, dict) and "description" not in sub:
                    missing.append(f"{where}.{name}")
            for key, sub in node.items():
                if key != "if":  # dispatch conditions, not documentation
                    walk(sub, f"{where}/{key}")
        elif isinstance(node, list):
            for i, sub in enumerate(node):
                walk(sub, f"{where}/{i}")

    walk(schema, "#")
    for name, definition in schema["$defs"].items():
        assert "description" in definition, name
    # the checker above must see real properties, or it proves nothing
    assert "steps" in schema["$defs"]["flow"]["properties"]
    assert missing == []


REFERENCE_DOCS = {
    "shorthand": """
        handlers:
          - name: reserve_stock
            exec: ./scripts/reserve.sh
        flows:
          - name: order_flow
            steps:
              - reserve_stock
    """,
    "task_with_all_options": """
        handlers:
          - {name: charge_h, exec: ./charge.sh}
          - {name: refund, exec: ./refund.sh}
        flows:
          - name: order_flow
            steps:
              - name: charge
                handler: charge_h
                on_failure: refund
                max_retries: 3
                no_idempotent: false
                delay: 1500
                retry_delay: 3000
                retry_strategy: fixed
                timeout: 4500
                metadata: {k: v, nested: {a: [1, 2]}}
              - name: charge2
                handler: charge_h
                retry_strategy: ""
              - {name: charge3, handler: charge_h, retry_strategy: exponential}
              - {name: charge4, handler: charge_h, retry_strategy: linear}
    """,
    "parallel": """
        handlers:
          - {name: a, exec: echo a}
          - {name: b, exec: echo b}
        flows:
          - name: f
            steps:
              - type: parallel
                name: p
                tasks:
                  - name: ta
                    handler: a
                    max_retries: 2
                    delay: 100
                  - name: tb
                    handler: b
                    no_idempotent: true
                    metadata: {x: 1}
              - a
    """,
    "condition_with_else": """
        handlers:
          - {name: check, exec: echo}
          - {name: small_h, exec: echo}
          - {name: big, exec: echo}
        flows:
          - name: f
            steps:
              - check
              - type: condition
                name: c1
                expr: "{{ gt .amount 100 }}"
                else:
                  - name: small
                    handler: small_h
              - big
              - type: condition
                name: c2
                condition: "{{ eq .kind \\"x\\" }}"
    """,
    "tls_at_both_levels_and_http_exec": """
        tls:
          skip_verify: false
          cert_file: ""
          key_file: ""
          ca_file: /etc/ssl/ca.pem
        handlers:
          - name: notify
            exec: https://example.com/hooks/notify
            tls:
              skip_verify: true
              cert_file: client.pem
              key_file: client.key
          - name: plain
            exec: http://localhost:8080/x
        flows:
          - name: f
            steps: [notify, plain]
    """,
    "multi_line_inline_exec": """
        handlers:
          - name: multi
            exec: |
              echo "step one"
              echo '{"ok": true}'
          - name: single
            exec: echo '{}'
        flows:
          - name: f
            steps: [multi, single]
    """,
}

EXTENSION_DOCS = {
    "decisions_example": """
        handlers:
          - {name: ship, exec: echo}
          - {name: invoice, exec: echo}
          - {name: email, exec: echo}
        flows:
          - name: order
            version: 2
            dlq: true
            max_retries: 5
            description: Orders.
            steps:
              - {type: savepoint, name: after_payment}
              - type: fork
                name: fulfil
                branches:
                  - [{name: ship, handler: ship}]
                  - [{name: invoice, handler: invoice}, {name: email, handler: email}]
                join: {name: fulfil_join, strategy: all}
              - {type: human, name: manager_approval, timeout: 24h}
    """,
    "all_extension_keys": """
        handlers:
          - {name: h, type: bash, exec: ./h.sh, description: does h}
          - {name: w, type: http, exec: "https://x/y"}
          - {name: k, type: kafka.v2, topic: orders, brokers: [a, b]}
        flows:
          - name: f
            version: 1
            dlq: false
            max_retries: 0
            steps:
              - {type: save_point, name: sp, description: alias}
              - name: t
                type: task
                handler: h
                retry_strategy: exponential
                retry_delay: 250ms
                retry_max_delay: 1m30s
                retry_jitter: true
                delay: 0
                timeout: 1.5s
                priority: 100
                description: a task
                on_failure:
                  handler: h
                  name: undo_t
                  max_retries: 0
                  retry_delay: 2s
                  retry_strategy: linear
                  retry_max_delay: 1h
                  retry_jitter: false
                  timeout: 5m
                  metadata: {why: refund}
              - type: parallel
                name: p
                description: both
                tasks:
                  - w
                  - {name: pk, handler: k, on_failure: h, priority: 0}
              - type: fork
                name: fk
                branches:
                  - [h]
                  - - type: condition
                      name: c
                      expr: "{{ true }}"
                      else:
                        - {type: human, name: hm, metadata: {form: x}}
                    - type: fork
                      name: inner
                      branches: [[w], [k]]
                join: {strategy: any}
              - {type: human, name: approve, timeout: 86400000, description: boss}
    """,
}


@pytest.mark.parametrize("name", sorted(REFERENCE_DOCS))
def test_reference_documents_pass(validator: Draft202012Validator, name: str) -> None:
    assert problems(validator, parse(REFERENCE_DOCS[name])) == []


@pytest.mark.parametrize("name", sorted(EXTENSION_DOCS))
def test_extension_documents_pass(validator: Draft202012Validator, name: str) -> None:
    assert problems(validator, parse(EXTENSION_DOCS[name])) == []


def _base() -> Any:
    return parse(EXTENSION_DOCS["all_extension_keys"])


# Each entry: a path into the base document of a mapping that must not take an extra key.
CLOSED_MAPPINGS: list[tuple[str | int, ...]] = [
    (),
    ("flows", 0),
    ("handlers", 0),
    ("handlers", 1),
    ("flows", 0, "steps", 0),  # savepoint
    ("flows", 0, "steps", 1),  # task
    ("flows", 0, "steps", 1, "on_failure"),
    ("flows", 0, "steps", 2),  # parallel
    ("flows", 0, "steps", 2, "tasks", 1),
    ("flows", 0, "steps", 3),  # fork
    ("flows", 0, "steps", 3, "join"),
    ("flows", 0, "steps", 3, "branches", 1, 0),  # condition inside a branch
    ("flows", 0, "steps", 3, "branches", 1, 0, "else", 0),  # human inside else
    ("flows", 0, "steps", 3, "branches", 1, 1),  # nested fork
    ("flows", 0, "steps", 4),  # human
]


def _node(data: Any, path: tuple[str | int, ...]) -> Any:
    for part in path:
        data = data[part]
    return data


@pytest.mark.parametrize("path", CLOSED_MAPPINGS, ids=lambda p: ".".join(map(str, p)) or "root")
def test_unknown_keys_fail_everywhere(
    validator: Draft202012Validator, path: tuple[str | int, ...]
) -> None:
    data = _base()
    _node(data, path)["bogus_key"] = 1
    assert problems(validator, data) == [(list(path), "additionalProperties")]


def test_unknown_keys_fail_in_tls_at_both_levels(validator: Draft202012Validator) -> None:
    data = parse(REFERENCE_DOCS["tls_at_both_levels_and_http_exec"])
    data["tls"]["verify"] = True
    data["handlers"][0]["tls"]["cert"] = "x"
    assert sorted(problems(validator, data)) == [
        (["handlers", 0, "tls"], "additionalProperties"),
        (["tls"], "additionalProperties"),
    ]


def test_plugin_handlers_take_any_key_but_builtin_ones_do_not(
    validator: Draft202012Validator,
) -> None:
    plugin = {"handlers": [{"name": "k", "type": "kafka", "anything": 1}], "flows": []}
    builtin = {"handlers": [{"name": "k", "type": "bash", "exec": "x", "anything": 1}]}
    assert problems(validator, plugin) == [(["flows"], "minItems")]
    assert (["handlers", 0], "additionalProperties") in problems(validator, builtin)
    no_exec = {"handlers": [{"name": "k"}], "flows": [{"name": "f", "steps": ["k"]}]}
    assert problems(validator, no_exec) == [(["handlers", 0], "required")]
    bad_type = {
        "handlers": [{"name": "k", "type": "Kafka"}],
        "flows": [{"name": "f", "steps": ["k"]}],
    }
    assert problems(validator, bad_type) == [(["handlers", 0, "type"], "pattern")]


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        (0, True),
        (1500, True),
        ("250ms", True),
        ("2s", True),
        ("5m", True),
        ("1h", True),
        ("1h30m", True),
        ("1.5s", True),
        (-1, False),
        ("5 minutes", False),
        ("10", False),
        ("1d", True),  # days: one grammar with `floxyctl status --since 7d`
        ("0", True),
        ("1 d", False),
        ("", False),
        (True, False),
        (1.5, False),
    ],
)
def test_durations(validator: Draft202012Validator, value: Any, ok: bool) -> None:
    data = {"flows": [{"name": "f", "steps": [{"name": "s", "timeout": value}]}]}
    assert (problems(validator, data) == []) is ok


@pytest.mark.parametrize(
    ("patch", "where", "keyword"),
    [
        ({"max_retries": -1}, ["max_retries"], "minimum"),
        ({"priority": 101}, ["priority"], "maximum"),
        ({"priority": -1}, ["priority"], "minimum"),
        ({"retry_strategy": "random"}, ["retry_strategy"], "enum"),
        ({"type": "loop"}, ["type"], "enum"),
        ({"metadata": []}, ["metadata"], "type"),
        ({"name": ""}, ["name"], "minLength"),
        ({"no_idempotent": "yes"}, ["no_idempotent"], "type"),
    ],
)
def test_bad_task_values(
    validator: Draft202012Validator, patch: dict[str, Any], where: list[Any], keyword: str
) -> None:
    step = {"name": "s", **patch}
    data = {"flows": [{"name": "f", "steps": [step]}]}
    assert problems(validator, data) == [(["flows", 0, "steps", 0, *where], keyword)]


def test_step_type_picks_the_shape(validator: Draft202012Validator) -> None:
    # `tasks` is fine on a parallel but unknown on a task: dispatch is by `type`
    parallel = {"type": "parallel", "name": "p", "tasks": ["a", "b"]}
    as_task = {"name": "p", "tasks": ["a", "b"]}
    condition = {"type": "condition", "name": "c"}
    data = {"flows": [{"name": "f", "steps": [parallel, as_task, condition]}]}
    assert problems(validator, data) == [
        (["flows", 0, "steps", 1], "additionalProperties"),
        (["flows", 0, "steps", 2], "anyOf"),
    ]


def test_nested_blocks_are_checked_recursively(validator: Draft202012Validator) -> None:
    data = _base()
    deep = copy.deepcopy(data["flows"][0]["steps"][3])
    deep["branches"][1][0]["else"].append({"type": "human", "name": "x", "timeout": "soon"})
    data["flows"][0]["steps"].append(deep)
    assert problems(validator, data) == [
        (["flows", 0, "steps", 5, "branches", 1, 0, "else", 1, "timeout"], "anyOf")
    ]


def test_flow_requires_name_and_steps(validator: Draft202012Validator) -> None:
    assert problems(validator, {"flows": [{}]}) == [(["flows", 0], "required")] * 2
    assert problems(validator, {"flows": [{"name": "f", "steps": []}]}) == [
        (["flows", 0, "steps"], "minItems")
    ]
    assert problems(validator, {"handlers": []}) == [([], "required")]
    assert problems(validator, {"flows": [{"name": "f", "steps": ["a"], "version": 0}]}) == [
        (["flows", 0, "version"], "minimum")
    ]
