"""Draw a workflow graph as Mermaid or Graphviz DOT text (pure functions, no I/O).

Both renderers share one edge list so the two outputs always show the same graph:

* flow edges follow `next` and the branch starts of `parallel`/`fork` steps; a condition's
  edges are labelled `true` (next) and `false` (else);
* a join is drawn from what it waits for (`wait_for`), not from its fork's `next`, so its
  incoming edges come from the branch ends; a virtual `cond#X` entry stands for "wherever the
  paths of condition X end", drawn from every step after X that has no successor;
* compensations hang off their step by a dashed `on_failure` edge.

Node ids are `n0, n1, ...` in definition order (step names may contain `-`, `.` or quotes), so
the same definition always renders to the same text.
"""

from __future__ import annotations

from dataclasses import dataclass

from floxy_core.graph import graph_of
from floxy_core.model import VIRTUAL_PREFIX, StepDefinition, StepType, WorkflowDefinition

__all__ = ["to_dot", "to_mermaid"]

START = "start"
"""Id of the start marker in both formats (step nodes are `n<index>`, so it cannot clash)."""


@dataclass(frozen=True)
class _Edge:
    src: str
    dst: str
    label: str = ""
    compensation: bool = False


def _node_ids(defn: WorkflowDefinition) -> dict[str, str]:
    return {name: f"n{index}" for index, name in enumerate(defn.steps)}


def _path_ends(defn: WorkflowDefinition, cond: str, waited: set[str]) -> list[tuple[str, str]]:
    """(step, edge label) pairs where the paths leaving condition `cond` stop.

    A condition without `else` ends its false path on itself. Steps already awaited by name by
    some join (e.g. the ends of a nested fork) lead to that join instead, so they are left out.
    """
    steps = defn.steps
    root = steps.get(cond)
    if root is None:
        return []
    ends: list[tuple[str, str]] = []
    if root.else_step is None:
        ends.append((cond, "false" if root.next else ""))
    graph = graph_of(defn)
    reachable = graph.descendants(cond)
    ends.extend(
        (name, "")
        for name in steps
        if name in reachable and not graph.successors(name) and name not in waited
    )
    return ends


def _edges(defn: WorkflowDefinition) -> list[_Edge]:
    steps = defn.steps
    waited = {
        name
        for step in steps.values()
        if step.type is StepType.JOIN
        for name in step.wait_for
        if not name.startswith(VIRTUAL_PREFIX)
    }
    edges: list[_Edge] = []
    seen: set[tuple[str, str]] = set()

    def add(src: str, dst: str, label: str = "", compensation: bool = False) -> None:
        if (src in steps or src == START) and dst in steps and (src, dst) not in seen:
            seen.add((src, dst))
            edges.append(_Edge(src, dst, label, compensation))

    def drawn_by_join(name: str) -> bool:
        # `fork.next = [join]` only wires the engine; the join's wait_for says what it collects.
        target = steps.get(name)
        return target is not None and target.type is StepType.JOIN and bool(target.wait_for)

    add(START, defn.start)
    for step in steps.values():
        if step.compensation:
            continue
        is_condition = step.type is StepType.CONDITION
        for branch in step.parallel:
            add(step.name, branch)
        for name in step.next:
            if not drawn_by_join(name):
                add(step.name, name, "true" if is_condition else "")
        if is_condition and step.else_step:
            add(step.name, step.else_step, "false")
        for name in step.wait_for:
            if name.startswith(VIRTUAL_PREFIX):
                for end, label in _path_ends(defn, name.removeprefix(VIRTUAL_PREFIX), waited):
                    add(end, step.name, label)
            else:
                add(name, step.name)
        if step.on_failure:
            add(step.name, step.on_failure, "on_failure", compensation=True)
    return edges


# --------------------------------------------------------------------------------------------
# Mermaid

_MERMAID_SHAPES: dict[StepType, tuple[str, str]] = {
    StepType.TASK: ("[", "]"),
    StepType.CONDITION: ("{", "}"),
    StepType.PARALLEL: ("[/", "\\]"),
    StepType.FORK: ("[/", "\\]"),
    StepType.JOIN: ("((", "))"),
    StepType.SAVE_POINT: (">", "]"),
    StepType.HUMAN: ("{{", "}}"),
}

_MERMAID_LOOKALIKES = str.maketrans(
    {
        '"': "'",
        "`": "'",
        "<": "‹",
        ">": "›",
        "&": "＆",
        "#": "＃",
        "\n": " ",
        "\r": " ",
        "\t": " ",
    }
)
"""Characters a `"..."` label cannot show as themselves, and what is drawn instead.

Mermaid's entity codes (`#quot;`) are drawn literally when `htmlLabels` is off (mermaid-js
issue 7015), so none is used: a quote would end the label, a backtick starts a Markdown string,
`<` and `&` are markup with HTML labels, `#` starts an entity code. Each becomes a character
that reads the same and means nothing to Mermaid: `{{ eq .kind "heavy" }}` is drawn
`{{ eq .kind 'heavy' }}`. The DOT output keeps the exact text."""


