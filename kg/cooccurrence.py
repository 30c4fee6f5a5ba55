"""Label co-occurrence counts and the hierarchy they encode.

ML-GCN's inputs (``MLGCN/data/voc/voc_adj.pkl``, ``MLGCN/data/nus/nus_adj.pkl`` of the GMLA
authors' repository) hold ``adj``, the co-occurrence counts of every pair of extended labels
over the training images, and ``nums``, each label's count, with the dataset's labels first
and the abstract nodes after them. A label always co-occurs with its ancestors, so the counts
encode the hierarchy:

* a is an ancestor of b when every image with b also has a (``adj[b, a] == nums[b]``) and a
  comes before b in the order (count descending, abstract nodes before labels, index): two
  nodes with the same images are stacked, not made each other's ancestor;
* b's parent is its closest ancestor, the one with the most ancestors of its own.

The whole import (names, label order, WordNet check): ``kg.graph_import``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.errors import BenchError


@dataclass(frozen=True)
class Cooccurrence:
    adj: np.ndarray  # [L, L] pair counts
    nums: np.ndarray  # [L] label counts

    def reordered(self, rows: Sequence[int]) -> Cooccurrence:
        """The counts with row/column ``rows[i]`` moved to position ``i``."""
        index = np.asarray(rows)
        return Cooccurrence(self.adj[np.ix_(index, index)], self.nums[index])


def read_cooccurrence(path: str | Path, trust: bool = False) -> Cooccurrence:
    """``adj`` and ``nums`` from ML-GCN's ``*_adj.pkl`` (numpy arrays only, unless ``trust``) or a ``.npz``."""
    from bench.untrusted import load_array_pickle

    path = Path(path).expanduser()
    if not path.is_file():
        raise BenchError(f"co-occurrence file {path} does not exist")
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as npz:
            blob = {k: npz[k] for k in npz.files}
    else:
        blob = load_array_pickle(path, "co-occurrence pickle", trust)
    if not isinstance(blob, dict) or not {"adj", "nums"} <= set(blob):
        raise BenchError(f"{path} holds no 'adj' and 'nums' (ML-GCN's co-occurrence layout)")
    adj, nums = np.asarray(blob["adj"], dtype=np.float64), np.asarray(blob["nums"], dtype=np.float64).ravel()
    if adj.shape != (len(nums), len(nums)):
        raise BenchError(f"{path}: 'adj' has shape {adj.shape}, 'nums' {len(nums)} labels")
    return Cooccurrence(adj, nums)


def recover_edges(counts: Cooccurrence, n_labels: int) -> list[tuple[int, int]]:
    """(parent, child) edges of the hierarchy the counts encode (see the module docstring)."""
    adj, nums = counts.adj, counts.nums
    n = len(nums)
    unseen = [int(v) for v in np.flatnonzero(nums <= 0)]
    if unseen:
        raise BenchError(f"nodes {unseen} never occur in the counts: their place in the hierarchy cannot be recovered")
    rank = {v: r for r, v in enumerate(sorted(range(n), key=lambda v: (-nums[v], v < n_labels, v)))}
    ancestors = {b: {a for a in range(n) if a != b and adj[b, a] >= nums[b] and rank[a] < rank[b]} for b in range(n)}
    edges = []
    for b in range(n):
        if ancestors[b]:
            parent = max(ancestors[b], key=lambda a: (len(ancestors[a]), rank[a]))
            edges.append((parent, b))
    return edges
