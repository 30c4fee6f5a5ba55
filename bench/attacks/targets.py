"""Targets per (image, Ω) pair: Ψ = h(Ω, G) from the image's clean prediction, desired labels, masks.

For a pair, the clean prediction is ``logit > 0``. Turning Ω **off** (the paper's setting),
Ψ = ``turn_off_closure`` (Ω, its positive descendants, and each positive node left without a
positive child); every label of Ω must be predicted positive. Turning Ω **on**
(``turn_on=True``), Ψ = ``turn_on_closure`` and every label of Ω must be predicted negative.
Desired labels = the clean prediction flipped on the attack's target set (Ψ for the semantic
attacks, Ω for the others) and unchanged elsewhere; the non-target mask is every other output.

Label spaces: masks live in the model's output space. By default output i is graph node i.
A model with more outputs than graph nodes (Open Images: 9605 outputs, 601 nodes) passes
``output_index`` (node → output); Ψ is computed on the graph's nodes and every output outside
Ψ is a non-target.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from bench.errors import BenchError
from kg.closure import GraphTensors, turn_off_closure, turn_on_closure
from kg.closure_official import check_closure, official_closure
from kg.graph import LabelGraph


@dataclass(frozen=True)
class PairTargets:
    """Ω and Ψ of each pair, in the model's output space.

    Attributes:
        clean: ``[P, n_out]`` bool, the clean prediction.
        omega: ``[P, n_out]`` bool, the selected targets Ω.
        psi: ``[P, n_out]`` bool, the consistent target set Ψ = h(Ω, G) (⊇ Ω).
        output_index: ``[n]`` long, the output of each graph node.
        turn_on: whether the targets are switched on (off otherwise).
    """

    clean: Tensor
    omega: Tensor
    psi: Tensor
    output_index: Tensor
    turn_on: bool = False

    def __len__(self) -> int:
        return int(self.clean.shape[0])

    @property
    def nontarget(self) -> Tensor:
        """Ψ̄: the outputs outside Ψ (the labels NT_R watches, for every attack)."""
        return ~self.psi

    def attack_inputs(self, semantic: bool) -> tuple[Tensor, Tensor, Tensor]:
        """``(desired, target_mask, nontarget_mask)`` for an attack on Ψ (semantic) or on Ω."""
        mask = self.psi if semantic else self.omega
        return self.clean ^ mask, mask, ~mask

    def graph_view(self, t: Tensor) -> Tensor:
        """The graph nodes' columns of an output-space ``[P, n_out]`` tensor (``[P, n]``)."""
        return t[:, self.output_index.to(t.device)]

    def select(self, index: Tensor | slice) -> PairTargets:
        return PairTargets(self.clean[index], self.omega[index], self.psi[index], self.output_index, self.turn_on)


def omega_masks(graph: LabelGraph, target_sets: Sequence[Sequence[str | int]]) -> Tensor:
    """``[P, n]`` bool masks over the graph's nodes, one row per target set (names or indices;
    lists, or a ``[P, k]`` tensor or array of indices)."""
    if hasattr(target_sets, "tolist"):
        target_sets = target_sets.tolist()
    out = torch.zeros(len(target_sets), graph.n, dtype=torch.bool)
    for row, targets in enumerate(target_sets):
        if isinstance(targets, (str, int)):
            raise BenchError(f"target set {row} must be a list of labels, got {targets!r}")
        if len(targets) == 0:
            raise BenchError(f"target set {row} is empty")
        out[row, graph.indices(targets)] = True
    return out


