"""Planning a sweep by the paper's protocol (docs/sweeps.md, The protocol): clean predictions,
eligible images, target combinations.

* **Clean predictions**: the model's logits on the test split, once per run; a prediction is
  ``logit > 0``. Images that do not decode are skipped and counted.
* **Eligible images** for a target set Ω (turning Ω off): the clean prediction is globally
  consistent with the graph (the official ``store_gcn_consistent.py`` filter) and has every
  label of Ω positive. The first N eligible images, in dataset order, are attacked.
* **Combinations**: every combination of k of the dataset's own labels (``graph.labels``;
  abstract nodes only with ``include_abstract``), in ``itertools.combinations`` order, sizes
  ascending. Combinations with no eligible image are kept with their count (0).
* **Sampled combinations** (Open Images, the official ``generate_combs.py``): labels with at
  least 50 consistent positive predictions; ⌈k/2⌉ of them leaves of the hierarchy (no child,
  at least one parent), the others not; each label in at most one combination of a size; a
  combination is kept when more than 50 consistent predictions have all k labels positive and
  more than k positives in all. Drawn at random (seeded) until the labels run out or
  ``max_tries`` draws in a row are rejected.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from bench.attacks.ops import forward, model_dtype
from bench.datasets import batches
from bench.errors import BenchError
from kg.closure import GraphTensors, global_consistency
from kg.graph import LabelGraph
from results.schema import Combination

MAX_ENUMERATED = 2_000_000  # combinations of one size we agree to list one by one
ELIGIBILITY_CELLS = 2**25  # images × combinations per eligibility chunk (~32 MB of booleans)


# ------------------------------------------------------------------ clean predictions
@dataclass(frozen=True)
class CleanPredictions:
    """The model's clean predictions on a split, for the images that decode.

    Attributes:
        logits: ``[M, n]`` float32 on the CPU, in dataset order.
        indices: ``[M]`` the dataset index of each row.
        image_ids: the dataset's id of each row (stored with the results).
        consistent: ``[M]`` bool, the prediction is globally consistent with the graph.
        skipped: images that did not decode.
    """

    logits: Tensor
    indices: Tensor
    image_ids: tuple[str, ...]
    consistent: Tensor
    skipped: int = 0

    @property
    def positive(self) -> Tensor:
        return self.logits > 0

    def __len__(self) -> int:
        return int(self.logits.shape[0])


@torch.no_grad()
def clean_predictions(
    model: nn.Module,
    dataset,
    graph: LabelGraph,
    device: torch.device | str = "cpu",
    batch_size: int = 64,
    progress: Callable[[int], None] | None = None,
    enough: Callable[[Tensor, Tensor], bool] | None = None,
) -> CleanPredictions:
    """Run the model (eval mode, float32) over a split; ``progress(n)`` after each batch.

    ``enough(positive, consistent)``, called with every row so far after each batch, stops the
    pass early (``bench attack`` needs only the first eligible images); rows are the same as a
    full pass's first rows, since consistency is decided row by row.
    """
    model.eval()
    dtype = model_dtype(model)
    g = GraphTensors(graph)
    logits, indices, consistent, seen = [], [], [], 0
    for images, _, idx in batches(dataset, batch_size=batch_size):
        out = forward(model, images.to(device, dtype)).float().cpu()
        if out.shape[1] != graph.n:
            raise BenchError(f"the model has {out.shape[1]} outputs but graph {graph.name!r} has {graph.n} nodes")
        logits.append(out)
        indices.append(idx)
        consistent.append(global_consistency(out > 0, g))
        seen = int(idx[-1]) + 1
        if progress is not None:
            progress(len(idx))
        if enough is not None and enough(torch.cat(logits) > 0, torch.cat(consistent)):
            break
    else:
        seen = len(dataset)
    if not logits:
        raise BenchError(
            f"no image of {getattr(dataset, 'name', 'the dataset')}/{getattr(dataset, 'split', '?')} decodes"
        )
    z, idx = torch.cat(logits), torch.cat(indices)
    image_ids = tuple(dataset.image_id(int(i)) for i in idx)
    return CleanPredictions(z, idx, image_ids, torch.cat(consistent), seen - len(idx))


# ------------------------------------------------------------------ combinations
@dataclass(frozen=True)
class PlannedCombination:
    """A target set Ω of the run: its members (graph node indices, ascending), how many images
    are eligible and the rows of ``CleanPredictions`` attacked (the first N eligible)."""

    combo_id: int
    members: tuple[int, ...]
    labels: tuple[str, ...]
    eligible: int
    images: tuple[int, ...]

    @property
    def size(self) -> int:
        return len(self.members)

    def record(self) -> Combination:
        return Combination(self.combo_id, self.labels, self.eligible, len(self.images))


def label_candidates(graph: LabelGraph, include_abstract: bool = False) -> list[int]:
    """The nodes combinations are drawn from: the dataset's own labels, or every node."""
    return list(range(graph.n if include_abstract else graph.n_labels))


