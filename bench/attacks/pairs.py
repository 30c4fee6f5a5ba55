"""Many (image, Ω) pairs through one attack: B, the engine's slots, from free GPU memory
(``pair_batch_size``), and ``attack_pairs`` (``bench attack``).

Pairs share images through ``image_index`` (the same image with several target sets is
stored once). A pair's result depends on B (the kernels' shapes), never on the other pairs,
so B is fixed for a whole run: running out of GPU memory is an error that names a smaller B
(``bench.attacks.engine.running``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.attacks.base import Attack, AttackResult
from bench.attacks.ops import frozen, model_device, model_dtype
from bench.attacks.targets import PairTargets
from bench.errors import BenchError, InvalidValue

CPU_BATCH = 32  # pairs per batch on the CPU, where memory is rarely the limit
MAX_BATCH = 1024
MEMORY_FRACTION = 0.5  # of the free GPU memory, leaving room for Jacobians and fragmentation


def pair_batch_size(model: nn.Module, image_shape: tuple[int, ...], override: int | None = None) -> int:
    """Pairs per batch: ``override`` when given, else what fits in free GPU memory, else ``CPU_BATCH``.

    On a GPU, one probe batch of two images runs a forward pass and two input-gradient
    backward passes (GMLA's cost); the peak memory per image sets the batch size.
    """
    if override is not None:
        if int(override) != override or override < 1:
            raise InvalidValue("batch_size", override, "must be a positive integer")
        return int(override)
    device = model_device(model)
    if device.type != "cuda":
        return CPU_BATCH
    torch.cuda.synchronize(device)
    free, _ = torch.cuda.mem_get_info(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    probe = torch.rand(2, *image_shape, device=device, dtype=model_dtype(model), requires_grad=True)
    with frozen(model), torch.enable_grad():
        logits = model(probe)
        loss = F.binary_cross_entropy_with_logits(logits, (logits > 0).to(logits.dtype))
        torch.autograd.grad(loss, probe, retain_graph=True)
        torch.autograd.grad(loss, probe)
    per_pair = max((torch.cuda.max_memory_allocated(device) - before) / 2, 1)
    del probe, logits, loss
    torch.cuda.empty_cache()
    return int(min(max(free * MEMORY_FRACTION // per_pair, 1), MAX_BATCH))


def attack_pairs(
    attack: Attack,
    model: nn.Module,
    images: Tensor,
    targets: PairTargets,
    image_index: Tensor | None = None,
    batch_size: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> AttackResult:
    """Run ``attack`` on every pair, B slots at a time; the result (on the CPU) is in pair order.

    Args:
        attack: a registered attack; its ``semantic`` flag picks Ψ or Ω as the target mask.
        model: the model under attack (on its device).
        images: ``[N, 3, H, W]`` in [0, 1], on any device.
        targets: the pairs' Ω and Ψ (``bench.attacks.targets.pair_targets``).
        image_index: ``[P]`` image of each pair; pair p uses image p when omitted.
        batch_size: B, the pairs per batch (default: ``pair_batch_size``).
        progress: called with the number of pairs finished after each iteration.
    """
    n_pairs = len(targets)
    if n_pairs == 0:
        raise BenchError("empty batch: there are no (image, target set) pairs to attack")
    if image_index is None:
        if images.shape[0] != n_pairs:
            raise BenchError(f"{images.shape[0]} images for {n_pairs} pairs; pass image_index (the image of each pair)")
        image_index = torch.arange(n_pairs)
    image_index = torch.as_tensor(image_index, dtype=torch.long, device=images.device)
    if image_index.numel() != n_pairs or bool(((image_index < 0) | (image_index >= images.shape[0])).any()):
        raise BenchError(f"image_index must give one image in 0..{images.shape[0] - 1} for each of {n_pairs} pairs")
    desired, tmask, ntmask = targets.attack_inputs(attack.semantic)
    size = pair_batch_size(model, tuple(images.shape[1:]), batch_size)
    return attack(model, images[image_index], desired, tmask, ntmask, batch_size=size, progress=progress).to("cpu")
