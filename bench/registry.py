"""A registry maps names to the attacks, models, datasets and graph stores users can pick.

Example::

    from bench.attacks import register_attack

    @register_attack("my-attack")
    class MyAttack(APGDAttack):
        ...

Plugins installed as packages are found through the entry-point group ``semattack_bench.plugins``
(``PLUGIN_GROUP``): each entry point names a module, imported (its decorators register), or a
function ``module:function``, called with no arguments. They load once per process, at the first
lookup or listing of any registry (``load_plugins``). A plugin that fails to load is skipped; its
failure is one line (a ``BenchError`` naming the plugin and its error) where it could change the
answer: a lookup of a name nobody registered (the name may be the broken plugin's) and a listing
(``names()``, ``PluginError``). Looking up a registered name, testing ``name in registry`` and a
help text's list (``names(loaded_only=True)``) work as if the plugin were not installed.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Generic, TypeVar

from bench.errors import BenchError, one_line, unknown

T = TypeVar("T")

PLUGIN_GROUP = "semattack_bench.plugins"


@dataclass(frozen=True)
class PluginFailure:
    """An entry-point plugin that did not load: its name, target (``module[:function]``),
    package and the error (one line)."""

    name: str
    target: str
    package: str
    error: str

    def __str__(self) -> str:
        source = f", package {self.package}" if self.package else ""
        return f"plugin {self.name!r} ({self.target}{source}) did not load: {self.error}"


class PluginError(BenchError):
    """Installed plugins that did not load; carries their ``failures``."""

    def __init__(self, failures: Sequence[PluginFailure]) -> None:
        self.failures = tuple(failures)
        them = "it" if len(self.failures) == 1 else "them"
        super().__init__(f"{'; '.join(map(str, self.failures))} (fix or uninstall {them})")


_lock = threading.RLock()  # re-entrant: a plugin's own lookups while it loads see the registries as they are
_loaded = False
_failures: list[PluginFailure] = []


def load_plugins(*, again: bool = False) -> list[PluginFailure]:
    """Load the ``PLUGIN_GROUP`` entry points (once per process; ``again``: forget the earlier
    load, for tests that install a plugin); returns the plugins that failed."""
    global _loaded
    with _lock:
        if again:
            _loaded = False
            _failures.clear()
        if _loaded:
            return list(_failures)
        _loaded = True
        seen: set[tuple[str, str]] = set()
        for ep in metadata.entry_points(group=PLUGIN_GROUP):
            if (ep.name, ep.value) in seen:  # the same distribution found twice on sys.path
                continue
            seen.add((ep.name, ep.value))
            try:
                loaded = ep.load()
                if ep.attr:
                    loaded()
            except Exception as exc:  # any import or registration error: one line, the other plugins load
                package = ep.dist.name if ep.dist is not None else ""
                _failures.append(PluginFailure(ep.name, ep.value, package, f"{type(exc).__name__}: {one_line(exc)}"))
        return list(_failures)


def child_process_env() -> dict[str, str]:
    """What a child process (a Ray worker, a benchmark's subprocess) needs to import this
    process's modules, plugins included: the same import paths."""
    return {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}


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

    def _unknown(self, name: str) -> BenchError:
        error = unknown(self.kind, name, self._items)
        failures = load_plugins()
        return error.suffixed("; ".join(map(str, failures))) if failures else error

    def unregister(self, name: str) -> None:
        """Forget ``name`` (a plugin's tests register and remove their own entries)."""
        load_plugins()
        if self._items.pop(name.lower(), None) is None:
            raise self._unknown(name)

    def get(self, name: str) -> T:
        load_plugins()
        try:
            return self._items[name.lower()]
        except KeyError:
            raise self._unknown(name) from None

    def names(self, *, loaded_only: bool = False) -> list[str]:
        """The registered names; ``PluginError`` when an installed plugin did not load (the list
        would lack its names), unless ``loaded_only`` (a help text: the names at hand)."""
        failures = load_plugins()
        if failures and not loaded_only:
            raise PluginError(failures)
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        load_plugins()
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
