"""Square (black-box, ℓ∞) through the engine against a plain loop for one pair written here from
AutoAttack's ``square.py`` and the seeding rule of ``bench/attacks/square.py``'s docstring; its
results whatever the batch; its budget, ball and early stop; and what it achieves on toy models."""

from __future__ import annotations

import hashlib
import math
import struct
from functools import partial

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bench import attacks
from bench.attacks.engine import Task, run_tasks
from bench.attacks.ops import frozen
from bench.attacks.square import p_selection, pair_seed, window_side
from bench.errors import BenchError
from bench.names import ATTACK_NAMES
from tests.attacks_fixtures import LinearNet, TinyNet, flip_targets

# compares results bit for bit or near a decision boundary: ./setup.sh test reruns it under emulated CPUs

SHAPE = (3, 8, 8)
LABELS = 6


# ------------------------------------------------------------ reference loop
def ref_seed(image, desired, tmask, ntmask, eps: float, seed: int) -> int:
    """SHA-256 of (C, H, W, L), the image as float64, the three masks as bytes, ε and the seed."""
    h = hashlib.sha256()
    h.update(struct.pack("<qqqq", *image.shape, desired.numel()))
    h.update(b"".join(struct.pack("<d", v) for v in image.flatten().tolist()))
    for mask in (desired, tmask, ntmask):
        h.update(bytes(int(v) for v in mask.tolist()))
    h.update(struct.pack("<d", eps))
    h.update(str(seed).encode())
    return int.from_bytes(h.digest()[:8], "little")


def ref_p(it: int, p_init: float) -> float:
    """AutoAttack's ``p_selection`` (resc_schedule: ``it`` already rescaled to 10000)."""
    if 10 < it <= 50:
        return p_init / 2
    if 50 < it <= 200:
        return p_init / 4
    if 200 < it <= 500:
        return p_init / 8
    if 500 < it <= 1000:
        return p_init / 16
    if 1000 < it <= 2000:
        return p_init / 32
    if 2000 < it <= 4000:
        return p_init / 64
    if 4000 < it <= 6000:
        return p_init / 128
    if 6000 < it <= 8000:
        return p_init / 256
    if 8000 < it:
        return p_init / 512
    return p_init


def ref_square(model, x, desired, tmask, ntmask, eps, steps, p_init=0.8, seed=0, hold_nontargets=False):
    """Square for one pair: (adv, success, iteration, queries, logits on adv)."""
    c, h, w = x.shape
    weights = tmask.double() + (ntmask.double() if hold_nontargets else 0.0)

    def query(image):
        with torch.no_grad():
            z = model(image[None])[0]
        loss = float((F.binary_cross_entropy_with_logits(z, desired.double(), reduction="none") * weights).sum())
        success = all(bool(z[l] > 0) == bool(desired[l]) for l in range(z.numel()) if tmask[l])
        return z, loss, success

    z_clean, _, ok = query(x)
    if ok:
        return x, True, 0, 0, z_clean
    gen = torch.Generator().manual_seed(ref_seed(x, desired, tmask, ntmask, eps, seed))
    stripes = (2 * torch.randint(0, 2, (c, 1, w), generator=gen) - 1).double()
    x_best = torch.clamp(x + eps * stripes, 0.0, 1.0)
    z, loss_best, ok = query(x_best)
    queries = 1
    if ok:
        return x_best, True, 1, queries, z
    for k in range(2, steps + 1):
        p = ref_p(int((k - 2) / steps * 10000), p_init)
        s = min(max(int(round(math.sqrt(p * h * w))), 1), h, w)
        vh = int(torch.randint(0, h - s + 1, (1,), generator=gen))
        vw = int(torch.randint(0, w - s + 1, (1,), generator=gen))
        sign = (2 * torch.randint(0, 2, (c,), generator=gen) - 1).double()
        x_new = x_best.clone()
        for ch in range(c):
            x_new[ch, vh : vh + s, vw : vw + s] = torch.clamp(x[ch, vh : vh + s, vw : vw + s] + eps * sign[ch], 0, 1)
        z, loss, ok = query(x_new)
        queries += 1
        if ok:
            return x_new, True, k, queries, z
        if loss < loss_best:
            x_best, loss_best = x_new, loss
    return x, False, -1, queries, z_clean


