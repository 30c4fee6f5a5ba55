"""Training a registered model on a dataset's extended labels.

AdamW with a one-cycle learning-rate schedule, mixed precision on CUDA (float32 on CPU),
light batch augmentation, the model's own loss (ASL's asymmetric loss or BCE). Every
epoch ends with an atomic checkpoint (``train-state.pt``) so ``resume=True`` continues an
interrupted run; each epoch's shuffling, augmentation and dropout draw from generators
seeded by ``(seed, epoch)``, so a resumed run equals an uninterrupted one. At the end the
model is evaluated on the test split and saved with its card (``bench.models.trained``).

Adversarial training (``TrainConfig.adversarial``, docs/models.md "Adversarial training"): in
every step the first ⌈ratio·B⌉ rows of the (shuffled, augmented) batch are replaced by a
registered attack's output on the current model, frozen in evaluation mode, for random target
sets Ω among the labels it predicts on each image (turned off, Ψ = h(Ω, G) for the semantic
attacks); the step then trains on that batch with the true labels (``adversarial_batch``).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from bench.devices import resolve_device
from bench.errors import BenchError, InvalidValue, one_line, unknown
from bench.evaluate import EvalReport, evaluate
from bench.fileio import torch_save
from bench.models import check_model_options, create_model, model_spec
from bench.models.asl import AsymmetricLoss
from bench.models.card import ModelCard, now_iso
from bench.models.trained import TRAIN_STATE as STATE
from bench.models.trained import WEIGHTS, models_dir, save_trained
from bench.progress import progress_bar
from kg.closure import GraphTensors

if TYPE_CHECKING:  # the attacks load when a run is adversarial, not for every `bench train`
    from bench.attacks.base import Attack

STATE_FORMAT = "semattack-bench/train-state"


@dataclass(frozen=True)
class TrainConfig:
    """A training recipe. ``loss=None`` and ``image_size=None`` take the model's defaults."""

    model: str = "resnet18"
    dataset: str = "stamps"
    image_size: int | None = None
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    loss: str | None = None
    augment: bool = True
    seed: int = 0
    workers: int = 0
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    dataset_kwargs: Mapping[str, Any] = field(default_factory=dict)
    data_root: str | None = None
    preset: str = ""
    # adversarial training (``None``: standard training; the adv_* values then stay None)
    adversarial: str | None = None
    adv_eps: float | None = None
    adv_steps: int | None = None
    adv_ratio: float | None = None
    adv_targets: int | None = None
    # Gaussian noise of this standard deviation on every training image (MultiGuard-style
    # training for the ``smoothing`` defense); ``None``: none
    noise: float | None = None

    def __post_init__(self) -> None:
        if self.data_root is not None:  # a Path from the command line: the card and checkpoint hold text
            object.__setattr__(self, "data_root", str(Path(self.data_root).expanduser()))

    def resolved(self) -> TrainConfig:
        """Fill the model's defaults and check the values (before any data loads)."""
        from bench.datasets import DATASETS

        spec = model_spec(self.model)
        check_model_options(spec.name, self.model_kwargs)
        DATASETS.get(self.dataset)
        loss = self.loss or spec.loss
        if loss not in LOSSES:
            raise unknown("loss", loss, LOSSES)
        cfg = replace(self, model=spec.name, loss=loss, image_size=self.image_size or spec.image_size)
        for name in ("epochs", "batch_size", "image_size"):
            if int(getattr(cfg, name)) < 1:
                raise InvalidValue(name, getattr(cfg, name), "must be at least 1")
        if cfg.lr <= 0:
            raise InvalidValue("lr", cfg.lr, "the learning rate must be positive")
        if cfg.noise is not None and not 0.0 < cfg.noise <= 1.0:
            raise InvalidValue("noise", cfg.noise, "the noise's standard deviation must be in (0, 1]")
        return cfg._resolved_adversarial()

    def _resolved_adversarial(self) -> TrainConfig:
        """The adversarial recipe checked, its defaults filled (``ADV_DEFAULTS``), the attack's name canonical."""
        given = [name for name in ADV_DEFAULTS if getattr(self, name) is not None]
        if self.adversarial is None:
            if given:
                raise BenchError(
                    f"{{{given[0]}}} is an adversarial-training setting: it needs an attack ({{adversarial}} NAME)",
                    options=[given[0], "adversarial"],
                )
            return self
        cfg = replace(self, **{k: v for k, v in ADV_DEFAULTS.items() if getattr(self, k) is None})
        eps, steps, ratio, k = cfg.adv_eps, cfg.adv_steps, cfg.adv_ratio, cfg.adv_targets
        if eps is None or steps is None or ratio is None or k is None:  # filled just above
            raise BenchError("the adversarial recipe is incomplete")
        if not 0.0 < float(eps) <= 1.0:
            raise InvalidValue("adv_eps", eps, "must be in (0, 1] for images in [0, 1]")
        if int(steps) != steps or steps < 1:
            raise InvalidValue("adv_steps", steps, "must be a positive integer")
        if not 0.0 < float(ratio) <= 1.0:
            raise InvalidValue("adv_ratio", ratio, "the share of each batch replaced must be in (0, 1]")
        if int(k) != k or k < 1:
            raise InvalidValue("adv_targets", k, "the largest target set |Ω| must be a positive integer")
        attack = training_attack(str(cfg.adversarial), float(eps), int(steps))
        values: dict[str, Any] = {"adv_eps": float(eps), "adv_steps": int(steps), "adv_ratio": float(ratio)}
        return replace(cfg, adversarial=attack.name, adv_targets=int(k), **values)

    def to_dict(self) -> dict[str, Any]:
        """The recipe as plain values; a standard run's leaves out the (unset) adversarial and
        noise keys, so its recipe reads as before they existed (``bench demo`` matches it)."""
        out = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in asdict(self).items()}
        if self.adversarial is None:
            for key in ("adversarial", *ADV_DEFAULTS):
                out.pop(key)
        if self.noise is None:
            out.pop("noise")
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


