"""A registry maps names to the attacks, models, datasets and graph stores users can pick.

Example::

    from bench.attacks import register_attack

    @register_attack("my-attack")
    class MyAttack(APGDAttack):
        ...
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from bench.errors import BenchError, unknown

T = TypeVar("T")


class Registry(Generic[T]):
    """Names → objects of one kind, with helpful errors for unknown names."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name`` (lower-case, unique)."""
        key = name.lower()

        def deco(obj: T) -> T:
            if key in self._items and self._items[key] is not obj:
                raise BenchError(f"{self.kind} {name!r} is already registered")
            self._items[key] = obj
            return obj

        return deco

    def unregister(self, name: str) -> None:
        """Forget ``name`` (a plugin's tests register and remove their own entries)."""
        if self._items.pop(name.lower(), None) is None:
            raise unknown(self.kind, name, self._items)

    def get(self, name: str) -> T:
        try:
            return self._items[name.lower()]
        except KeyError:
            raise unknown(self.kind, name, self._items) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
