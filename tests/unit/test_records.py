"""`@record` behaves like the `dataclasses` features floxy relied on."""

from __future__ import annotations

import dataclasses
import random
import uuid
from typing import Any

import pytest

from floxy_core.engine.state import uuid4_text
from floxy_core.records import FrozenRecordError, field, record, replace


@record(frozen=True)
class Point:
    x: int
    y: int = 0
    tags: list[str] = field(default_factory=list)
    note: str = field(default="", repr=False, compare=False)


@record
class Counter:
    name: str
    hits: int = 0


@dataclasses.dataclass(frozen=True)
class DataPoint:
    x: int
    y: int = 0
    tags: list[str] = dataclasses.field(default_factory=list)
    note: str = dataclasses.field(default="", repr=False, compare=False)


def test_init_defaults_and_factories_match_dataclasses() -> None:
    a, b = Point(1), Point(1)
    assert (a.x, a.y, a.tags, a.note) == (1, 0, [], "")
    assert a.tags is not b.tags
    assert Point(1, 2, ["t"], note="n").tags == ["t"]
    assert Point.y == 0  # plain defaults stay class attributes, as with dataclasses


def test_repr_and_equality_follow_the_field_options() -> None:
    assert repr(Point(1, 2, note="hidden")).removeprefix("Point") == repr(
        DataPoint(1, 2, note="hidden")
    ).removeprefix("DataPoint")
    assert Point(1, note="a") == Point(1, note="b")
    assert Point(1) != Point(2)
    assert Point(1) != DataPoint(1)
    assert Point(1).__eq__(object()) is NotImplemented


def test_frozen_records_refuse_assignment_and_hash_by_value() -> None:
    p = Point(1)
    with pytest.raises(FrozenRecordError, match="frozen Point"):
        p.x = 2  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del p.y  # type: ignore[misc]
    assert hash(Point(1, tags=())) == hash(Point(1, tags=()))  # type: ignore[arg-type]


def test_mutable_records_assign_and_are_unhashable() -> None:
    c = Counter("a")
    c.hits += 1
    assert c == Counter("a", 1)
    with pytest.raises(TypeError):
        hash(c)


def test_replace_copies_with_changes_and_refuses_unknown_fields() -> None:
    p = Point(1, 2, ["t"])
    q = replace(p, y=5)
    assert (q.x, q.y, q.tags) == (1, 5, ["t"])
    assert p.y == 2
    with pytest.raises(TypeError):
        replace(p, z=1)


def test_missing_argument_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        Point()  # type: ignore[call-arg]


def test_a_field_without_default_after_one_with_is_refused() -> None:
    with pytest.raises(TypeError, match="without default"):

        @record
        class Bad:
            a: int = 0
            b: int


def test_a_mutable_default_and_post_init_are_refused() -> None:
    with pytest.raises(TypeError, match="mutable default"):

        @record
        class Shared:
            items: list[int] = []  # noqa: RUF012

    with pytest.raises(TypeError, match="__post_init__"):

        @record
        class Checked:
            a: int

            def __post_init__(self) -> None: ...


def test_a_record_that_contains_itself_has_a_finite_repr() -> None:
    c = Counter("loop")
    c.name = c  # type: ignore[assignment]
    assert repr(c) == "Counter(name=..., hits=0)"


def test_records_do_not_inherit_fields() -> None:
    with pytest.raises(TypeError, match="inherit"):

        @record
        class Child(Counter):
            extra: Any = None


def test_uuid4_text_is_uuid_version_4() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        bits = rng.getrandbits(128)
        assert uuid4_text(bits) == str(uuid.UUID(int=bits, version=4))