# Named recipes. ``demo``: the offline stamps dataset at 64 px on ResNet-10-T (30k training
# images seen; a 2-core CPU does it in under 3 minutes). Tuned on stamps (seed 0, one thread):
# test mAP 0.965, 77 % of the test predictions globally consistent, and on the demo sweep the
# paper's qualitative result at every |Ω| (GMLA the lowest NT_R of the Auto-PGD attacks, its
# FR_S above MLA-U's and ≥ 0.9 of its FR_N). The ResNet-18 of before (8 epochs, 48k images)
# gave 0.933 / 69 % and missed GMLA's FR_S bound at |Ω| = 2 and 3; ResNet-10-T for 4 epochs
# 0.935 / 68 % (MLA-C's NT_R below GMLA's at |Ω| = 1), for 3 epochs 0.873 / 50 %; ResNet-18
# at 48 px, 6 epochs 0.777 / 40 %; MobileNetV3-small 0.481. The ASL loss gave a higher mAP
# (ResNet-18, 6 epochs: 0.892 vs 0.860) but only 36 % consistent predictions (its
# down-weighted negatives leave more false positives at logit 0), so the demo trains with BCE.
PRESETS: dict[str, dict[str, Any]] = {
    "demo": {
        "model": "resnet10t",
        "dataset": "stamps",
        "image_size": 64,
        "epochs": 5,
        "batch_size": 32,
        "lr": 3e-3,
        "weight_decay": 5e-4,
        "loss": "bce",
        "augment": True,
    },
}


