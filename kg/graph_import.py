"""A hierarchy recovered from label co-occurrence counts: the authors' own graphs.

The paper's VOC and NUS-WIDE models were trained on the authors' 35- and 116-label
hierarchies, which are not published as graphs; their repository publishes ML-GCN's inputs
for them, label co-occurrence counts, which encode the hierarchy (``kg.cooccurrence``). An
import reads a user's local copy (never downloaded, none of it shipped) and

* puts the file's first rows in the dataset's order: **the order of the file's first rows is
  an input** (``kg.label_order``): the counts carry no names, and the authors' VOC file is
  not in VOC's order (row 0 is ``person``); without an order the dataset's own is assumed,
  and the caller is told so;
* recovers the edges (``kg.cooccurrence``) and names each abstract node from WordNet: the
  lowest common hypernym of the synsets of the dataset labels below it (``kg.hypernyms``);
* **checks the recovered hierarchy** (``kg.plausibility``): rows in the wrong order still give
  a tree whose groups of labels are unrelated; such a hierarchy is refused unless kept
  knowingly.

``bench kg import`` saves the graph under a name that works everywhere (training, sweeps,
export); ``bench kg diff`` (``kg.diff``) shows node by node where it differs from another.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from bench.errors import BenchError
from kg.cooccurrence import read_cooccurrence, recover_edges
from kg.graph import LabelGraph
from kg.hypernyms import abstract_names
from kg.label_order import LabelOrder, authors_file, authors_orders, label_order
from kg.plausibility import SHALLOW_STEPS, Plausibility, assess


@dataclass(frozen=True)
class Recovered:
    """A recovered graph with the label order it was read in and its WordNet fit."""

    graph: LabelGraph
    order: LabelOrder
    plausibility: Plausibility
    authors_file: str | None  # the dataset whose authors' file this is (by sha256), if it is one

    def require_plausible(self, accept_implausible: bool = False) -> None:
        """``BenchError`` (one line naming ``labels`` and ``accept_implausible``) for an
        implausible hierarchy, unless ``accept_implausible``."""
        p, dataset = self.plausibility, self.graph.meta["dataset"]
        if p.plausible or accept_implausible:
            return
        hint = ""
        if dataset in authors_orders()["datasets"] and self.order.kind != "authors":
            hint = " (the authors' files: {labels} authors)"
        raise BenchError(
            f"implausible hierarchy ({dataset} labels in {self.order.source} order): {p.shallow} of {len(p.fits)} "
            f"abstract nodes are within {SHALLOW_STEPS} steps of {p.top}, the WordNet hypernym of all {dataset} "
            f"labels, as with random orders ({p.random_shallow:.1f} of {len(p.fits)}); give the file's row order "
            f"with {{labels}}{hint} or keep it anyway with {{accept_implausible}}",
            options=["labels", "accept_implausible"],
        )


def recover(
    dataset: str, path: str | Path, name: str, trust: bool = False, labels: str | Sequence[str] | None = None
) -> Recovered:
    """The hierarchy of ``dataset``'s extended labels that a co-occurrence file encodes, with
    the file's first rows in the order ``labels`` gives (see :func:`kg.label_order.label_order`),
    checked against WordNet but not refused: see :meth:`Recovered.require_plausible`."""
    from kg.catalog import LABEL_TABLES
    from kg.wordnet import read_label_table

    table_path = LABEL_TABLES / f"{dataset}.csv"
    if not table_path.exists():
        known = sorted(p.stem for p in LABEL_TABLES.glob("*.csv"))
        raise BenchError(
            f"no label table for dataset {dataset!r} (known: {', '.join(known)}): "
            "the file's first labels are the dataset's"
        )
    table = read_label_table(table_path)
    names, synsets = [row.label for row in table], [row.synset for row in table]
    order = label_order(dataset, names, labels)
    counts = read_cooccurrence(path, trust)
    k, n = len(table), len(counts.nums)
    if n < k:
        raise BenchError(f"{path} has {n} labels, fewer than the {k} labels of {dataset}")
    counts = counts.reordered(order.permutation(names) + list(range(k, n)))  # the dataset's order
    edges = recover_edges(counts, k)
    abstract, ids = abstract_names(edges, n, names, synsets)
    graph = LabelGraph(
        name,
        tuple(names + abstract),
        tuple(edges),
        k,
        ids=tuple(synsets + ids),
        source=f"co-occurrence:{Path(path).name}",
        meta={
            "dataset": dataset,
            "file": str(Path(path).name),
            "file_label_order": list(order.names),
            "file_label_order_source": order.source + (" (assumed)" if order.assumed else ""),
            "abstract_names": "lowest common WordNet hypernym",
        },
    )
    plausibility = assess(graph, counts, synsets)
    graph = replace(graph, meta={**graph.meta, "plausibility": plausibility.to_meta()})
    return Recovered(graph, order, plausibility, authors_file(path))


def import_graph(
    dataset: str,
    path: str | Path,
    name: str,
    trust: bool = False,
    labels: str | Sequence[str] | None = None,
    accept_implausible: bool = False,
    report: Callable[[Recovered], None] | None = None,
) -> LabelGraph:
    """:func:`recover`, then ``report`` (when given) with what was recovered, label order and
    WordNet fit, implausible or not; then an implausible hierarchy is refused unless
    ``accept_implausible`` (:meth:`Recovered.require_plausible`). Saving it is the caller's:
    ``kg.catalog.save_user_graph``, as for a built graph."""
    recovered = recover(dataset, path, name, trust, labels)
    if report is not None:
        report(recovered)
    recovered.require_plausible(accept_implausible)
    return recovered.graph