def tiny_scenario(seed: int, n: int = 10, k: int = 2):
    model = TinyNet(shape=SHAPE, labels=LABELS, seed=seed)
    x = torch.rand(n, *SHAPE, generator=torch.Generator().manual_seed(seed + 10), dtype=torch.float64)
    with torch.no_grad():
        logits = model(x)
    return (model, x, *flip_targets(logits, k, seed))


def fields(result, p: int):
    return result.adv[p], result.success[p], result.iterations[p]


def same(a, b) -> bool:
    return all(torch.equal(u, v) for u, v in zip(a, b))


# --------------------------------------------------------------------- tests
def test_window_schedule_and_seed_rule():
    assert [p_selection(it, 0.8) for it in (0, 10, 11, 50, 51, 200, 201, 8000, 8001, 10000)] == [
        ref_p(it, 0.8) for it in (0, 10, 11, 50, 51, 200, 201, 8000, 8001, 10000)
    ], "AutoAttack's p schedule"
    assert [p_selection(it, 0.8) for it in (10, 11, 51, 8001)] == [0.8, 0.4, 0.2, 0.8 / 512]
    # 3×32×32 with 10000 queries: s = round(√(p·1024)), iteration k = 2 is rescaled iteration 0
    sides = [window_side(k, 10000, 0.8, 32, 32) for k in (2, 12, 13, 53, 10001)]
    assert sides == [29, 29, 20, 14, 1], "window sides"
    assert window_side(2, 100, 0.8, 4, 40) == 4, "a window never exceeds the image's shorter side"
    model, x, desired, tmask, ntmask = tiny_scenario(0, n=3)
    for p in range(3):
        for eps, seed in ((0.05, 0), (0.05, 7), (0.1, 0)):
            assert pair_seed(x[p], desired[p], tmask[p], ntmask[p], eps, seed) == ref_seed(
                x[p], desired[p], tmask[p], ntmask[p], eps, seed
            ), f"pair {p}: the documented seed"
    assert len({pair_seed(x[p], desired[p], tmask[p], ntmask[p], 0.05, 0) for p in range(3)}) == 3


@pytest.mark.bitwise  # bits compared: ./setup.sh test reruns these under emulated CPUs
@pytest.mark.parametrize("name,seed", [("square", 0), ("square", 1), ("square-g", 2)])
def test_engine_equals_the_per_pair_reference(name, seed):
    model, x, desired, tmask, ntmask = tiny_scenario(seed)
    attack = attacks.create_attack(name, eps=0.05, steps=150, seed=seed)
    # The engine at B = 4 (slots refilled) against the loop, one image at a time: the model is
    # float64, so B moves a logit by ulps and no loss comparison of these pairs is that close to a tie.
    result = attack(model, x, desired, tmask, ntmask, batch_size=4)
    for p in range(x.shape[0]):
        adv, ok, it, queries, z = ref_square(
            model, x[p], desired[p], tmask[p], ntmask[p], 0.05, 150, seed=seed, hold_nontargets=name == "square-g"
        )
        assert (bool(result.success[p]), int(result.iterations[p])) == (ok, it), f"{name} pair {p}: outcome"
        assert torch.equal(result.adv[p], adv), f"{name} pair {p}: adversarial image differs from the loop"
        assert torch.allclose(result.logits[p], z, rtol=0, atol=1e-12), f"{name} pair {p}: logits on adv"
        assert queries == (it if ok else 150), f"{name} pair {p}: queries of the loop"
    its = result.iterations
    assert bool((its == -1).any()) and bool((its > 20).any()), f"failures and late successes: {its.tolist()}"