def _mermaid_text(text: str) -> str:
    """User text made safe inside a `"..."` label, in every Mermaid renderer (see above)."""
    return text.translate(_MERMAID_LOOKALIKES)


def _label_lines(step: StepDefinition, *, ascii_only: bool) -> list[str]:
    """The lines of a node's label; the kind shows in the text as well as in the shape."""
    name = step.name
    kind = step.type
    if kind is StepType.TASK:
        lines = [name]
        if step.handler and step.handler != name:
            lines.append(f"handler: {step.handler}")
        return lines
    if kind is StepType.CONDITION:
        return [name, step.condition or ""]
    if kind in (StepType.PARALLEL, StepType.FORK):
        return [f"{name} ({kind.value})"]
    if kind is StepType.JOIN:
        return [f"{name} ({step.join_strategy.value})"]
    if kind is StepType.SAVE_POINT:
        return [f"{name} (savepoint)"] if ascii_only else [f"⤺ {name}"]
    if kind is StepType.HUMAN:
        return [f"{name} (human)"] if ascii_only else [f"👤 {name}"]
    return [f"{name} ({kind.value})"]


def to_mermaid(defn: WorkflowDefinition) -> str:
    """A Mermaid `flowchart` of `defn` (paste into Markdown or mermaid.live)."""
    ids = _node_ids(defn)
    ids[START] = START
    out = ["flowchart TD", f"    %% workflow {_mermaid_text(defn.id)}", f'    {START}(["start"])']
    for name, step in defn.steps.items():
        left, right = _MERMAID_SHAPES.get(step.type, ("[", "]"))
        label = "<br/>".join(_mermaid_text(line) for line in _label_lines(step, ascii_only=False))
        out.append(f'    {ids[name]}{left}"{label}"{right}')
    for edge in _edges(defn):
        src, dst = ids[edge.src], ids[edge.dst]
        if edge.compensation:
            out.append(f"    {src} -.->|{edge.label}| {dst}")
        elif edge.label:
            out.append(f"    {src} -->|{edge.label}| {dst}")
        else:
            out.append(f"    {src} --> {dst}")
    compensations = [ids[n] for n, s in defn.steps.items() if s.compensation]
    if compensations:
        out.append("    classDef compensation fill:#fde2e2,stroke:#c0392b,stroke-dasharray:5 5;")
        out.append(f"    class {','.join(compensations)} compensation;")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------------
# DOT

_DOT_SHAPES: dict[StepType, str] = {
    StepType.TASK: "box",
    StepType.CONDITION: "diamond",
    StepType.PARALLEL: "trapezium",
    StepType.FORK: "trapezium",
    StepType.JOIN: "circle",
    StepType.SAVE_POINT: "cds",
    StepType.HUMAN: "hexagon",
}


def _dot_string(text: str) -> str:
    """A DOT double-quoted string; backslashes are doubled so `\\n`, `\\N`... stay literal."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n") + '"'


def _dot_label(lines: list[str]) -> str:
    # Escape each line, then join with DOT's own line break (which must not be escaped).
    return '"' + "\\n".join(_dot_string(line)[1:-1] for line in lines) + '"'


def to_dot(defn: WorkflowDefinition) -> str:
    """A Graphviz `digraph` of `defn` (`floxyctl graph --format dot | dot -Tsvg > flow.svg`)."""
    ids = _node_ids(defn)
    ids[START] = START
    out = [
        f"digraph {_dot_string(defn.id)} {{",
        "    rankdir=TB;",
        '    node [fontname="Helvetica", fontsize=11];',
        '    edge [fontname="Helvetica", fontsize=10];',
        f'    {START} [shape=point, width=0.2, xlabel="start"];',
    ]
    for name, step in defn.steps.items():
        attrs = [
            f"shape={_DOT_SHAPES.get(step.type, 'box')}",
            f"label={_dot_label(_label_lines(step, ascii_only=True))}",
        ]
        if step.compensation:
            attrs.append('style="dashed,filled", fillcolor="#fde2e2", color="#c0392b"')
        out.append(f"    {ids[name]} [{', '.join(attrs)}];")
    for edge in _edges(defn):
        attrs = []
        if edge.label:
            attrs.append(f"label={_dot_string(edge.label)}")
        if edge.compensation:
            attrs.append('style=dashed, color="#c0392b"')
        suffix = f" [{', '.join(attrs)}]" if attrs else ""
        out.append(f"    {ids[edge.src]} -> {ids[edge.dst]}{suffix};")
    out.append("}")
    return "\n".join(out) + "\n"