def check_sizes(sizes: Sequence[int], n_candidates: int, graph: LabelGraph) -> None:
    """|Ω| against the graph's candidates, where sizes and graph first meet (``sweep_config``);
    that each size is at least 1 is checked where sizes are given (``SweepOptions``)."""
    for k in sizes:
        if k > n_candidates:
            raise BenchError(f"|Ω| = {k} is larger than the {n_candidates} labels of {graph.name!r}")


def all_combinations(candidates: Sequence[int], k: int, sampling: bool = False) -> Tensor:
    """``[C, k]`` every combination of k candidates, in ``itertools.combinations`` order
    (``sampling``: they are listed to draw a sample from, which the message says)."""
    count = math.comb(len(candidates), k)
    if count > MAX_ENUMERATED and sampling:
        raise BenchError(
            f"{count:,} combinations of size {k} from {len(candidates)} labels are too many to list before "
            "drawing {combinations_per_size} of them: use {combos} sampled (it draws without listing) "
            "or smaller {sizes}",
            options=["combinations_per_size", "combos", "sizes"],
        )
    if count > MAX_ENUMERATED:
        raise BenchError(
            f"{count:,} combinations of size {k} from {len(candidates)} labels are too many to attack "
            "one by one: use {combos} sampled, smaller {sizes}, or {combinations_per_size}",
            options=["combos", "sizes", "combinations_per_size"],
        )
    if count == 0:
        return torch.zeros(0, k, dtype=torch.long)
    return torch.tensor(list(itertools.combinations(candidates, k)), dtype=torch.long).view(count, k)


