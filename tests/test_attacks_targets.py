"""Per-pair targets: Ψ from each image's clean prediction, desired labels, masks, the
node → output map, and bad inputs; expected values worked out by hand."""

from __future__ import annotations

import pytest
import torch

from bench.attacks.targets import omega_masks, pair_targets
from bench.errors import BenchError
from kg.closure import GraphTensors
from kg.graph import LabelGraph

# cat, dog, car are labels; animal → {cat, dog}, vehicle → {car}
GRAPH = LabelGraph("toy", ("cat", "dog", "car", "animal", "vehicle"), ((3, 0), (3, 1), (4, 2)), 3)
G = GraphTensors(GRAPH)


def logits(*rows: str) -> torch.Tensor:
    """Rows of '01' strings in node order → logits of ±1."""
    return torch.tensor([[1.0 if c == "1" else -1.0 for c in row] for row in rows])


def as_bool(*rows: str) -> torch.Tensor:
    return torch.tensor([[c == "1" for c in row] for row in rows])


def test_turn_off_closure_per_image_and_attack_inputs():
    clean = logits("10111", "11110")  # image 0: cat, car (+ parents); image 1: cat, dog
    t = pair_targets(clean, omega_masks(GRAPH, [["cat"], ["cat"]]), G)
    assert torch.equal(t.psi, as_bool("10010", "10000")), "animal joins Ψ only where cat was its last positive child"
    desired, tmask, ntmask = t.attack_inputs(semantic=True)
    assert torch.equal(tmask, t.psi) and torch.equal(ntmask, ~t.psi), "semantic attacks mask Ψ"
    assert torch.equal(desired, as_bool("00101", "01110")), "flipped on Ψ, clean elsewhere"
    desired, tmask, _ = t.attack_inputs(semantic=False)
    assert torch.equal(tmask, as_bool("10000", "10000")), "MLA-U/MLA-C mask Ω"
    assert torch.equal(desired, as_bool("00111", "01110")), "flipped on Ω only"
    assert torch.equal(t.nontarget, ~t.psi), "NT_R watches Ψ̄ for every attack"


def test_same_image_with_several_target_sets():
    clean = logits("10111", "10111", "10111")
    t = pair_targets(clean, omega_masks(GRAPH, [["cat"], ["car"], ["cat", "car"]]), G)
    assert torch.equal(t.psi, as_bool("10010", "00101", "10111")), "each pair has its own Ψ"
    assert torch.equal(t.omega, as_bool("10000", "00100", "10100")), "each pair has its own Ω"


def test_turn_on():
    clean = logits("10010", "10010")  # cat + animal positive
    t = pair_targets(clean, omega_masks(GRAPH, [["dog"], ["car"]]), G, turn_on=True)
    assert torch.equal(t.psi, as_bool("01000", "00101")), "dog needs nothing; car needs vehicle"
    desired, _, _ = t.attack_inputs(semantic=True)
    assert torch.equal(desired, as_bool("11010", "10111")), "targets switched on"


def test_node_to_output_map():
    # 7 outputs; graph nodes cat, dog, car, animal, vehicle at outputs 5, 0, 2, 6, 3; outputs 1, 4 unmapped.
    index = [5, 0, 2, 6, 3]
    clean = torch.full((1, 7), -1.0)
    clean[0, [5, 2, 6, 3, 1]] = 1.0  # cat, car, animal, vehicle, and unmapped output 1
    t = pair_targets(clean, omega_masks(GRAPH, [["cat"]]), G, output_index=index)
    expected_psi = torch.zeros(1, 7, dtype=torch.bool)
    expected_psi[0, [5, 6]] = True  # cat, animal
    assert torch.equal(t.psi, expected_psi), "Ψ lands on the mapped outputs"
    assert bool(t.nontarget[0, 1]) and bool(t.nontarget[0, 4]), "unmapped outputs are non-targets"
    assert torch.equal(t.graph_view(t.psi), as_bool("10010")), "graph view reads the mapped columns back"
    desired, _, _ = t.attack_inputs(semantic=True)
    assert bool(desired[0, 1]) and not bool(desired[0, 5]), "unmapped outputs keep their prediction"


def test_bad_inputs():
    clean = logits("10111")
    with pytest.raises(BenchError, match="target 'dog' is already predicted negative"):
        pair_targets(clean, omega_masks(GRAPH, [["dog"]]), G)
    with pytest.raises(BenchError, match="already predicted positive"):
        pair_targets(clean, omega_masks(GRAPH, [["cat"]]), G, turn_on=True)
    with pytest.raises(BenchError, match="unknown label in graph 'toy': 'catt'.*did you mean 'cat'"):
        omega_masks(GRAPH, [["catt"]])
    with pytest.raises(BenchError, match="target set 0 is empty"):
        omega_masks(GRAPH, [[]])
    with pytest.raises(BenchError, match="has 7 outputs but graph 'toy' has 5 nodes"):
        pair_targets(torch.ones(1, 7), omega_masks(GRAPH, [["cat"]]), G)
    with pytest.raises(BenchError, match="label 'vehicle' maps to output 9, but the model has 7 outputs"):
        pair_targets(torch.ones(1, 7), omega_masks(GRAPH, [["cat"]]), G, output_index=[5, 0, 2, 6, 9])
    with pytest.raises(BenchError, match="same output"):
        pair_targets(torch.ones(1, 7), omega_masks(GRAPH, [["cat"]]), G, output_index=[5, 0, 2, 6, 5])
    with pytest.raises(BenchError, match="empty batch"):
        pair_targets(torch.ones(0, 5), torch.zeros(0, 5, dtype=torch.bool), G)
    nan = clean.clone()
    nan[0, 2] = float("nan")
    with pytest.raises(BenchError, match="NaN"):
        pair_targets(nan, omega_masks(GRAPH, [["cat"]]), G)
