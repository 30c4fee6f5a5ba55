"""The lowest common WordNet hypernym of a group of dataset labels.

It names the abstract nodes of a hierarchy recovered from co-occurrence counts (``placental``,
``artifact``: the hypernym of the dataset labels below each, numbered when two share a name)
and scores how well the labels below a node belong together (``kg.plausibility``).
"""

from __future__ import annotations

from collections.abc import Sequence


class Hypernyms:
    """Each label synset's hypernyms (itself included, all paths, instance hypernyms too) and
    their WordNet depths, for the lowest common hypernym of any group of labels."""

    def __init__(self, synsets: Sequence[str]) -> None:
        from kg.wordnet_data import noun_synset

        self.closure: list[frozenset[str]] = []
        self.min_depth: dict[str, int] = {}
        self.max_depth: dict[str, int] = {}
        for name in synsets:
            if not name:
                self.closure.append(frozenset())
                continue
            seen, stack = {}, [noun_synset(name)]
            while stack:
                s = stack.pop()
                if s.name() not in seen:
                    seen[s.name()] = s
                    stack.extend(s.hypernyms() + s.instance_hypernyms())
            for key, s in seen.items():
                if key not in self.min_depth:
                    self.min_depth[key], self.max_depth[key] = s.min_depth(), s.max_depth()
            self.closure.append(frozenset(seen))

    def common(self, labels: Sequence[int]) -> str:
        """The lowest common hypernym of the labels' synsets (nltk's rule: the deepest by
        ``max_depth``, then the smallest name); ``""`` when none has a synset."""
        sets = [self.closure[u] for u in labels if self.closure[u]]
        if not sets:
            return ""
        shared = frozenset.intersection(*sets)
        return min(shared, key=lambda s: (-self.max_depth[s], s)) if shared else ""


def labels_below(edges: Sequence[tuple[int, int]], n_labels: int) -> dict[int, list[int]]:
    """For every node with children, the dataset labels among its descendants (sorted)."""
    children: dict[int, list[int]] = {}
    for p, c in edges:
        children.setdefault(p, []).append(c)
    out = {}
    for v in children:
        found, stack = set(), list(children[v])
        while stack:
            u = stack.pop()
            if u < n_labels:
                found.add(u)
            stack.extend(children.get(u, []))
        out[v] = sorted(found)
    return out


def abstract_names(
    graph_edges: Sequence[tuple[int, int]], n: int, labels: Sequence[str], synsets: Sequence[str]
) -> tuple[list[str], list[str]]:
    """Names and synsets of the abstract nodes (n_labels … n−1): the lowest common hypernym of
    the synsets of the dataset labels below each."""
    from kg.wordnet_data import wordnet

    hypernyms, below = Hypernyms(synsets), labels_below(graph_edges, len(labels))
    names, ids, used = [], [], set(labels)
    for v in range(len(labels), n):
        common = hypernyms.common(below.get(v, []))
        base = wordnet().synset(common).lemmas()[0].name().lower() if common else "abstract"
        name, k = base, 2
        while name in used:
            name, k = f"{base}-{k}", k + 1
        used.add(name)
        names.append(name)
        ids.append(common)
    return names, ids
