"""`@record`: the part of `dataclasses` floxy uses, at a fraction of its import cost.

`floxyctl run` is a short process, and on Python 3.11 `dataclasses` costs it dearly: importing
it pulls in `inspect` (about 8 ms on our 2-core machine) and every class compiles five or six
generated methods (about 0.5 ms each class, 29 classes). A record compiles only `__init__`, which
must stay generated code because the engine creates records on its hot path; `__repr__`,
`__eq__`, `__hash__` and frozenness are shared functions.

Semantics follow `dataclasses` for what we use: fields from the class's own annotations in
order, defaults and `field(default_factory=..., repr=..., compare=...)`, `frozen=True` (then
hashable), mutable records unhashable, equality only between instances of the same class, and
`replace()`. Type checkers treat `@record` as a dataclass (PEP 681).
"""

from __future__ import annotations

from collections.abc import Callable
from reprlib import recursive_repr
from typing import Any, TypeVar, dataclass_transform, overload

T = TypeVar("T")

_MISSING: Any = object()


class FrozenRecordError(AttributeError):
    """Assigning to a field of a frozen record."""


class _Field:
    __slots__ = ("compare", "default", "default_factory", "name", "repr")

    def __init__(
        self,
        default: Any = _MISSING,
        default_factory: Any = _MISSING,
        repr: bool = True,
        compare: bool = True,
    ) -> None:
        self.name = ""
        self.default = default
        self.default_factory = default_factory
        self.repr = repr
        self.compare = compare


def field(
    *,
    default: Any = _MISSING,
    default_factory: Callable[[], Any] = _MISSING,
    repr: bool = True,
    compare: bool = True,
) -> Any:
    """A field with a factory default or left out of `repr` / equality."""
    return _Field(default, default_factory, repr, compare)


@recursive_repr()
def _repr(self: Any) -> str:
    shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__record_repr__)
    return f"{type(self).__qualname__}({shown})"


def _key(self: Any) -> tuple[Any, ...]:
    return tuple(getattr(self, name) for name in self.__record_compare__)


def _eq(self: Any, other: object) -> bool:
    if other.__class__ is not self.__class__:
        return NotImplemented  # type: ignore[no-any-return]
    return _key(self) == _key(other)


def _hash(self: Any) -> int:
    return hash(_key(self))


def _frozen_setattr(self: Any, name: str, value: Any) -> None:
    raise FrozenRecordError(f"cannot assign to field {name!r} of a frozen {type(self).__name__}")


def _frozen_delattr(self: Any, name: str) -> None:
    raise FrozenRecordError(f"cannot delete field {name!r} of a frozen {type(self).__name__}")


def _fields(cls: type) -> list[_Field]:
    if "__post_init__" in vars(cls):
        raise TypeError(f"{cls.__name__}: records have no __post_init__")
    fields: list[_Field] = []
    for name, annotation in getattr(cls, "__annotations__", {}).items():
        if str(annotation).startswith(("ClassVar", "typing.ClassVar")):
            continue
        value = cls.__dict__.get(name, _MISSING)
        if isinstance(value, list | dict | set):
            raise TypeError(
                f"{cls.__name__}.{name}: mutable default, use field(default_factory=...)"
            )
        spec = value if isinstance(value, _Field) else _Field(default=value)
        spec.name = name
        if isinstance(value, _Field):
            if spec.default is _MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, spec.default)
        fields.append(spec)
    return fields


def _init(cls: type, fields: list[_Field]) -> Callable[..., None]:
    """One compiled `__init__`: as fast to call as the one `dataclasses` writes."""
    env: dict[str, Any] = {"_MISSING": _MISSING}
    params: list[str] = []
    body: list[str] = []
    for f in fields:
        value = f.name
        if f.default is not _MISSING:
            env[f"_d_{f.name}"] = f.default
            params.append(f"{f.name}=_d_{f.name}")
        elif f.default_factory is not _MISSING:
            env[f"_f_{f.name}"] = f.default_factory
            params.append(f"{f.name}=_MISSING")
            value = f"_f_{f.name}() if {f.name} is _MISSING else {f.name}"
        elif params and "=" in params[-1]:
            raise TypeError(f"{cls.__name__}: field {f.name!r} without default after one with")
        else:
            params.append(f.name)
        body.append(f"    _d[{f.name!r}] = {value}")
    lines = [f"def __init__(self, {', '.join(params)}):", "    _d = self.__dict__", *body]
    exec("\n".join(lines), env)
    init: Callable[..., None] = env["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    return init


@overload
def record(cls: type[T], /) -> type[T]: ...
@overload
def record(*, frozen: bool = False) -> Callable[[type[T]], type[T]]: ...


@dataclass_transform(field_specifiers=(field,))
def record(cls: Any = None, /, *, frozen: bool = False) -> Any:
    """Make `cls` a record: like `@dataclass` / `@dataclass(frozen=True)`."""

    def wrap(cls: type[T]) -> type[T]:
        if any(hasattr(base, "__record_fields__") for base in cls.__mro__[1:]):
            raise TypeError(f"{cls.__name__}: records do not inherit fields")
        fields = _fields(cls)
        namespace: dict[str, Any] = {
            "__record_fields__": tuple(f.name for f in fields),
            "__record_repr__": tuple(f.name for f in fields if f.repr),
            "__record_compare__": tuple(f.name for f in fields if f.compare),
            "__init__": _init(cls, fields),
            "__repr__": _repr,
            "__eq__": _eq,
            "__hash__": _hash if frozen else None,
        }
        if frozen:
            namespace.update(__setattr__=_frozen_setattr, __delattr__=_frozen_delattr)
        for name, value in namespace.items():
            if name not in cls.__dict__:
                setattr(cls, name, value)
        return cls

    return wrap if cls is None else wrap(cls)


def replace(obj: T, /, **changes: Any) -> T:
    """A copy of the record `obj` with some fields changed."""
    fields: tuple[str, ...] = obj.__record_fields__  # type: ignore[attr-defined]
    values = {name: getattr(obj, name) for name in fields}
    values.update(changes)
    return type(obj)(**values)