@pytest.mark.bitwise
def test_results_do_not_depend_on_batch_order_or_batch_mates():
    model, x, desired, tmask, ntmask = tiny_scenario(0, n=9)
    attack = attacks.create_attack("square", eps=0.05, steps=120)
    base = attack(model, x, desired, tmask, ntmask, batch_size=4)
    assert bool(base.success.any()) and not bool(base.success.all()), "successes and failures"
    for b in (1, 3, 9):
        other = attack(model, x, desired, tmask, ntmask, batch_size=b)
        for p in range(9):
            assert same(fields(other, p), fields(base, p)), f"pair {p}: B = {b} changes it"
    perm = torch.randperm(9, generator=torch.Generator().manual_seed(4))
    shuffled = attack(model, x[perm], desired[perm], tmask[perm], ntmask[perm], batch_size=4)
    for q, p in enumerate(perm.tolist()):
        assert same(fields(shuffled, q), fields(base, p)), f"pair {p}: another arrival order changes it"
        assert torch.equal(shuffled.logits[q], base.logits[p]), f"pair {p}: logits at the same B"
    for p in (0, 5):
        alone = attack(model, x[p : p + 1], desired[p : p + 1], tmask[p : p + 1], ntmask[p : p + 1], batch_size=4)
        assert same(fields(alone, 0), fields(base, p)) and torch.equal(alone.logits[0], base.logits[p]), (
            f"pair {p}: alone in a padded batch"
        )
    # batch-mates of another setting (Square-G at another ε) in the same slots
    mates = [attack, attacks.create_attack("square-g", eps=0.08, steps=60)]
    tasks = [Task((s, p), s, x[p], desired[p], tmask[p], ntmask[p]) for s in (0, 1) for p in range(9)]
    tasks = [tasks[i] for i in torch.randperm(18, generator=torch.Generator().manual_seed(1)).tolist()]
    with frozen(model):
        out = {o.key: o for done in run_tasks(mates, model, tasks, 4, n_out=LABELS, max_targets=2) for o in done}
    for p in range(9):
        o = out[(0, p)]
        got = (o.adv, torch.tensor(o.success), torch.tensor(o.iterations))
        assert same(got, fields(base, p)) and torch.equal(o.logits, base.logits[p]), f"pair {p}: mixed batch"
    g = mates[1](model, x, desired, tmask, ntmask, batch_size=4)
    for p in range(9):
        o = out[(1, p)]
        assert same((o.adv, torch.tensor(o.success), torch.tensor(o.iterations)), fields(g, p)), f"Square-G pair {p}"


class Counter(nn.Module):
    """Counts the images it sees that differ from ``clean`` (the queries of one pair)."""

    def __init__(self, model: nn.Module, clean: torch.Tensor) -> None:
        super().__init__()
        self.model, self.clean, self.queries = model, clean, 0

    def forward(self, x):
        self.queries += sum(not torch.equal(row, self.clean) for row in x)
        return self.model(x)


def test_budget_ball_and_early_stop():
    model, x, desired, tmask, ntmask = tiny_scenario(3, n=8)
    x[0], x[1] = 0.0, 1.0  # pixels at the box's edges
    desired[2] = (model(x[2:3])[0] > 0).detach()  # the clean prediction already succeeds
    with torch.no_grad():
        clean_logits = model(x)
    steps, eps = 40, 0.07
    attack = attacks.create_attack("square-g", eps=eps, steps=steps)
    result = attack(model, x, desired, tmask, ntmask, batch_size=3)
    assert float((result.adv - x).abs().max()) <= eps + 1e-12, "‖x′ − x‖∞ ≤ ε"
    assert float(result.adv.min()) >= 0.0 and float(result.adv.max()) <= 1.0, "x′ ∈ [0, 1]"
    assert bool(result.success[2]) and int(result.iterations[2]) == 0, "clean success: iteration 0"
    # the logits come from the engine's own forward (its batch, not this one): equal to rounding
    # on every CPU path (MKL's compatible branch sums a float64 batch of 3 in another order)
    same_logits = partial(torch.allclose, rtol=0, atol=1e-12)
    assert torch.equal(result.adv[2], x[2]) and same_logits(result.logits[2], clean_logits[2]), "clean image back"
    assert torch.equal(result.adv[~result.success], x[~result.success]), "failed pairs come back unperturbed"
    assert same_logits(result.logits[~result.success], clean_logits[~result.success]), "with their clean logits"
    assert bool((~result.success).any()) and bool((result.iterations > 0).any()), "failures and successes"
    with torch.no_grad():
        pred = model(result.adv) > 0
    assert bool((((pred == desired) | ~tmask).all(1) == result.success).all()), "success = every target as desired"
    with frozen(model):
        tasks = [Task(p, 0, x[p], desired[p], tmask[p], ntmask[p]) for p in range(8)]
        outcomes = [o for done in run_tasks([attack], model, tasks, 3, n_out=LABELS, max_targets=2) for o in done]
    for o in outcomes:
        assert o.ticks - 1 == (o.iterations if o.success else steps) <= steps, f"pair {o.key}: queries ≤ budget"
    for p in range(8):  # the queries the model sees, one pair at a time
        counter = Counter(model, x[p])
        one = attack(counter, x[p : p + 1], desired[p : p + 1], tmask[p : p + 1], ntmask[p : p + 1])
        expected = int(one.iterations[0]) if bool(one.success[0]) else steps
        assert counter.queries == expected <= steps, f"pair {p}: {counter.queries} queries"


