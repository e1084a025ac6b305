"""Value objects that are built on every message: immutable to the type checker only."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar, dataclass_transform

T = TypeVar("T")


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def hot_value(cls: type[T]) -> type[T]:
    """A slotted dataclass that mypy treats as frozen, without run-time freezing.

    A frozen dataclass sets each field through ``object.__setattr__`` in its
    ``__init__``: for a message's 15 fields 1.8 µs against 0.5 µs for a plain one,
    once per message on the event loop. These objects are never mutated (mypy refuses
    an assignment to a field, as it would for ``frozen=True``) and never hashed (a
    message and an event hold dicts, and nothing keys by a delivery);
    ``dataclasses.replace`` makes changed copies as before.
    """
    return dataclass(slots=True)(cls)
