"""Model outputs → hierarchy nodes, as the paper maps ASL's 9605 Open Images outputs onto
the 601-class hierarchy: by lower-cased display name (``generate_tree_and_hierarchy_map.py``).

Only matched classes take part in the closure h(Ω) and in the consistency checks, so the
graph is restricted to the matched nodes: a kept node's parents become its nearest kept
ancestors (ancestry among kept nodes is preserved), and the model is wrapped so that its
outputs come in that graph's node order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from bench.errors import BenchError
from kg.graph import LabelGraph


def clean_class_name(name: str) -> str:
    """A display name without CSV-quoting damage (``'\"\"\"Pig's organ soup\"\"\"'`` → ``"Pig's organ soup"``)."""
    name = name.strip()
    while len(name) >= 2 and name[0] == name[-1] == '"':
        name = name[1:-1].strip()
    return name.replace('""', '"')


def restrict_graph(graph: LabelGraph, keep: Sequence[int]) -> LabelGraph:
    """The graph on the ``keep`` nodes (original order); each keeps its nearest kept ancestors as parents."""
    keep = sorted({int(k) for k in keep})
    kept = set(keep)
    position = {old: new for new, old in enumerate(keep)}
    ancestors = {v: graph.ancestors(v) for v in keep}
    edges = []
    for c in keep:
        parents, todo, seen = set(), list(graph.parents(c)), set()
        while todo:
            v = todo.pop()
            if v in seen:
                continue
            seen.add(v)
            if v in kept:
                parents.add(v)
            else:
                todo.extend(graph.parents(v))
        # a bridged parent that is an ancestor of another kept parent is implied: leave it out
        direct = {p for p in parents if not any(p in ancestors[q] for q in parents if q != p)}
        edges += [(position[p], position[c]) for p in direct]
    return LabelGraph(
        name=graph.name,
        nodes=tuple(graph.nodes[i] for i in keep),
        edges=tuple(edges),
        n_labels=sum(1 for i in keep if i < graph.n_labels),
        ids=tuple(graph.ids[i] for i in keep),
        source=graph.source,
        meta={
            **dict(graph.meta),
            "restricted_from": graph.sha256,
            "dropped": [graph.nodes[i] for i in range(graph.n) if i not in kept],
        },
    )


@dataclass
class OutputMatch:
    """Which model output feeds each node of ``graph`` (the hierarchy restricted to matched nodes)."""

    graph: LabelGraph
    outputs: list[int]
    n_outputs: int
    unmatched: list[str]

    @property
    def matched(self) -> int:
        return len(self.outputs)

    def summary(self) -> str:
        total = self.matched + len(self.unmatched)
        return f"{self.matched} of {total} hierarchy classes matched among {self.n_outputs} model outputs"


def match_outputs(class_names: Sequence[str], graph: LabelGraph) -> OutputMatch:
    """Match output names to graph nodes by lower-cased display name (first output wins)."""
    by_name: dict[str, int] = {}
    for i, name in enumerate(class_names):
        by_name.setdefault(clean_class_name(str(name)).lower(), i)
    pairs = [(v, by_name[node.lower()]) for v, node in enumerate(graph.nodes) if node.lower() in by_name]
    if not pairs:
        raise BenchError(f"none of the {len(class_names)} model outputs matches a node of graph {graph.name!r} by name")
    sub = restrict_graph(graph, [v for v, _ in pairs])
    unmatched = [graph.nodes[v] for v in range(graph.n) if graph.nodes[v].lower() not in by_name]
    return OutputMatch(sub, [o for _, o in pairs], len(class_names), unmatched)


class SelectOutputs(nn.Module):
    """A model whose logits are those of ``model`` at ``outputs`` (one per graph node, in order)."""

    def __init__(self, model: nn.Module, outputs: Sequence[int]) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("outputs", torch.tensor(list(outputs), dtype=torch.long), persistent=False)

    def forward(self, images: Tensor) -> Tensor:
        return self.model(images).index_select(1, self.outputs)


class MatchedDataset:
    """A dataset seen through ``match.graph``: same images, targets restricted to the matched nodes."""

    def __init__(self, dataset, match: OutputMatch) -> None:
        self.dataset, self.graph = dataset, match.graph
        self.keep = torch.tensor(dataset.graph.indices(match.graph.nodes), dtype=torch.long)
        self.image_size = getattr(dataset, "image_size", None)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image, target = self.dataset[index]
        return image, target[self.keep]

    def image_id(self, index: int) -> str:
        return self.dataset.image_id(index)

    def targets(self) -> Tensor:
        return self.dataset.targets()[:, self.keep]


def on_graph(model: nn.Module, dataset, class_names: Sequence[str] | None = None):
    """``(model, dataset, match)`` with the model's outputs in the dataset graph's node order.

    With output names (a published checkpoint's ``idx_to_class``) the outputs are matched
    by name and both sides restricted to the matched nodes; without, the model must have
    one output per graph node (``match`` is then ``None``).
    """
    if class_names:
        match = match_outputs(class_names, dataset.graph)
        return SelectOutputs(model, match.outputs), MatchedDataset(dataset, match), match
    config = getattr(model, "config", None)  # a MultiLabelNet's: what rebuilds it
    outputs = int(config["num_classes"]) if config is not None else None
    if outputs != dataset.graph.n:
        raise BenchError(
            f"the model has {outputs} outputs, the dataset's graph {dataset.graph.name!r} has {dataset.graph.n} nodes"
        )
    return model, dataset, None
