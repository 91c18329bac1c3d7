"""Mermaid and DOT rendering: one shape per step kind, labelled edges, safe labels and ids."""

from __future__ import annotations

import re

from floxy_core.builder import Builder, Compensation, Task
from floxy_core.model import WorkflowDefinition
from floxyctl.graph_render import to_dot, to_mermaid


def ids_of(text: str, pattern: str) -> dict[str, str]:
    """Step name → node id, read back from the rendered node declarations."""
    return {m.group(2): m.group(1) for m in re.finditer(pattern, text, re.M)}


def mermaid_ids(text: str) -> dict[str, str]:
    return ids_of(text, r'^    (n\d+)\W+"(?:⤺ |👤 )?([\w.-]+)')


def dot_ids(text: str) -> dict[str, str]:
    return ids_of(text, r'^    (n\d+) \[shape=\w+, label="([\w.-]+)')


def saga() -> WorkflowDefinition:
    return (
        Builder("order.flow", version=2)
        .step("reserve-stock", "reserve_h")
        .on_failure("release", "release_h")
        .save_point("paid")
        .condition(
            "big",
            '{{ gt .amount 100 }} "quoted" <b> #x a\\b',
            lambda b: b.step("small", "small_h"),
        )
        .parallel(
            "notify",
            Task("email", "email_h", on_failure=Compensation("unsend", "unsend_h")),
            Task("sms"),
        )
        .wait_human_confirm("approve")
        .step("ship")
        .build()
    )


def forked() -> WorkflowDefinition:
    return (
        Builder("fulfil")
        .step("start_it")
        .fork(
            "f",
            lambda b: b.step("pack"),
            lambda b: b.step("inv").condition("check", "{{ eq .x 1 }}").step("mail"),
        )
        .join("f_join", "any")
        .step("done")
        .build()
    )


# --------------------------------------------------------------------------------------------
# Mermaid


def test_mermaid_shapes_per_step_kind() -> None:
    text = to_mermaid(saga())
    lines = text.splitlines()
    assert lines[0] == "flowchart TD"
    assert '    start(["start"])' in lines
    ids = mermaid_ids(text)
    assert f'    {ids["reserve-stock"]}["reserve-stock<br/>handler: reserve_h"]' in lines
    assert f'    {ids["paid"]}>"⤺ paid"]' in lines
    assert f'    {ids["notify"]}[/"notify (parallel)"\\]' in lines
    assert f'    {ids["notify_join"]}(("notify_join (all)"))' in lines
    assert f'    {ids["approve"]}{{{{"👤 approve"}}}}' in lines
    assert f'    {ids["ship"]}["ship"]' in lines  # handler shown only when it differs
    assert f"    start --> {ids['reserve-stock']}" in lines


def test_mermaid_node_ids_are_safe_identifiers() -> None:
    node = re.compile(r'    (start|n\d+)[\[({>/]+"')
    edge = re.compile(r"    (start|n\d+) (-->|-\.->)(\|\w+\| )? ?n\d+")
    for line in to_mermaid(saga()).splitlines()[2:]:
        assert node.match(line) or edge.fullmatch(line) or "compensation" in line, line


def test_mermaid_condition_edges_and_escaping() -> None:
    text = to_mermaid(saga())
    ids = mermaid_ids(text)
    lines = text.splitlines()
    label = "{{ gt .amount 100 }} 'quoted' ‹b› ＃x a\\b"
    assert f'    {ids["big"]}{{"big<br/>{label}"}}' in lines
    assert f"    {ids['big']} -->|true| {ids['notify']}" in lines
    assert f"    {ids['big']} -->|false| {ids['small']}" in lines
    # The raw quote never reaches the output, so it cannot close the label early.
    assert '"quoted"' not in text


def test_mermaid_labels_use_no_entity_codes() -> None:
    # Mermaid draws `#quot;` literally when htmlLabels is off (mermaid-js issue 7015): every
    # character a label cannot hold becomes a look-alike instead.
    defn = (
        Builder("kinds")
        .condition("heavy", '{{ eq .kind "heavy" }}', lambda b: b.step("light"))
        .step("odd", "a`b<c>&d#35;e")
        .build()
    )
    text = to_mermaid(defn)
    ids = mermaid_ids(text)
    lines = text.splitlines()
    assert f"    {ids['heavy']}{{\"heavy<br/>{{{{ eq .kind 'heavy' }}}}\"}}" in lines
    assert f'    {ids["odd"]}["odd<br/>handler: a\'b‹c›＆d＃35;e"]' in lines
    assert not re.search(r"#\w+;", text)


