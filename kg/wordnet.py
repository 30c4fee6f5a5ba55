"""WordNet label hierarchies (Supp. §5): label → noun synset → hypernyms → refined tree.

"Given a set of labels C, we associate a synset to each label and extract abstract classes
using its hypernym relationship in Noun synsets from Wordnet. [...] we refine the
hierarchies by removing nodes which only have one child and one parent node. Furthermore,
we build a tree by using the maximum WUP similarity score between a child node and
multiple parent nodes to select a single parent node."

The pipeline, generic over any label → synset table (VOC, NUS-WIDE, the clip-art
``stamps`` set, a user's CSV):

1. **Closure**: every hypernym (and instance hypernym) of every label synset, over all
   hypernym paths; edges are WordNet's direct hypernym links (parent → child).
2. **Uninformative roots**: abstract nodes that are ancestors of *every* label are removed
   (``entity``, ``physical_entity``, ``object``, ``whole`` for VOC): they are positive on
   every image, so they carry no information and no attack can target them.
3. **Chains**: abstract nodes with exactly one child and one parent are removed, their
   parent linked to their child; so are roots with a single child. Dataset labels are
   never removed.
4. **Single parent**: a node with several parents keeps the one with the highest
   Wu-Palmer similarity to it (ties: the deeper parent in WordNet, then the smaller synset
   name).
5. **Again until stable**: dropping parent links leaves abstract nodes without children
   (removed: they cover no label) and new one-parent/one-child chains (removed).

The resulting ``LabelGraph`` lists the dataset's labels first (in the table's order, with
the dataset's spelling) and the abstract nodes after, named by their synset's first lemma.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx

from bench.errors import BenchError
from kg.graph import LabelGraph

HEADER = ("label", "synset")


@dataclass(frozen=True)
class LabelSynset:
    """One row of a label table: the dataset's label, its WordNet noun synset, a note."""

    label: str
    synset: str
    note: str = ""


