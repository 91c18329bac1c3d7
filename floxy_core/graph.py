"""The shape of a flow: one immutable companion of a `WorkflowDefinition`, built once.

The engine asks the same structural questions on every step (what follows this step, which
fork branch is it in, which join collects that block, where is the nearest savepoint). Walking
`prev` links or scanning every step for each question makes a step's cost grow with the flow, so
`graph_of` answers them from tables built in one linear pass and cached on the definition.
Nothing here recurses: a flow of any length is handled within Python's stack.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from types import MappingProxyType

from floxy_core.model import ROOT, VIRTUAL_PREFIX, StepDefinition, StepType, WorkflowDefinition

_BLOCKS = (StepType.FORK, StepType.PARALLEL)
_CACHE = "_flow_graph"
"""Where `graph_of` keeps the graph: in the definition's own `__dict__`, outside its fields, so
equality, hashing and `replace()` (a new definition, a new graph) are unaffected."""

Block = tuple[StepDefinition, str]
"""A fork/parallel step and the start of one of its branches."""


class FlowGraph:
    """Structural lookups over one definition; every query is a dictionary read or a walk whose
    length is the size of its answer."""

    __slots__ = (
        "_blocks",
        "_descendants",
        "_entries",
        "_joins",
        "_savepoint_above",
        "_successors",
        "definition",
    )

    def __init__(self, definition: WorkflowDefinition) -> None:
        self.definition = definition
        steps = definition.steps
        self._successors: Mapping[str, tuple[str, ...]] = MappingProxyType(
            {
                name: (*s.next, *s.parallel, *((s.else_step,) if s.else_step else ()))
                for name, s in steps.items()
            }
        )
        self._joins: dict[str, StepDefinition] = {}
        for name, step in steps.items():
            if step.type in _BLOCKS:
                join = next(
                    (steps[n] for n in step.next if n in steps and steps[n].type is StepType.JOIN),
                    None,
                )
                if join is not None:
                    self._joins[name] = join
        self._blocks: dict[str, tuple[Block, ...]] = {}
        self._savepoint_above: dict[str, str | None] = {}
        self._fill_ancestry()
        self._descendants: dict[str, frozenset[str]] = {}
        self._entries: dict[str, dict[str, tuple[int, str]]] = {
            block: self._branch_entries(block) for block in self._joins
        }

    def _fill_ancestry(self) -> None:
        """Enclosing blocks and nearest savepoint of every step, from its `prev` chain.

        Each step's answer is derived from its parent's, so the pass is linear: a walk goes up
        only until it meets a step already known, then fills in the chain on the way back down.
        A `prev` chain that loops or names no step ends there, as at the root.
        """
        steps = self.definition.steps
        blocks = self._blocks
        above = self._savepoint_above
        for start in steps:
            chain: list[str] = []
            on_chain: set[str] = set()
            current: str | None = start
            while current is not None and current not in blocks:
                if current in on_chain or current not in steps:
                    current = None
                    break
                chain.append(current)
                on_chain.add(current)
                prev = steps[current].prev
                current = prev if prev and prev != ROOT and prev in steps else None
                if current is None:
                    break
            for name in reversed(chain):
                prev = steps[name].prev
                parent = steps.get(prev) if prev and prev != ROOT else None
                if parent is None or parent.name not in blocks:
                    blocks[name] = ()
                    above[name] = None
                    continue
                if parent.type in _BLOCKS and name in parent.parallel:
                    blocks[name] = ((parent, name), *blocks[parent.name])
                else:
                    blocks[name] = blocks[parent.name]
                is_savepoint = parent.type is StepType.SAVE_POINT
                above[name] = parent.name if is_savepoint else above[parent.name]

    def _branch_entries(self, block: str) -> dict[str, tuple[int, str]]:
        """For each branch of `block`: the first entry of its join's initial `waiting_for` that
        stands for it (a branch step, or `cond#` + a condition in it), with its index."""
        steps = self.definition.steps
        join = self._joins[block]
        found: dict[str, tuple[int, str]] = {}
        for index, entry in enumerate(join.wait_for or steps[block].parallel):
            name = entry.removeprefix(VIRTUAL_PREFIX)
            chain = self._blocks.get(name, ())
            if name in steps and chain and chain[0][0].name == block:
                found.setdefault(chain[0][1], (index, entry))
        return found

    # -- edges ----------------------------------------------------------------------------------

    def successors(self, name: str) -> tuple[str, ...]:
        """The flow edges out of `name`: `next`, branch starts, then `else` (not compensations)."""
        return self._successors[name]

    def descendants(self, name: str) -> frozenset[str]:
        """Every step reachable from `name` along flow edges (`name` itself only via a cycle).

        Computed once per step asked about: a rollback asks it for a savepoint.
        """
        found = self._descendants.get(name)
        if found is not None:
            return found
        successors = self._successors
        seen: set[str] = set()
        stack = [name]
        while stack:
            for nxt in successors.get(stack.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        found = self._descendants[name] = frozenset(seen)
        return found

    def cycles(self) -> list[list[str]]:
        """Every back edge met by a depth-first walk from the start, as the path that closes it
        (start … step, the step it returns to), in the order a recursive walk would report them.
        """
        successors = self._successors
        start = self.definition.start
        if start not in successors:
            return []
        found: list[list[str]] = []
        done: set[str] = set()
        path: list[str] = [start]
        on_path: set[str] = {start}
        iterators: list[Iterator[str]] = [iter(successors[start])]
        while iterators:
            nxt = next(iterators[-1], None)
            if nxt is None:
                iterators.pop()
                finished = path.pop()
                on_path.discard(finished)
                done.add(finished)
            elif nxt in on_path:
                found.append([*path, nxt])
            elif nxt not in done and nxt in successors:
                path.append(nxt)
                on_path.add(nxt)
                iterators.append(iter(successors[nxt]))
        return found

    # -- blocks and joins -----------------------------------------------------------------------

    def enclosing_block(self, name: str) -> Block | None:
        """The innermost fork/parallel step whose branches contain `name`, and that branch's
        start."""
        chain = self._blocks.get(name, ())
        return chain[0] if chain else None

    def enclosing_blocks(self, name: str) -> tuple[Block, ...]:
        """Every block around `name` with the branch it is in, innermost first."""
        return self._blocks.get(name, ())

    def join_of(self, block: str) -> StepDefinition | None:
        """The join that collects the branches of fork or parallel step `block`, if any."""
        return self._joins.get(block)

    def waiting_entry(self, block: str, branch: str) -> tuple[int, str] | None:
        """Where the join of `block` first waits for `branch` before any branch has ended: the
        index in its initial `waiting_for` and the entry there (see `joins._entry_for_branch`)."""
        return self._entries.get(block, {}).get(branch)

    # -- compensations and savepoints -----------------------------------------------------------

    def compensation_of(self, name: str) -> StepDefinition | None:
        """The step that undoes `name` (its `on_failure`), if it has one."""
        target = self.definition.steps[name].on_failure
        return None if target is None else self.definition.steps.get(target)

    def savepoint_above(self, name: str) -> str | None:
        """The nearest savepoint before `name` on its `prev` chain (`name` itself excluded)."""
        return self._savepoint_above.get(name)

    def savepoints_above(self, name: str) -> Iterator[str]:
        """The savepoints before `name` on its `prev` chain, nearest first; lazily, so a caller
        that stops at the first one that qualifies pays only for the ones it looked at."""
        current = self._savepoint_above.get(name)
        while current is not None:
            yield current
            current = self._savepoint_above.get(current)


def graph_of(definition: WorkflowDefinition) -> FlowGraph:
    """The definition's graph, built on first use and kept with the definition."""
    cached = definition.__dict__.get(_CACHE)
    if cached is None:
        cached = definition.__dict__[_CACHE] = FlowGraph(definition)
    graph: FlowGraph = cached
    return graph
