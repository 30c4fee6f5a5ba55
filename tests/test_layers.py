"""The drawing of the imports: every module of ``bench``, ``kg``, ``results`` and ``cypher`` on a
floor, and every import (at the top of a module or inside a function: both run) pointing to the
same floor or one below. No circle between modules, nothing running up.

    python -m tests.test_layers      # print the floors and the arrows between them
"""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bench", "kg", "results", "cypher")

#: Floors, bottom first: a module is on the floor of the longest prefix that names it.
FLOORS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "foundation",
        (
            "bench.version",
            "bench.errors",
            "bench.registry",
            "bench.paths",
            "bench.fileio",
            "bench.progress",
            "bench.untrusted",
            "bench.names",
            "bench.devices",
            "bench.numerics",
            "bench.precision",
            "cypher",
        ),
    ),
    ("graphs", ("kg",)),
    (
        "models, data, attacks",
        ("bench.metrics", "bench.models", "bench.datasets", "bench.attacks", "bench.evaluate", "bench.examples"),
    ),
    ("defenses", ("bench.defenses",)),
    ("results", ("results",)),
    ("sweeps and training", ("bench.sweep", "bench.train")),
    ("jobs and the one call", ("bench.jobs", "bench.api", "bench.plugins")),
    ("command line", ("bench.cli", "bench")),
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def imports() -> nx.DiGraph:
    """Module → the project's modules it imports (the longest known prefix of each name)."""
    known = modules()
    graph = nx.DiGraph()
    for name, path in known.items():
        graph.add_node(name)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in known:
                    target = target.rpartition(".")[0]
                if target and target != name and not name.startswith(target + "."):  # a package's own __init__
                    graph.add_edge(name, target)
    return graph


def floor(module: str) -> int:
    best, level = -1, -1
    for i, (_, prefixes) in enumerate(FLOORS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, level = len(prefix), i
    return level


def test_every_module_has_a_floor():
    assert not [m for m in modules() if floor(m) < 0], "modules on no floor: add them to FLOORS"


def test_imports_form_no_circle():
    cycles = sorted(nx.simple_cycles(imports()), key=len)
    assert not cycles, f"{len(cycles)} circles, e.g. {' → '.join([*cycles[0], cycles[0][0]])}"


def test_no_import_runs_up():
    up = sorted((a, b) for a, b in imports().edges if floor(b) > floor(a))
    assert not up, f"{len(up)} imports run up: " + "; ".join(f"{a} → {b}" for a, b in up[:10])


def draw() -> str:
    graph = imports()
    lines = []
    for i, (title, _) in reversed(list(enumerate(FLOORS))):
        members = sorted(m for m in graph if floor(m) == i)
        arrows = Counter(FLOORS[floor(b)][0] for a, b in graph.edges if floor(a) == i and floor(b) != i)
        below = ", ".join(f"{n} → {t}" for t, n in sorted(arrows.items(), key=lambda kv: -kv[1]))
        lines.append(f"{i} {title} ({len(members)} modules){': imports ' + below if below else ''}")
    up = [(a, b) for a, b in graph.edges if floor(b) > floor(a)]
    circles = len(list(nx.simple_cycles(graph)))
    lines.append(f"{graph.number_of_edges()} imports, {len(up)} running up, {circles} circles")
    return "\n".join(lines)


if __name__ == "__main__":
    print(draw())