# ------------------------------------------------------------------ label tables
def read_label_table(path: str | Path) -> list[LabelSynset]:
    """Read a ``label,synset[,note]`` CSV (``#`` lines are comments/provenance).

    Raises ``BenchError`` for a missing file, a missing header, an empty or duplicate label.
    A row with an empty synset is kept here; ``build_wordnet_graph`` reports it with the
    label's WordNet senses.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BenchError(f"label table {path} does not exist") from None
    except (UnicodeDecodeError, IsADirectoryError) as exc:
        raise BenchError(f"label table {path} is not a UTF-8 text file ({exc.__class__.__name__})") from None
    lines = [
        (n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip() and not line.lstrip().startswith("#")
    ]
    if not lines:
        raise BenchError(f"label table {path} has no rows (expected a header 'label,synset[,note]')")
    rows = list(csv.reader(io.StringIO("\n".join(line for _, line in lines))))
    header = tuple(x.strip().lower() for x in rows[0])
    if header[:2] != HEADER:
        raise BenchError(
            f"label table {path} line {lines[0][0]}: header must start with 'label,synset', got {','.join(rows[0])!r}"
        )
    table: list[LabelSynset] = []
    seen: dict[str, int] = {}
    for (lineno, _), row in zip(lines[1:], rows[1:], strict=True):
        cells = [x.strip() for x in row] + ["", ""]
        label, synset, note = cells[0], cells[1], ",".join(c for c in cells[2:] if c)
        if not label:
            raise BenchError(f"label table {path} line {lineno}: empty label")
        if label in seen:
            raise BenchError(f"label table {path} line {lineno}: label {label!r} repeats line {seen[label]}")
        seen[label] = lineno
        table.append(LabelSynset(label, synset, note))
    if not table:
        raise BenchError(f"label table {path} has a header but no labels")
    return table


# ---------------------------------------------------------- generic DAG refinement
# These work on a networkx DiGraph (parent → child) whose nodes are any hashable names;
# ``keep`` holds the dataset's labels, which are never removed.


def drop_uninformative_roots(dag: nx.DiGraph, keep: Iterable) -> list:
    """Remove the nodes not in ``keep`` that are ancestors of every node of ``keep``."""
    keep = set(keep)
    common = set.intersection(*(nx.ancestors(dag, k) for k in keep)) - keep if keep else set()
    dag.remove_nodes_from(common)
    return sorted(common)


def prune_chains(dag: nx.DiGraph, keep: Iterable) -> list:
    """Remove nodes outside ``keep`` with one child and one parent (or none), linking the two.

    Such a node is positive exactly when its only child is, so it carries no information.
    The paper states the one-parent case; a root with a single child (``artifact`` above
    ``instrumentality`` once ``whole`` is gone) is the same situation at the top. Repeated
    until no such node is left (a removal can turn a neighbour into one when the
    parent → child edge already existed). Returns the removed nodes in removal order.
    """
    keep = set(keep)
    removed = []
    changed = True
    while changed:
        changed = False
        for v in sorted(dag.nodes):
            if v not in keep and dag.in_degree(v) <= 1 and dag.out_degree(v) == 1:
                dag.add_edges_from((p, c) for p in dag.predecessors(v) for c in dag.successors(v))
                dag.remove_node(v)
                removed.append(v)
                changed = True
    return removed


def drop_childless(dag: nx.DiGraph, keep: Iterable) -> list:
    """Remove nodes outside ``keep`` without children (repeatedly): they cover no label."""
    keep = set(keep)
    removed = []
    todo = sorted(v for v in dag.nodes if v not in keep and dag.out_degree(v) == 0)
    while todo:
        v = todo.pop()
        parents = list(dag.predecessors(v))
        dag.remove_node(v)
        removed.append(v)
        todo.extend(p for p in parents if p not in keep and dag.out_degree(p) == 0 and p not in todo)
    return removed


def choose_parents(dag: nx.DiGraph, score: Callable[[Any, Any], Any]) -> dict:
    """Keep one parent per node: the one with the largest ``score(child, parent)``.

    Equal scores go to the parent with the smaller name (deterministic). Returns
    ``{child: (chosen, [other parents])}`` for every node that had several parents.
    """
    choices = {}
    for child in sorted(dag.nodes):
        parents = sorted(dag.predecessors(child))
        if len(parents) > 1:
            best = max(parents, key=lambda p: score(child, p))  # first of the best in name order
            dag.remove_edges_from((p, child) for p in parents if p != best)
            choices[child] = (best, [p for p in parents if p != best])
    return choices


def refine(dag: nx.DiGraph, keep: Iterable, score: Callable[[Any, Any], Any] | None) -> dict:
    """Steps 2–5 of the pipeline on ``dag`` (in place); returns what was removed and chosen.

    With ``score=None`` it stops after step 3: the pruned DAG keeps every parent.
    """
    keep = set(keep)
    log: dict[str, Any] = {"uninformative": drop_uninformative_roots(dag, keep), "chains": prune_chains(dag, keep)}
    if score is None:
        return log
    log["parent_choices"] = choose_parents(dag, score)
    log["childless"] = []
    while True:
        childless = drop_childless(dag, keep)
        chains = prune_chains(dag, keep)
        if not childless and not chains:
            return log
        log["childless"] += childless
        log["chains"] += chains


# ---------------------------------------------------------------- WordNet graphs
def _resolve(table: Sequence[LabelSynset], where: str) -> list:
    """Canonical noun synsets of the table's rows (``BenchError`` for bad or shared ones)."""
    from kg.wordnet_data import noun_synset, wordnet

    if not table:
        raise BenchError(f"{where}: the label table is empty")
    synsets: list = []  # nltk Synsets
    owner: dict[str, str] = {}  # synset name → the label that took it
    for row in table:
        if not row.synset:
            senses = wordnet().synsets(row.label.replace(" ", "_"), "n")
            hint = (
                "; its noun senses: " + ", ".join(f"{s.name()} ({s.definition()[:40]})" for s in senses[:4])
                if senses
                else "; WordNet has no noun for it, pick a synset of a related word"
            )
            raise BenchError(f"{where}: label {row.label!r} has no synset{hint}")
        try:
            s = noun_synset(row.synset)
        except BenchError as exc:
            raise BenchError(f"{where}: label {row.label!r}: {exc}") from None
        if s.name() in owner:
            raise BenchError(f"{where}: labels {owner[s.name()]!r} and {row.label!r} map to the same synset {s.name()}")
        owner[s.name()] = row.label
        synsets.append(s)
    return synsets