# Adversarial training's defaults (docs/models.md, "Adversarial training"). ε 0.01: the paper's
# protocol ε (the ``paper`` sweep preset, every attack's default), the middle of its 0.005–0.05
# grid; a model is trained at the ε it is to resist, as Madry et al. do. 5 steps: Auto-PGD's first
# step is 2η = 0.012 ≥ ε, so one step reaches the ball's surface and 5 leave room for the
# step-size control, at ~5-7× the cost of a standard step (measured on the demo model; Madry
# et al.: 7 steps on CIFAR-10). Ratio 1: every row adversarial, as Madry et al. and ART's
# AdversarialTrainerMadryPGD. |Ω| ≤ 3: the sizes of the paper's tables.
ADV_DEFAULTS: dict[str, Any] = {"adv_eps": 0.01, "adv_steps": 5, "adv_ratio": 1.0, "adv_targets": 3}


def training_attack(name: str, eps: float, steps: int) -> Attack:
    """The attack adversarial training runs: a registered one, bounded by ε (ML-DP and MLA-LP
    without projection are not, so their examples would not be ε-close to the clean images)."""
    from bench.attacks import ATTACKS, create_attack

    attack = create_attack(name, eps=eps, steps=steps)
    if not attack.bounded:
        bounded = [n for n in ATTACKS.names(loaded_only=True) if _bounded(n)]
        raise BenchError(
            f"attack {attack.name!r} is not bounded by ε, so it cannot make ε-close training examples; "
            f"pick one of {', '.join(bounded)}"
        )
    return attack


def _bounded(name: str) -> bool:
    from bench.attacks import create_attack

    try:
        return create_attack(name).bounded
    except (BenchError, TypeError):  # a plugin's attack that needs arguments: not listed
        return False


def adversarial_label(recipe: Mapping[str, Any]) -> str:
    """How a card's recipe was trained, in a few words: ``standard`` or ``adv. mla-u ε 0.01, 5 steps``
    (``, ratio 0.5`` when not every row is adversarial)."""
    if not recipe.get("adversarial"):
        return "standard"
    ratio = recipe.get("adv_ratio", 1.0)
    mixed = f", ratio {ratio:g}" if ratio != 1.0 else ""
    return f"adv. {recipe['adversarial']} ε {recipe.get('adv_eps', 0):g}, {recipe.get('adv_steps')} steps{mixed}"


def adversarial_rows(ratio: float, batch: int) -> int:
    """Rows of a batch of ``batch`` that adversarial training replaces: ⌈ratio·batch⌉, as ART's
    ``AdversarialTrainer`` (rounded first, so that 0.3 × 10 is 3, not 4)."""
    return min(batch, max(1, math.ceil(round(ratio * batch, 9))))


def step_rng(seed: int, epoch: int, step: int) -> np.random.Generator:
    """The target sets' generator of one training step, seeded by ``(seed, epoch, step)`` (resume-safe)."""
    return np.random.default_rng([seed, epoch, step])


def draw_target_sets(positive: Tensor, n_nodes: int, max_size: int, rng: np.random.Generator) -> Tensor:
    """``[R, n_nodes]`` bool Ω per row: a size uniform in 1..min(max_size, its positives), then
    that many of the row's positive labels (``positive``: ``[R, n_labels]`` bool) uniformly;
    an empty row where the model predicts no label positive."""
    omega = torch.zeros(positive.shape[0], n_nodes, dtype=torch.bool)
    for row, on in enumerate(positive.cpu().numpy()):
        labels = np.flatnonzero(on)
        if len(labels) == 0:
            continue
        size = int(rng.integers(1, min(max_size, len(labels)) + 1))
        omega[row, torch.from_numpy(rng.choice(labels, size=size, replace=False))] = True
    return omega


@dataclass
class AdversarialStep:
    """One step's adversarial batch: the images to train on, the rows designated (the first
    ``designated``), the rows the attack ran on (``rows``: the designated ones with a positive
    label; the others keep their clean image) and how many it flipped (a failed pair comes back
    unperturbed, as every attack returns it)."""

    images: Tensor
    designated: int
    rows: Tensor
    succeeded: int

    @property
    def attacked(self) -> int:
        return len(self.rows)