def pair_targets(
    clean_logits: Tensor,
    omega: Tensor,
    g: GraphTensors,
    output_index: Tensor | Sequence[int] | None = None,
    turn_on: bool = False,
    descendants: Tensor | None = None,
    closure: str = "bench",
) -> PairTargets:
    """Ψ, desired labels and masks for pairs (image, Ω).

    Args:
        clean_logits: ``[P, n_out]`` the model's logits on each pair's clean image (or its
            boolean prediction ``logits > 0``).
        omega: ``[P, n]`` bool over the graph's nodes (``omega_masks``).
        g: the graph's tensors (``kg.closure.GraphTensors``).
        output_index: ``[n]`` output of each graph node; identity (n_out = n) when omitted.
        turn_on: switch the targets on instead of off.
        descendants: ``[P, n]`` bool mask of each Ω's proper descendants as a graph store
            returns them (turn-off only); computed from ``g`` when omitted.
        closure: ``bench`` (``kg.closure``, this benchmark's definition) or ``official`` (the
            official code's rules, ``kg.closure_official``; docs/knowledge-graphs.md).
    """
    check_closure(closure)
    if clean_logits.dim() != 2:
        raise BenchError(f"clean logits must be [pairs, outputs]; got shape {tuple(clean_logits.shape)}")
    p, n_out = clean_logits.shape
    if p == 0:
        raise BenchError("empty batch: there are no (image, target set) pairs")
    if omega.dim() != 2 or omega.shape != (p, g.n):
        raise BenchError(f"target masks of shape {tuple(omega.shape)} do not fit {p} pairs over a graph of {g.n} nodes")
    if clean_logits.dtype == torch.bool:
        clean = clean_logits
    elif not bool(torch.isfinite(clean_logits).all()):
        raise BenchError("the clean logits contain NaN or infinite values")
    else:
        clean = clean_logits > 0
    index = _output_index(output_index, g, n_out).to(clean.device)
    omega = omega.to(clean.device).bool()
    graph_pred = clean[:, index].to(g.device)
    _check_targets(graph_pred, omega.to(g.device), g.graph, turn_on)
    if closure == "official":
        psi_graph = official_closure(graph_pred, omega.to(g.device), g.graph, turn_on)
    elif turn_on:
        psi_graph = turn_on_closure(graph_pred, omega.to(g.device), g)
    else:
        psi_graph = turn_off_closure(
            graph_pred, omega.to(g.device), g, None if descendants is None else descendants.to(g.device)
        )
    psi_graph = psi_graph.to(clean.device)
    psi = torch.zeros_like(clean)
    psi[:, index] = psi_graph
    omega_out = torch.zeros_like(clean)
    omega_out[:, index] = omega
    return PairTargets(clean, omega_out, psi, index.cpu(), turn_on)


def _output_index(output_index, g: GraphTensors, n_out: int) -> Tensor:
    if output_index is None:
        if n_out != g.n:
            raise BenchError(
                f"the model has {n_out} outputs but graph {g.graph.name!r} has {g.n} nodes; pass the node → output map"
            )
        return torch.arange(g.n)
    index = torch.as_tensor(output_index, dtype=torch.long).flatten()
    if index.numel() != g.n:
        raise BenchError(f"the node → output map has {index.numel()} entries for {g.n} graph nodes")
    bad = (index < 0) | (index >= n_out)
    if bool(bad.any()):
        node = g.graph.nodes[int(bad.nonzero()[0])]
        raise BenchError(f"label {node!r} maps to output {int(index[bad][0])}, but the model has {n_out} outputs")
    if index.unique().numel() != index.numel():
        raise BenchError("the node → output map sends two graph nodes to the same output")
    return index


def _check_targets(pred: Tensor, omega: Tensor, graph: LabelGraph, turn_on: bool) -> None:
    empty = ~omega.any(dim=1)
    if bool(empty.any()):
        raise BenchError(f"target set {int(empty.nonzero()[0])} is empty")
    wrong = omega & (pred if turn_on else ~pred)
    if bool(wrong.any()):
        row, node = (int(v) for v in wrong.nonzero()[0])
        state, need = ("positive", "negative") if turn_on else ("negative", "positive")
        raise BenchError(
            f"pair {row}: target {graph.nodes[node]!r} is already predicted {state}; "
            f"turning targets {'on' if turn_on else 'off'} needs them {need}"
        )