def hypernym_closure(synsets: Iterable) -> nx.DiGraph:
    """DAG of every (instance) hypernym of ``synsets``: nodes are synset names, parent → child."""
    dag = nx.DiGraph()
    todo = list(synsets)
    seen = set()
    while todo:
        s = todo.pop()
        if s.name() in seen:
            continue
        seen.add(s.name())
        dag.add_node(s.name())
        for h in s.hypernyms() + s.instance_hypernyms():
            dag.add_edge(h.name(), s.name())
            todo.append(h)
    return dag


def wup_score(child: str, parent: str) -> tuple[float, int]:
    """Parent ranking of step 4: WUP similarity, then the parent's WordNet depth."""
    from kg.wordnet_data import wordnet

    wn = wordnet()
    c, p = wn.synset(child), wn.synset(parent)
    return (round(c.wup_similarity(p), 12), p.max_depth())


def _node_names(table: Sequence[LabelSynset], abstract: Sequence[str]) -> list[str]:
    """Dataset spellings for labels; the synset's first lemma for abstract nodes (unique)."""
    from kg.wordnet_data import wordnet

    names = [row.label for row in table]
    taken = set(names)
    lemmas = [wordnet().synset(s).lemma_names()[0].lower() for s in abstract]
    clashes = {x for x in lemmas if lemmas.count(x) > 1} | (set(lemmas) & taken)
    for s, lemma in zip(abstract, lemmas, strict=True):
        names.append(s if lemma in clashes else lemma)
    return names


def build_wordnet_graph(name: str, table: Sequence[LabelSynset], tree: bool = True) -> LabelGraph:
    """The label hierarchy of ``table`` from WordNet 3.0 (see the module docstring).

    Args:
        name: the graph's name (``voc``, ``nus``, ``stamps``, a user's).
        table: label → synset rows in the dataset's label order.
        tree: refine to a single-parent tree (the paper); ``False`` stops after step 3
            (the pruned DAG, every node's WordNet parents kept).
    """
    synsets = _resolve(table, f"graph {name!r}")
    labels = [s.name() for s in synsets]
    dag = hypernym_closure(synsets)
    closure_size = dag.number_of_nodes()
    log = refine(dag, labels, wup_score if tree else None)
    n_ancestors = {v: len(nx.ancestors(dag, v)) for v in dag.nodes}
    abstract = sorted(set(dag.nodes) - set(labels), key=lambda v: (n_ancestors[v], v))
    order = labels + abstract
    index = {s: i for i, s in enumerate(order)}
    names = _node_names(table, abstract)
    meta = {
        "builder": "kg.wordnet.build_wordnet_graph",
        "variant": "tree (max WUP parent)" if tree else "dag (pruned, all parents)",
        "closure_nodes": closure_size,
        "removed_uninformative": log["uninformative"],
        "removed_chains": log["chains"],
        "notes": {row.label: row.note for row in table if row.note},
    }
    if tree:
        meta["removed_childless"] = log["childless"]
        meta["tie_break"] = "highest WUP(child, parent), then deeper parent (max_depth), then smaller synset name"
        meta["parent_choices"] = {
            names[index[child]]: {
                "chosen": chosen,
                "wup": {p: round(wup_score(child, p)[0], 4) for p in [chosen, *others]},
            }
            for child, (chosen, others) in log["parent_choices"].items()
            if child in index
        }
    return LabelGraph(
        name=name,
        nodes=tuple(names),
        edges=tuple((index[p], index[c]) for p, c in dag.edges),
        n_labels=len(labels),
        ids=tuple(order),
        source="wordnet-3.0",
        meta=meta,
    )