def test_square_reaches_the_targets_of_a_toy_model():
    """One target per pair at ε = 0.1: the search flips nearly all of them within 300 queries,
    where its own random start (the stripes, budget 1) flips few."""
    model, x, desired, tmask, ntmask = tiny_scenario(5, n=16, k=1)
    full = attacks.create_attack("square", eps=0.1, steps=300)(model, x, desired, tmask, ntmask, batch_size=8)
    start = attacks.create_attack("square", eps=0.1, steps=1)(model, x, desired, tmask, ntmask, batch_size=8)
    assert float(full.success.double().mean()) >= 0.9, f"Square's success rate: {full.success.tolist()}"
    assert float(start.success.double().mean()) <= 0.4, f"the random start alone: {start.success.tolist()}"


def correlated_scenario(seed: int, n: int = 24):
    """A linear model whose labels share one direction: moving the target drags the others along."""
    g = torch.Generator().manual_seed(seed)
    d = 3 * 6 * 6
    u = torch.randn(d, generator=g, dtype=torch.float64)
    weight = u[None] * torch.randn(8, 1, generator=g, dtype=torch.float64).sign()
    weight = weight + 0.5 * torch.randn(8, d, generator=g, dtype=torch.float64)
    x = torch.rand(n, 3, 6, 6, generator=g, dtype=torch.float64)
    model = LinearNet(weight, -(x.flatten(1) @ weight.T).mean(0))
    with torch.no_grad():
        logits = model(x)
    return (model, x, *flip_targets(logits, 1, seed))


def test_square_g_holds_the_nontargets_better():
    flips = {"square": [], "square-g": []}
    for seed in range(2):
        model, x, desired, tmask, ntmask = correlated_scenario(seed)
        results = {
            name: attacks.create_attack(name, eps=0.05, steps=300)(model, x, desired, tmask, ntmask, batch_size=8)
            for name in flips
        }
        both = results["square"].success & results["square-g"].success
        assert int(both.sum()) >= 5, f"seed {seed}: pairs both attacks flip"
        with torch.no_grad():
            clean = model(x) > 0
            for name, r in results.items():
                changed = ((model(r.adv) > 0) != clean) & ntmask
                flips[name] += (changed.sum(1).double() / ntmask.sum(1))[both].tolist()
    plain, held = (sum(v) / len(v) for v in flips.values())
    assert held < 0.5 * plain, f"non-targets flipped: Square {plain:.3f}, Square-G {held:.3f}"


def test_declaration_and_parameters():
    assert (ATTACK_NAMES["square"], ATTACK_NAMES["square-g"]) == ("Square", "Square-G")
    from bench.sweep.presets import FAST, SweepOptions

    default = SweepOptions().filled(FAST, "stamps").attacks
    assert default == ("mla-u", "mla-c", "mla-lp", "gmla-alpha", "gmla-beta", "gmla", "ml-dp"), "Square when named"
    for name, display, semantic in (("square", "Square", False), ("square-g", "Square-G", True)):
        attack = attacks.create_attack(name)
        assert (attack.display_name, attack.semantic, attack.bounded, attack.black_box) == (
            display,
            semantic,
            True,
            True,
        )
        assert attack.config() == {"attack": name, "eps": 0.01, "steps": 1000, "p_init": 0.8, "seed": 0}, name
    assert not any(attacks.create_attack(a).black_box for a in default), "the paper's attacks use gradients"
    with pytest.raises(BenchError, match=r"`p_init` .*: must be in \(0, 1\]"):
        attacks.create_attack("square", p_init=0.0)
    for bad in (1.5, True, "1"):
        with pytest.raises(BenchError, match="`seed` .*: must be an integer"):
            attacks.create_attack("square", seed=bad)
    with pytest.raises(BenchError, match="`steps` .*: must be a positive integer"):
        attacks.create_attack("square-g", steps=0)
    model, x, desired, tmask, ntmask = tiny_scenario(1, n=6)
    runs = [
        attacks.create_attack("square", eps=0.05, steps=60, seed=s)(model, x, desired, tmask, ntmask) for s in (0, 1)
    ]
    assert not torch.equal(runs[0].adv, runs[1].adv), "the attack's seed changes the draws"
