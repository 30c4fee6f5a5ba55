"""Extending semattack-bench: every registry, and the decorator that adds yours, in one place.

Every extension point is a ``bench.registry.Registry`` picked by name on the command line
(``--attack``, ``--model``, ``--dataset``, ``--graph-store``, ``--preset``, ``--format``, graph names);
a new entry is one module with one decorator::

    from bench.plugins import register_attack
    from bench.attacks.mla_u import MLAU

    @register_attack("my-attack")
    class MyAttack(MLAU):
        display_name = "Mine"            # tables, plots and reports show it

``bench`` sees it when the module is imported: either a module your own script imports before
calling ``bench.cli.main``, or a package you install that names it as an entry point in the group
``semattack_bench.plugins`` (``PLUGIN_GROUP``), in the package's ``pyproject.toml``::

    [project.entry-points."semattack_bench.plugins"]
    my-attack = "my_package.attack"              # a module: importing it registers
    my-models = "my_package.models:register"     # or a function, called with no arguments

Installed plugins load once, at the first lookup or listing of any registry
(``bench.registry.load_plugins``), so every command sees them. One that fails to import is
skipped and named in one line (``PluginError``: plugin, target, package, error) where it could
change the answer: picking a name nothing registered (``--attack typo``), or listing a registry
(``bench models --available``, a Ray worker's plugin list). Picking a registered name, and the
commands that pick nothing by name, work as if it were not installed.

Registries (each decorator's docs: the file named last):

* ``ATTACKS``, ``register_attack(name)``: an ``Attack`` subclass (Auto-PGD attacks define
  ``gradient_masks`` and ``step_direction``); docs/attacks.md.
* ``MODELS``, ``register_model(name, loss=, image_size=)``: a builder
  ``(num_classes, image_size, **kw) -> nn.Module``; docs/models.md.
* ``DATASETS``, ``register_dataset(name)``: a factory
  ``(split, root, image_size, **kw) -> MultiLabelDataset``; docs/datasets.md.
* ``STORES``, ``register_store(name)``: a ``GraphStore`` subclass (read, all-or-nothing
  write, query); docs/graph-stores.md.
* ``GRAPHS``, ``register_graph(name)``: a builder ``() -> LabelGraph`` for ``bench kg build``;
  docs/knowledge-graphs.md.
* ``EXPORTERS``, ``register_format(name)``: a writer ``LabelGraph -> str`` for
  ``bench kg export``; docs/knowledge-graphs.md.
* ``PRESETS``, ``PRESETS.register(name)(Preset(...))``: named sweep settings for
  ``bench run --preset``; docs/sweeps.md.
"""

from __future__ import annotations

from typing import Any

from bench.attacks import ATTACKS, register_attack
from bench.datasets.base import DATASETS, register_dataset
from bench.models import MODELS, ModelSpec, register_model
from bench.registry import PLUGIN_GROUP, PluginError, Registry, load_plugins
from bench.sweep.presets import PRESETS
from kg.catalog import BUILDERS as GRAPHS
from kg.catalog import register_builder as register_graph
from kg.export import EXPORTERS, register_format
from kg.stores import STORES, register_store

REGISTRIES: dict[str, Registry[Any]] = {
    "attack": ATTACKS,
    "model": MODELS,
    "dataset": DATASETS,
    "graph store": STORES,
    "graph builder": GRAPHS,
    "export format": EXPORTERS,
    "sweep preset": PRESETS,
}


def plugin_modules() -> list[str]:
    """The modules outside this package that registered an entry (plugins): a child process
    imports them to know the same names."""
    own = ("bench.", "kg.", "results.")
    entries = [r.get(name) for r in REGISTRIES.values() for name in r.names()]
    modules = {getattr(e.build if isinstance(e, ModelSpec) else e, "__module__", "") for e in entries}
    return sorted(m for m in modules if m and not m.startswith(own) and m != "__main__")


__all__ = [
    "ATTACKS",
    "DATASETS",
    "EXPORTERS",
    "GRAPHS",
    "MODELS",
    "PLUGIN_GROUP",
    "PRESETS",
    "REGISTRIES",
    "STORES",
    "PluginError",
    "load_plugins",
    "plugin_modules",
    "register_attack",
    "register_dataset",
    "register_format",
    "register_graph",
    "register_model",
    "register_store",
]