def adversarial_batch(
    model: nn.Module,
    attack: Attack,
    images: Tensor,
    g: GraphTensors,
    n_labels: int,
    ratio: float,
    max_targets: int,
    rng: np.random.Generator,
) -> AdversarialStep:
    """Replace the first ⌈ratio·B⌉ rows of ``images`` by ``attack``'s output on the current ``model``.

    The model is frozen in evaluation mode (for the clean prediction and the attack) and left in
    the mode it was in. Per designated row, Ω is drawn among the labels (the first ``n_labels``
    outputs) predicted positive on the clean image (``draw_target_sets``) and turned off: the
    attack's target mask is Ψ = h(Ω, G) from that prediction when it is semantic, Ω otherwise
    (``PairTargets.attack_inputs``). The attack runs all designated rows in one engine batch of
    B = ⌈ratio·B⌉ slots (a fixed B, so each row's result depends on its own inputs alone).
    """
    from bench.attacks.ops import forward, frozen
    from bench.attacks.targets import pair_targets

    k = adversarial_rows(ratio, images.shape[0])
    rows = images[:k].clamp(0.0, 1.0)  # bilinear augmentation may round a hair outside [0, 1]
    with torch.no_grad(), frozen(model):
        clean = forward(model, rows)
    omega = draw_target_sets(clean[:, :n_labels] > 0, g.n, max_targets, rng)
    chosen = omega.any(dim=1).nonzero().flatten()
    if len(chosen) == 0:
        return AdversarialStep(images, k, chosen, 0)
    targets = pair_targets(clean[chosen.to(clean.device)], omega[chosen], g)
    desired, tmask, ntmask = targets.attack_inputs(attack.semantic)
    where = chosen.to(images.device)
    result = attack(model, rows[where], desired, tmask, ntmask, batch_size=k)
    out = images.clone()
    out[where] = result.adv.to(out.dtype)
    return AdversarialStep(out, k, chosen, int(result.success.sum()))


def preset_config(name: str, **overrides: Any) -> TrainConfig:
    """A preset's recipe with ``overrides`` (``None`` values are ignored)."""
    if name not in PRESETS:
        raise unknown("training preset", name, PRESETS)
    values = {**PRESETS[name], **{k: v for k, v in overrides.items() if v is not None}, "preset": name}
    return TrainConfig(**values)


def _bce(logits: Tensor, targets: Tensor) -> Tensor:
    return F.binary_cross_entropy_with_logits(logits.float(), targets.float())


