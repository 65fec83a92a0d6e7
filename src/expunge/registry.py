"""Registry: the one explicit name -> plug-in table behind methods, attacks and editors.

Registering a taken name raises ``ValueError`` (a programming error), asking for an unknown one
raises ``ExpungeError`` (a user's typo); both list the known names.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

from expunge.errors import ExpungeError

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Plug-ins of one kind by name.

    Args:
        kind: what an entry is, in messages ("method", "attack", "editor").
        unknown: how a lookup miss names it (default ``kind``), e.g. "editing method".
        ordered: list names in registration order (the order attacks run in) instead of sorted.
    """

    def __init__(self, kind: str, *, unknown: str | None = None, ordered: bool = False) -> None:
        self.kind, self.unknown, self.ordered = kind, unknown or kind, ordered
        self._items: dict[str, T] = {}

    def names(self) -> list[str]:
        return list(self._items) if self.ordered else sorted(self._items)

    def items(self) -> list[T]:
        return [self._items[name] for name in self.names()]

    def register(self, name: str, item: T) -> T:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered; known: {', '.join(self.names())}")
        self._items[name] = item
        return item

    def unregister(self, name: str) -> T:
        if name not in self._items:
            raise ValueError(f"{self.kind} {name!r} is not registered; known: {', '.join(self.names())}")
        return self._items.pop(name)

    @contextmanager
    def registered(self, name: str, item: T) -> Iterator[T]:
        """``item`` registered for the duration of a block (tests, experiments)."""
        self.register(name, item)
        try:
            yield item
        finally:
            self.unregister(name)

    def get(self, name: str) -> T:
        if name not in self._items:
            raise ExpungeError(f"unknown {self.unknown} {name!r}", f"use one of: {', '.join(self.names())}")
        return self._items[name]