def test_mermaid_compensation_is_dashed_and_styled() -> None:
    text = to_mermaid(saga())
    ids = mermaid_ids(text)
    lines = text.splitlines()
    assert f"    {ids['reserve-stock']} -.->|on_failure| {ids['release']}" in lines
    assert f"    {ids['email']} -.->|on_failure| {ids['unsend']}" in lines
    assert f"    class {ids['release']},{ids['unsend']} compensation;" in lines
    assert any(line.strip().startswith("classDef compensation") for line in lines)


def test_mermaid_join_is_drawn_from_branch_ends() -> None:
    text = to_mermaid(saga())
    ids = mermaid_ids(text)
    lines = text.splitlines()
    join = ids["notify_join"]
    assert f"    {ids['notify']} --> {ids['email']}" in lines
    assert f"    {ids['notify']} --> {ids['sms']}" in lines
    assert f"    {ids['email']} --> {join}" in lines
    assert f"    {ids['sms']} --> {join}" in lines
    assert f"    {ids['notify']} --> {join}" not in lines  # wiring edge, not a flow edge
    assert f"    {join} --> {ids['approve']}" in lines


def test_mermaid_fork_with_condition_branch_uses_path_ends() -> None:
    defn = forked()
    assert defn.step("f_join").wait_for == ("pack", "cond#check")
    text = to_mermaid(defn)
    ids = mermaid_ids(text)
    lines = text.splitlines()
    join = ids["f_join"]
    assert f'    {ids["f"]}[/"f (fork)"\\]' in lines
    assert f'    {join}(("f_join (any)"))' in lines
    assert f"    {ids['pack']} --> {join}" in lines
    assert f"    {ids['mail']} --> {join}" in lines  # end of the true path
    assert f"    {ids['check']} -->|false| {join}" in lines  # no else: false path ends here
    assert f"    {ids['check']} -->|true| {ids['mail']}" in lines


# --------------------------------------------------------------------------------------------
# DOT


def test_dot_shapes_and_edges() -> None:
    text = to_dot(saga())
    lines = text.splitlines()
    assert lines[0] == 'digraph "order.flow-v2" {'
    assert lines[-1] == "}"
    ids = dot_ids(text)
    assert (
        f'    {ids["reserve-stock"]} [shape=box, label="reserve-stock\\nhandler: reserve_h"];'
        in lines
    )
    assert f'    {ids["paid"]} [shape=cds, label="paid (savepoint)"];' in lines
    assert f'    {ids["notify"]} [shape=trapezium, label="notify (parallel)"];' in lines
    assert f'    {ids["notify_join"]} [shape=circle, label="notify_join (all)"];' in lines
    assert f'    {ids["approve"]} [shape=hexagon, label="approve (human)"];' in lines
    assert f'    {ids["big"]} -> {ids["notify"]} [label="true"];' in lines
    assert f'    {ids["big"]} -> {ids["small"]} [label="false"];' in lines
    assert f"    {ids['email']} -> {ids['notify_join']};" in lines
    assert text.isascii()  # DOT labels keep to ASCII markers


def test_dot_compensation_edge_is_dashed() -> None:
    text = to_dot(saga())
    ids = dot_ids(text)
    lines = text.splitlines()
    edge = f'    {ids["reserve-stock"]} -> {ids["release"]} [label="on_failure", style=dashed'
    assert any(line.startswith(edge) for line in lines)
    release = next(line for line in lines if line.startswith(f"    {ids['release']} ["))
    assert 'style="dashed,filled"' in release


def test_dot_escapes_quotes_and_backslashes() -> None:
    text = to_dot(saga())
    ids = dot_ids(text)
    expected = '"big\\n{{ gt .amount 100 }} \\"quoted\\" <b> #x a\\\\b"'
    assert f"    {ids['big']} [shape=diamond, label={expected}];" in text.splitlines()


def test_rendering_is_deterministic() -> None:
    assert to_mermaid(saga()) == to_mermaid(saga())
    assert to_dot(forked()) == to_dot(forked())
    assert to_mermaid(saga()).endswith(" compensation;\n")
    assert to_dot(saga()).endswith("}\n")