LOSSES: dict[str, Callable[[], Callable[[Tensor, Tensor], Tensor]]] = {
    "asl": lambda: AsymmetricLoss(reduction="mean"),
    "bce": lambda: _bce,
}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def augment(images: Tensor, generator: torch.Generator) -> Tensor:
    """Per image: horizontal flip (p = 0.5), zoom 0.85-1.15 and shift up to 10 % (reflected borders)."""
    b = images.shape[0]
    u = torch.rand(b, 4, generator=generator)
    flip = torch.where(u[:, 0] < 0.5, -1.0, 1.0)
    scale = 1.0 / (0.85 + 0.3 * u[:, 1])
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = scale * flip
    theta[:, 1, 1] = scale
    theta[:, :, 2] = (u[:, 2:] - 0.5) * 0.2
    grid = F.affine_grid(theta.to(images), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


@dataclass
class TrainResult:
    run_dir: Path
    card: ModelCard
    report: EvalReport
    model: nn.Module


def run_dir_for(config: TrainConfig, name: str | None = None) -> Path:
    """``<data_dir>/models/<dataset>/<name>``; by default MODEL-TIME, MODEL-adv-ATTACK-TIME when adversarial."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    kind = f"-adv-{config.adversarial}" if config.adversarial else ""
    return models_dir(config.dataset) / (name or f"{config.model}{kind}-{stamp}")


def _datasets(cfg: TrainConfig):
    from bench.datasets import create_dataset

    kw = dict(cfg.dataset_kwargs)
    train = create_dataset(cfg.dataset, "train", root=cfg.data_root, image_size=cfg.image_size, **kw)
    test = create_dataset(cfg.dataset, "test", root=cfg.data_root, image_size=cfg.image_size, **kw)
    if len(train) < cfg.batch_size:
        raise BenchError(f"the training split has {len(train)} images, fewer than one batch of {cfg.batch_size}")
    return train, test


def train(
    config: TrainConfig | None = None,
    run_dir: str | Path | None = None,
    resume: bool = False,
    device: str | torch.device | None = None,
    progress: bool = True,
    datasets=None,
) -> TrainResult:
    """Train, checkpoint each epoch, evaluate on the test split, save model and card.

    The last epoch's checkpoint holds the trained weights before the evaluation starts, so a
    run whose evaluation stopped (a crash, a Ctrl-C) is finished by ``resume=True`` without
    training again.

    Args:
        config: the recipe (ignored when resuming: the checkpoint's recipe is used).
        run_dir: where the run lives (default ``<data_dir>/models/<dataset>/<model>-<time>``).
        resume: continue the run in ``run_dir`` from its last checkpoint.
        datasets: ``(train, test)`` splits to use instead of ``create_dataset`` (tests).
    """
    device = resolve_device(device)
    state = None
    if resume:
        if run_dir is None:
            raise BenchError("resume needs the run directory or name")
        run_dir = Path(run_dir)
        state = _read_state(run_dir)
        cfg = TrainConfig.from_dict(state["config"])
    else:
        if config is None:
            raise BenchError("train needs a config or resume=True")
        cfg = config.resolved()
        run_dir = Path(run_dir) if run_dir is not None else run_dir_for(cfg)
        if (run_dir / STATE).exists() or (run_dir / WEIGHTS).exists():
            raise BenchError(
                f"run {run_dir} already exists: resume it ({{resume}}) or pick another {{run_dir}}",
                options=["resume", "run_dir"],
            )
    if cfg.loss is None or cfg.image_size is None:  # resolved() fills both, and a saved state holds a resolved config
        raise BenchError(f"run {run_dir}: the training state names no loss or image size, so it cannot resume")
    train_set, test_set = datasets or _datasets(cfg)
    graph = train_set.graph
    if state is not None and state.get("graph_sha256") != graph.sha256:
        raise BenchError(f"run {run_dir} was trained on another version of graph {graph.name!r}: it cannot resume")
    seed_everything(cfg.seed)
    model = create_model(cfg.model, graph.n, cfg.image_size, labels=graph.nodes, **cfg.model_kwargs)
    if callable(getattr(model, "prepare", None)):  # MultiLabelNet's (ML-GCN's co-occurrence); a plain module has none
        model.prepare(train_set.targets())
    model.to(device)
    steps_per_epoch = len(train_set) // cfg.batch_size
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=cfg.weight_decay
    )
    total_steps = cfg.epochs * steps_per_epoch
    # OneCycleLR divides by its warm-up's length pct·T − 1, zero when T = 5: warm up a step longer then
    pct_start = 0.2 if 0.2 * total_steps != 1 else 0.4
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=cfg.lr, total_steps=total_steps, pct_start=pct_start
    )
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda")
    history: list[float] = []
    adv_history: list[dict[str, int]] = []  # per epoch: rows designated, attacked, flipped
    seconds, seen, start_epoch = 0.0, 0, 0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        history, seconds, seen, start_epoch = state["history"], state["seconds"], state["seen"], state["epoch"]
        adv_history = state.get("adv_history", [])
    loss_fn = LOSSES[cfg.loss]()
    attack, graph_tensors = None, None
    if cfg.adversarial is not None:
        attack = training_attack(cfg.adversarial, float(cfg.adv_eps or 0), int(cfg.adv_steps or 0))
        graph_tensors = GraphTensors(graph, device)

    with progress_bar("[bold]{task.description}", "{task.fields[note]}", enabled=progress) as bar:
        task = bar.add_task(
            "train", total=cfg.epochs * steps_per_epoch, completed=start_epoch * steps_per_epoch, note=""
        )
        for epoch in range(start_epoch, cfg.epochs):
            model.train()
            gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
            torch.manual_seed(cfg.seed * 100_003 + epoch)
            loader = DataLoader(
                train_set, cfg.batch_size, shuffle=True, drop_last=True, generator=gen, num_workers=cfg.workers
            )
            total, t0 = 0.0, time.perf_counter()
            tally = {"designated": 0, "attacked": 0, "succeeded": 0}
            note = ""
            for step, (images, targets) in enumerate(loader):
                images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
                if cfg.augment:
                    images = augment(images, gen)
                if attack is not None and graph_tensors is not None:
                    adv = adversarial_batch(
                        model,
                        attack,
                        images,
                        graph_tensors,
                        graph.n_labels,
                        float(cfg.adv_ratio or 1.0),
                        int(cfg.adv_targets or 1),
                        step_rng(cfg.seed, epoch, step),
                    )
                    images = adv.images
                    tally = {k: v + getattr(adv, k) for k, v in tally.items()}
                    note = f", flipped {tally['succeeded']}/{tally['attacked']}"
                if cfg.noise is not None:  # drawn from the epoch's generator: a resumed run draws the same
                    images = images + cfg.noise * torch.randn(images.shape, generator=gen).to(images)
                with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
                    loss = loss_fn(model(images), targets)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                value = float(loss.detach())
                total += value
                bar.update(
                    task, advance=1, note=f"loss {value:.4f}{note}", description=f"epoch {epoch + 1}/{cfg.epochs}"
                )
            seconds += time.perf_counter() - t0
            seen += steps_per_epoch * cfg.batch_size
            history.append(total / steps_per_epoch)
            if attack is not None:
                adv_history.append(tally)
            if progress:
                bar.console.print(
                    f"epoch {epoch + 1}/{cfg.epochs}: loss {history[-1]:.4f}{note}, "
                    f"{steps_per_epoch * cfg.batch_size / (time.perf_counter() - t0):.0f} images/s"
                )
            torch_save(
                run_dir / STATE,
                {
                    "format": STATE_FORMAT,
                    "config": cfg.to_dict(),
                    "graph_sha256": graph.sha256,
                    "epoch": epoch + 1,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(),
                    "history": history,
                    "adv_history": adv_history,
                    "seconds": seconds,
                    "seen": seen,
                },
            )
        eval_task = bar.add_task("test", total=len(test_set), note="")  # no loss shown: none is computed
        report = evaluate(model, test_set, device=device, progress=lambda n: bar.update(eval_task, advance=n))

    card = ModelCard(
        model=cfg.model,
        model_kwargs=model.config["kwargs"],
        dataset=cfg.dataset,
        labels=list(graph.nodes),
        n_labels=graph.n_labels,
        graph=graph.name,
        graph_sha256=graph.sha256,
        image_size=int(cfg.image_size),
        epochs=cfg.epochs,
        seed=cfg.seed,
        loss=str(cfg.loss),
        test_map=report.map,
        consistency_share=report.consistent_share,
        throughput=seen / seconds if seconds > 0 else None,
        history=history,
        recipe={
            **cfg.to_dict(),
            "device": device.type,
            "train_seconds": round(seconds, 1),
            **({"adv_history": adv_history} if attack is not None else {}),
        },
        run_name=run_dir.name,
        created=now_iso(),
    )
    save_trained(run_dir, model, card)
    (run_dir / STATE).unlink(missing_ok=True)
    return TrainResult(run_dir, card, report, model.eval())


def _read_state(run_dir: Path) -> dict[str, Any]:
    path = run_dir / STATE
    if not path.exists():
        done = (run_dir / WEIGHTS).exists()
        raise BenchError(f"run {run_dir} {'is finished' if done else 'has no checkpoint'}: nothing to resume")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise BenchError(f"checkpoint {path} does not load: {one_line(exc)}") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise BenchError(f"{path} is not a semattack-bench training checkpoint")
    return state