def eligible_images(positive: Tensor, consistent: Tensor, combos: Tensor, limit: int) -> tuple[Tensor, list[Tensor]]:
    """Per combination: how many images are eligible, and the first ``limit`` of them.

    Args:
        positive: ``[M, n]`` bool clean predictions.
        consistent: ``[M]`` bool, globally consistent predictions.
        combos: ``[C, k]`` node indices.
        limit: images to keep per combination.

    Returns:
        ``counts [C]`` and, per combination, the ascending rows of its first ``limit`` eligible images.
    """
    m, c = positive.shape[0], combos.shape[0]
    counts = torch.zeros(c, dtype=torch.long)
    chosen: list[Tensor] = []
    usable = positive & consistent.view(-1, 1)
    step = max(1, ELIGIBILITY_CELLS // max(m * max(combos.shape[1], 1), 1))
    for start in range(0, c, step):
        block = combos[start : start + step]
        ok = usable[:, block].all(dim=2)  # [M, c]
        counts[start : start + len(block)] = ok.sum(0)
        first = ok & (ok.cumsum(0) <= limit)
        combo, row = first.T.nonzero(as_tuple=True)  # sorted by combination, then row
        per = torch.bincount(combo, minlength=len(block)).tolist()
        chosen.extend(torch.split(row, per))
    return counts, chosen


@dataclass(frozen=True)
class SamplingRules:
    """The Open Images sampling's thresholds (official ``generate_combs.py``)."""

    min_label_images: int = 50  # a label needs at least this many consistent positives
    min_images: int = 50  # a combination needs more than this many images with all k and > k positives
    max_tries: int = 10_000  # rejected draws in a row before giving up


def sample_combinations(
    positive: Tensor,
    consistent: Tensor,
    graph: LabelGraph,
    k: int,
    seed: int,
    candidates: Sequence[int] | None = None,
    rules: SamplingRules = SamplingRules(),
    limit: int | None = None,
) -> list[tuple[int, ...]]:
    """Combinations of size k drawn by the Open Images rules (module docstring), seeded.

    Drawing ⌈k/2⌉ leaves and k − ⌈k/2⌉ other labels uniformly among the labels not used yet
    is the official rejection loop (draw among all, reject a draw that reuses a label) without
    the rejected draws.
    """
    candidates = list(range(graph.n)) if candidates is None else list(candidates)
    pred = positive & consistent.view(-1, 1)
    frequent = [v for v in candidates if int(pred[:, v].sum()) >= rules.min_label_images]
    leaves = [v for v in frequent if not graph.children(v) and graph.parents(v)]
    others = [v for v in frequent if graph.children(v) or not graph.parents(v)]
    n_leaves = math.ceil(k / 2)
    n_others = k - n_leaves
    rich = pred.sum(1) > k  # more than k positive labels
    rng = np.random.default_rng([seed, k])
    used: set[int] = set()
    out: list[tuple[int, ...]] = []
    fails = 0
    while fails < rules.max_tries and (limit is None or len(out) < limit):
        free_leaves = [v for v in leaves if v not in used]
        free_others = [v for v in others if v not in used]
        if len(free_leaves) < n_leaves or len(free_others) < n_others:
            break
        draw = [int(v) for v in rng.choice(free_leaves, n_leaves, replace=False)]
        draw += [int(v) for v in rng.choice(free_others, n_others, replace=False)] if n_others else []
        combo = tuple(sorted(draw))
        if int((pred[:, list(combo)].all(1) & rich).sum()) > rules.min_images:
            out.append(combo)
            used.update(combo)
            fails = 0
        else:
            fails += 1
    return out


def plan_combinations(
    clean: CleanPredictions,
    graph: LabelGraph,
    sizes: Sequence[int],
    images_per_combination: int,
    mode: str = "all",
    seed: int = 0,
    include_abstract: bool = False,
    per_size: int | None = None,
    rules: SamplingRules = SamplingRules(),
) -> list[PlannedCombination]:
    """The run's combinations with their eligible images; ``combo_id`` = position in the list.

    ``mode="all"``: every combination of each size (those without eligible images included).
    ``mode="sampled"``: the Open Images sampling (``per_size`` caps how many per size).
    ``per_size`` with ``mode="all"``: a seeded sample of ``per_size`` combinations per size
    among those with eligible images, the ones with a full set of N images first (the demo).
    """
    if images_per_combination < 1:
        raise BenchError(f"images per combination must be at least 1; got {images_per_combination}")
    if per_size is not None and per_size < 1:
        raise BenchError(f"combinations per size must be at least 1; got {per_size}")
    candidates = label_candidates(graph, include_abstract)
    positive = clean.positive
    planned: list[PlannedCombination] = []
    for k in sorted(set(sizes)):
        if mode == "sampled":
            drawn = sample_combinations(positive, clean.consistent, graph, k, seed, candidates, rules, per_size)
            combos = torch.tensor(drawn, dtype=torch.long).view(len(drawn), k)
        else:
            combos = all_combinations(candidates, k, sampling=per_size is not None)
        counts, chosen = eligible_images(positive, clean.consistent, combos, images_per_combination)
        keep: Sequence[int] = range(len(combos))
        if mode != "sampled" and per_size is not None:
            keep = _sample_full_first(counts, images_per_combination, per_size, np.random.default_rng([seed, k]))
        for i in keep:
            members = tuple(int(v) for v in combos[i])
            planned.append(
                PlannedCombination(
                    combo_id=len(planned),
                    members=members,
                    labels=tuple(graph.nodes[v] for v in members),
                    eligible=int(counts[i]),
                    images=tuple(int(r) for r in chosen[i]),
                )
            )
    return planned


def _sample_full_first(counts: Tensor, wanted_images: int, per_size: int, rng: np.random.Generator) -> list[int]:
    """Up to ``per_size`` combinations with eligible images, those with ``wanted_images`` first; in list order."""
    full = np.flatnonzero(counts.numpy() >= wanted_images)
    partial = np.flatnonzero((counts.numpy() > 0) & (counts.numpy() < wanted_images))
    pick = list(rng.permutation(full)[:per_size])
    pick += list(rng.permutation(partial)[: per_size - len(pick)])
    return sorted(int(i) for i in pick)


def shard_of(planned: Sequence[PlannedCombination], index: int, count: int) -> list[PlannedCombination]:
    """The combinations of shard ``index`` of ``count``: ``combo_id % count == index``."""
    return [c for c in planned if c.combo_id % count == index]


__all__ = [
    "CleanPredictions",
    "PlannedCombination",
    "SamplingRules",
    "all_combinations",
    "clean_predictions",
    "eligible_images",
    "label_candidates",
    "plan_combinations",
    "sample_combinations",
    "shard_of",
]


def first_eligible(
    model: nn.Module, dataset, graph: LabelGraph, omega: Tensor, limit: int, turn_on: bool = False, device="cpu"
):
    """The first ``limit`` eligible images of one target set, as ``bench run`` chooses them:
    the dataset indices and their clean logits (``bench attack`` uses this; one path for both).
    The clean pass stops once ``limit`` images are eligible.

    Eligible: the clean prediction is globally consistent with the graph and has every target
    positive (negative when turning the targets on).
    """
    members = omega.nonzero().flatten().view(1, -1).cpu()

    def usable(positive: Tensor) -> Tensor:
        return ~positive if turn_on else positive

    def enough(positive: Tensor, consistent: Tensor) -> bool:
        return int(eligible_images(usable(positive), consistent, members, limit)[0][0]) >= limit

    clean = clean_predictions(model, dataset, graph, device, enough=enough)
    _, rows = eligible_images(usable(clean.positive), clean.consistent, members, limit)
    chosen = rows[0]
    return [int(clean.indices[r]) for r in chosen], (clean.logits[chosen] if len(chosen) else None)
