"""The state document: what `floxy_state` and `floxy_claim` send, and what `floxy_apply` takes.

Package-internal. The engine's records travel between this store and the SQL functions of
migrations_pro/004_transition_functions.sql (and 007_bounded_state.sql's
`floxy_state`) as one JSON document each way. Both sides must agree on it, so it is named here:

- **state** (`floxy_state`, `floxy_lock_load`, and `floxy_claim`'s `state`): a JSON array —
  workflow_id, status, input, output, error, created_at (verbatim, the partition key),
  updated_at, started_at, completed_at (epoch seconds), steps, joins, queue, decisions, dlq,
  cancel request (or null), and since 007 a 16th element, true when `steps` is the whole
  instance (else the rest is read by name through `floxy_steps`).
- **apply** (`floxy_apply`): a JSON object of only what the `Transition` marked — instance_id,
  instance_created, step_ids (name → id of the stored steps it refers to), new_steps, steps,
  instance, joins, queue_removed, queue, queue_new, events, dlq_new, dlq_removed, decisions,
  cancel_done / cancel_request, notify; it answers the ids it gave: step_ids, dlq_ids, queue_ids.

Timestamps are epoch seconds on the way in and ISO 8601 on the way out, except the created_at
partition keys, which go back exactly as the server wrote them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from floxy_core.model import StepRecord


def epoch(value: Any) -> float | None:
    """Seconds since the epoch from a row's datetime or a state document's number."""
    if value is None:
        return None
    return value.timestamp() if isinstance(value, datetime) else float(value)


def micro(now: float) -> float:
    """The engine's clock at PostgreSQL's resolution: a time it writes and reads back (a due
    time, say) then compares equal to the `now` it was derived from."""
    return round(now, 6)


def iso(value: float | None) -> str | None:
    return None if value is None else datetime.fromtimestamp(value, UTC).isoformat()


def timestamp(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)


@dataclass
class Keys:
    """Partition keys of the rows loaded in this transaction, kept exact for pruned updates."""

    instance_created: datetime
    steps_created: dict[str, str] = field(default_factory=dict)
    """Exactly as the server wrote them."""
    step_ids: dict[str, int] = field(default_factory=dict)
    had_cancel_request: bool = False


class Steps(dict[str, StepRecord]):
    """The step rows of one instance, as `InstanceState.steps`, read from the database only as
    far as a decision looks.

    The state document of a long instance holds only the rows its queue and decisions refer to
    (migration 007), so a step's cost does not grow with the instance. A name not loaded yet is
    looked up in the same transaction (its absence is remembered); after a few such misses, or
    on any walk over all rows, the rest is read at once and the rows are put in creation order,
    keeping the objects the decision already holds.
    """

    _MISSES_BEFORE_ALL = 8

    def __init__(
        self,
        rows: list[StepRecord],
        whole: bool,
        fetch: Callable[[list[str] | None], list[StepRecord]],
    ) -> None:
        super().__init__((row.step_name, row) for row in rows)
        self._whole = whole
        self._fetch = fetch
        self._absent: set[str] = set()
        self._misses = 0

    def _find(self, name: str) -> StepRecord | None:
        found = dict.get(self, name)
        if found is not None or self._whole or name in self._absent:
            return found
        self._misses += 1
        if self._misses > self._MISSES_BEFORE_ALL:
            self._load_all()
            return dict.get(self, name)
        for row in self._fetch([name]):
            dict.setdefault(self, row.step_name, row)
        found = dict.get(self, name)
        if found is None:
            self._absent.add(name)
        return found

    def _load_all(self) -> None:
        if self._whole:
            return
        self._whole = True
        ordered = {row.step_name: dict.get(self, row.step_name) or row for row in self._fetch(None)}
        for name, row in dict.items(self):  # created by this transaction: last
            ordered.setdefault(name, row)
        dict.clear(self)
        dict.update(self, ordered)

    def get(self, name: str, default: Any = None) -> Any:
        found = self._find(name)
        return default if found is None else found

    def __getitem__(self, name: str) -> StepRecord:
        found = self._find(name)
        if found is None:
            raise KeyError(name)
        return found

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._find(name) is not None

    def __iter__(self) -> Iterator[str]:
        self._load_all()
        return dict.__iter__(self)

    def __len__(self) -> int:
        self._load_all()
        return dict.__len__(self)

    def keys(self) -> Any:
        self._load_all()
        return dict.keys(self)

    def values(self) -> Any:
        self._load_all()
        return dict.values(self)

    def items(self) -> Any:
        self._load_all()
        return dict.items(self)
