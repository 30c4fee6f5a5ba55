"""Running a sweep: (combination, image) pairs packed into batches, every attack, metrics → rows.

**Work order.** The pairs of the shard's combinations (combination ids ascending, images in
dataset order) are cut into blocks of B pairs (``--batch-size``, else ``pair_batch_size``:
from free GPU memory, 32 on the CPU), so one block mixes the pairs of several combinations.
Per block, Ψ = h(Ω, G) is computed for every pair from its clean prediction and the graph
store's ancestors/descendants of Ω; then each (attack, ε, τ) runs once on the block's pairs
it has not stored yet, as one batched attack, and its rows go to the results store in one
``write_rows`` call that also marks complete the combinations whose last row it holds.

**Resume.** Block boundaries depend only on the plan and B, never on what is stored, so a
re-run skips the stored rows and recomputes the batch that was in flight exactly as it was
(Auto-PGD is per sample and deterministic): a ``kill -9`` loses at most that batch, and the
resumed tables equal an uninterrupted run's.

**Shards.** ``--shard i/n`` keeps the combinations with ``combo_id % n == i``; combination
ids are positions in the enumeration, the same in every process.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import Tensor, nn

from bench.attacks import ATTACKS, attack_parameters, create_attack
from bench.attacks.base import Attack, forward, model_dtype
from bench.attacks.batching import attack_pairs, pair_batch_size
from bench.attacks.targets import PairTargets, pair_targets
from bench.errors import BenchError
from bench.metrics import pair_metrics
from bench.sweep.inputs import SweepModel
from bench.sweep.presets import Preset
from bench.sweep.progress import StageTimes, SweepProgress
from bench.sweep.protocol import (
    CleanPredictions,
    PlannedCombination,
    check_sizes,
    clean_predictions,
    label_candidates,
    plan_combinations,
    shard_of,
)
from kg.closure import GraphTensors
from kg.graph import LabelGraph
from results.schema import ResultKey, ResultRow, RunConfig
from results.store import ResultStore

RMSD_ATTACKS = ("ml-dp",)  # the results contract: RMSD on successful ML-DP rows (Supp. Fig. 2)
COMBINATION_CHUNK = 5_000  # combinations recorded per transaction
STORE_WAIT = 60.0  # seconds to wait for a graph store held by another sweep


# ---------------------------------------------------------------------- settings
@dataclass(frozen=True)
class AttackSetting:
    """One (attack, ε, τ) of the grid; ``images`` caps the images per combination it attacks."""

    attack: str
    eps: float
    tau: float
    steps: int
    images: int

    def create(self) -> Attack:
        params = {"eps": self.eps, "steps": self.steps}
        if "tau" in attack_parameters(ATTACKS.get(self.attack)):
            params["tau"] = self.tau
        return create_attack(self.attack, **params)

    def key(self, combo_id: int, image_id: str) -> ResultKey:
        return ResultKey.of(combo_id, image_id, self.attack, self.eps, self.tau)


def attack_steps(attack: str, iterations: int, overrides: dict[str, int]) -> int:
    """Iterations of an attack: its override, else N for the Auto-PGD attacks, else its own default."""
    if attack in overrides:
        return int(overrides[attack])
    from bench.attacks.apgd import APGDAttack

    if issubclass(ATTACKS.get(attack), APGDAttack):
        return iterations
    return int(attack_parameters(ATTACKS.get(attack))["steps"])


def attack_settings(config: RunConfig) -> list[AttackSetting]:
    """The run's grid: every attack × ε, and × τ for the attacks that take τ (the others are
    written with ``τ = config.tau[0]``, the results contract)."""
    steps = dict(config.extra.get("steps", {}))
    images = dict(config.extra.get("images", {}))
    out = []
    for name in config.attacks:
        takes_tau = "tau" in attack_parameters(ATTACKS.get(name))
        for eps in config.eps:
            for tau in config.tau if takes_tau else config.tau[:1]:
                n = min(int(images.get(name, config.images_per_combination)), config.images_per_combination)
                out.append(AttackSetting(name, eps, tau, steps.get(name, config.iterations), n))
    return out


def sweep_config(
    *,
    dataset: str,
    split: str,
    model: SweepModel,
    graph: LabelGraph,
    preset: Preset,
    attacks: Sequence[str],
    eps: Sequence[float],
    tau: Sequence[float],
    sizes: Sequence[int],
    images_per_combination: int,
    combos: str,
    combinations_per_size: int | None,
    include_abstract: bool,
    iterations: int,
    seed: int,
    name: str = "",
    shard: tuple[int, int] = (0, 1),
    device: str = "",
) -> RunConfig:
    """The ``RunConfig`` of a sweep: the preset's values with the user's overrides applied.

    ``extra`` records the protocol settings that change the numbers: the split, how
    combinations are chosen, and each attack's iterations and images per combination.
    """
    steps = {a: attack_steps(a, iterations, dict(preset.attack_steps)) for a in attacks}
    fewer = {a: min(n, images_per_combination) for a, n in preset.attack_images.items() if a in attacks}
    return RunConfig(
        dataset=dataset, model_name=model.name, model_card=model.card, model_path=model.path,
        graph_name=graph.name, graph_sha256=graph.sha256, attacks=tuple(attacks), eps=tuple(eps), tau=tuple(tau),
        sizes=tuple(sorted(set(sizes))), images_per_combination=images_per_combination, iterations=iterations,
        seed=seed, preset=preset.name, name=name, shard_index=shard[0], shard_count=shard[1], device=device,
        extra={
            "split": split, "target": "off", "combos": combos, "combinations_per_size": combinations_per_size,
            "include_abstract": include_abstract, "steps": steps, "images": fewer,
        },
    )  # fmt: skip


def shard_db_path(db: Path, index: int, count: int) -> Path:
    """Where shard ``index`` of ``count`` writes: ``<stem>.shard-i-of-n<suffix>`` beside ``db``
    (``db`` itself when there is one shard); ``bench merge`` combines the files."""
    db = Path(db)
    return db if count == 1 else db.with_name(f"{db.stem}.shard-{index}-of-{count}{db.suffix}")


# ---------------------------------------------------------------------- graph store
def stored_graph_name(graph: LabelGraph) -> str:
    """The catalog's name when the graph is the catalog's, else the name with its hash (so a
    restricted or edited graph never replaces the catalog's copy in a shared store)."""
    from kg.catalog import load_graph

    try:
        same = load_graph(graph.name).sha256 == graph.sha256
    except BenchError:
        same = False
    return graph.name if same else f"{graph.name}-{graph.sha256[:12]}"


def _open_graph_store(kind: str):
    from kg.stores import open_store

    deadline = time.monotonic() + STORE_WAIT
    while True:
        try:
            return open_store(kind)
        except BenchError as exc:
            if "in use by another process" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def closure_masks(graph: LabelGraph, combos: Sequence[PlannedCombination], kind: str = "ladybug") -> tuple[Tensor, Tensor]:
    """``[C, n]`` masks of the proper ancestors and descendants of each combination's members,
    from the graph store: the graph is loaded idempotently, then one query per |Ω|."""
    ancestors = torch.zeros(len(combos), graph.n, dtype=torch.bool)
    descendants = torch.zeros_like(ancestors)
    if not combos:
        return ancestors, descendants
    name = stored_graph_name(graph)
    with _open_graph_store(kind) as store:
        store.load(graph if name == graph.name else replace(graph, name=name))
        for k in sorted({c.size for c in combos}):
            rows = [i for i, c in enumerate(combos) if c.size == k]
            for i, found in zip(rows, store.resolve_combinations(name, [combos[i].labels for i in rows])):
                ancestors[i, [n.idx for n in found.ancestors]] = True
                descendants[i, [n.idx for n in found.descendants]] = True
    return ancestors, descendants


# ---------------------------------------------------------------------- the sweep
@dataclass
class SweepOutcome:
    """What a sweep did in this process."""

    run_id: str
    db: Path
    combinations: int  # of this shard
    empty: int  # without eligible images
    pairs: int  # rows the shard's plan holds (all attacks)
    written: int  # rows written by this process
    resumed: int  # rows found stored at the start
    images: int  # images predicted
    consistent: int  # ... whose prediction is globally consistent
    skipped_images: int  # that did not decode
    batch_size: int
    seconds: float
    finished: bool
    times: StageTimes = field(default_factory=StageTimes)


def no_eligible_message(config: RunConfig, clean: CleanPredictions) -> str:
    sizes = ", ".join(str(k) for k in config.sizes)
    return (
        f"no {config.extra.get('split', 'test')} image of {config.dataset} is eligible for any target set of size {sizes}: "
        f"{int(clean.consistent.sum())} of {len(clean)} clean predictions are consistent with the graph, and an image "
        "needs every target predicted positive; try a smaller --size or a better-trained model"
    )


def run_sweep(
    config: RunConfig,
    model: nn.Module,
    dataset,
    graph: LabelGraph,
    store: ResultStore,
    *,
    device: torch.device | str = "cpu",
    batch_size: int | None = None,
    graph_store: str = "ladybug",
    progress: SweepProgress | None = None,
    times: StageTimes | None = None,
) -> SweepOutcome:
    """Run (or resume) the sweep ``config`` describes and write its rows to ``store``.

    Args:
        config: the run's configuration (``extra`` holds ``split``, ``combos``,
            ``combinations_per_size``, ``include_abstract``, per-attack ``steps`` and ``images``).
        model: the model under attack, on ``device``; outputs in ``graph``'s node order.
        dataset: the split to attack (``MultiLabelDataset``), labelled in ``graph``'s order.
        batch_size: pairs per batch (default ``pair_batch_size``).
        graph_store: ``ladybug`` or ``neo4j``, for the combinations' ancestors/descendants.
    """
    progress = progress or SweepProgress()
    times = times if times is not None else StageTimes()
    started = time.perf_counter()
    settings = attack_settings(config)
    extra = config.extra
    # Every input check before any work or any write: bad ε, τ or steps, or a size too large.
    engines = {s: s.create() for s in settings}
    check_sizes(config.sizes, len(label_candidates(graph, bool(extra.get("include_abstract")))), graph)
    _check_stored_config(store, config)
    with times("clean predictions"):
        clean = clean_predictions(model, dataset, graph, device, progress=progress.predictions(len(dataset)))
    with times("planning"):
        planned = plan_combinations(
            clean, graph, config.sizes, config.images_per_combination, mode=extra.get("combos", "all"),
            seed=config.seed, include_abstract=bool(extra.get("include_abstract")), per_size=extra.get("combinations_per_size"),
        )  # fmt: skip
    if not any(c.images for c in planned):
        raise BenchError(no_eligible_message(config, clean))
    mine = shard_of(planned, config.shard_index, config.shard_count)
    with times("run records"):
        run_id = store.begin_run(config)
        _record_combinations(store, run_id, mine)
    attacked = [c for c in mine if c.images]
    with times("graph store"):
        ancestors, descendants = closure_masks(graph, attacked, graph_store)
    with times("resume bookkeeping"):
        work = _Work(attacked, clean, settings, store.done_keys(run_id))
        complete_stored = store.done_combinations(run_id)
        newly = sorted({c.combo_id for c in mine if work.remaining[c.combo_id] == 0} - complete_stored)
        if newly:
            store.write_rows(run_id, [], complete=newly)
    complete = len(complete_stored) + len(newly)
    size = pair_batch_size(model, tuple(dataset[int(clean.indices[0])][0].shape), batch_size)
    progress.start(work.todo, len(mine), complete)
    g = GraphTensors(graph)
    written = 0
    for start in range(0, work.n_pairs, size):
        block = slice(start, min(start + size, work.n_pairs))
        todo = {s: work.select(block, s) for s in settings}
        if not any(todo.values()):
            continue
        with times("images"):
            images, image_index = work.images(block, dataset)
        with times("targets"):
            targets = work.targets(block, g, ancestors, descendants)
        for setting, chosen in todo.items():
            if not chosen:
                continue
            rows = _attack_rows(
                setting, engines[setting], model, device, images, image_index, targets, chosen, block, work, g, size, times
            )
            finished = work.finish(rows, setting)
            with times("writing rows"):
                written += store.write_rows(run_id, rows, complete=finished)
            complete += len(finished)
            progress.advance(len(rows), complete, work.running(setting))
    if complete == len(mine):
        with times("run records"):
            store.finish_run(run_id)
    return SweepOutcome(
        run_id=run_id, db=store.path, combinations=len(mine), empty=sum(1 for c in mine if not c.images),
        pairs=work.planned, written=written, resumed=work.planned - work.todo, images=len(clean),
        consistent=int(clean.consistent.sum()), skipped_images=clean.skipped, batch_size=size,
        seconds=time.perf_counter() - started, finished=complete == len(mine), times=times,
    )  # fmt: skip


def _check_stored_config(store: ResultStore, config: RunConfig) -> None:
    """Refuse a stored run of the same id with another configuration before any work."""
    try:
        stored = store.run_config(config.run_id)
    except BenchError:
        return  # not stored yet
    if stored.config_hash != config.config_hash:
        store.begin_run(config)  # raises the store's message naming the fields that differ


def _record_combinations(store: ResultStore, run_id: str, combos: Sequence[PlannedCombination]) -> None:
    """Write the combinations the store does not hold yet (all of them on a first run)."""
    with store.reader() as con:
        stored = {r[0] for r in con.execute("SELECT combo_id FROM combinations WHERE run_id = ?", [run_id]).fetchall()}
    missing = [c.record() for c in combos if c.combo_id not in stored]
    for start in range(0, len(missing), COMBINATION_CHUNK):
        store.write_combinations(run_id, missing[start : start + COMBINATION_CHUNK])


def _attack_rows(
    setting: AttackSetting,
    engine: Attack,
    model: nn.Module,
    device,
    images: Tensor,
    image_index: Tensor,
    targets: PairTargets,
    chosen: list[int],
    block: slice,
    work: _Work,
    g: GraphTensors,
    size: int,
    times: StageTimes,
) -> list[ResultRow]:
    """Attack the chosen pairs of a block and turn the outcome into rows."""
    started = time.perf_counter()
    index = torch.tensor(chosen) - block.start
    sub = targets.select(index)
    with times("attack"):
        result = attack_pairs(engine, model, images, sub, image_index[index], batch_size=size)
    with times("adversarial predictions"), torch.no_grad():
        adv_logits = forward(model.eval(), result.adv.to(device, model_dtype(model))).float().cpu()
    with times("metrics"):
        m = pair_metrics(sub, adv_logits, g, images[image_index[index]], result.adv)
    per_row = (time.perf_counter() - started) / len(chosen)
    rows = []
    for j, p in enumerate(chosen):
        ok = bool(m.success[j])
        its = int(result.iterations[j])
        rows.append(
            ResultRow(
                combo_id=work.combo_id(p),
                image_id=work.image_id(p),
                attack=setting.attack,
                eps=setting.eps,
                tau=setting.tau,
                success=ok,
                consistent=bool(m.consistent[j]),
                ntr_share=float(m.ntr_share[j]),
                iterations=its if its >= 0 else setting.steps,
                linf=float(m.linf[j]),
                l2=float(m.l2[j]),
                seconds=per_row,
                ssim=float(m.ssim[j]) if ok and not math.isnan(float(m.ssim[j])) else None,
                rmsd=float(m.rmsd[j]) if ok and setting.attack in RMSD_ATTACKS else None,
            )
        )
    return rows


class _Work:
    """The shard's (combination, image) pairs, what is stored, and running rates."""

    def __init__(
        self, combos: Sequence[PlannedCombination], clean: CleanPredictions, settings: Sequence[AttackSetting], done: set[ResultKey]
    ) -> None:
        self.combos, self.clean, self.settings = list(combos), clean, list(settings)
        pos = [(i, rank, row) for i, c in enumerate(self.combos) for rank, row in enumerate(c.images)]
        self.n_pairs = len(pos)
        self.combo = torch.tensor([p[0] for p in pos], dtype=torch.long)
        self.rank = torch.tensor([p[1] for p in pos], dtype=torch.long)
        self.row = torch.tensor([p[2] for p in pos], dtype=torch.long)
        self.done = set(done)
        self.remaining: Counter[int] = Counter({c.combo_id: 0 for c in self.combos})
        self.planned = 0
        for p in range(self.n_pairs):
            for s in self.settings:
                if self.rank[p] < s.images:
                    self.planned += 1
                    if self.key(p, s) not in self.done:
                        self.remaining[self.combo_id(p)] += 1
        self.todo = sum(self.remaining.values())
        self.rates: dict[AttackSetting, list[int]] = {}

    def combo_id(self, p: int) -> int:
        return self.combos[int(self.combo[p])].combo_id

    def image_id(self, p: int) -> str:
        return self.clean.image_ids[int(self.row[p])]

    def key(self, p: int, s: AttackSetting) -> ResultKey:
        return s.key(self.combo_id(p), self.image_id(p))

    def select(self, block: slice, s: AttackSetting) -> list[int]:
        """The block's pairs (positions in the work list) this setting still has to attack."""
        return [p for p in range(block.start, block.stop) if self.rank[p] < s.images and self.key(p, s) not in self.done]

    def images(self, block: slice, dataset) -> tuple[Tensor, Tensor]:
        """The block's distinct images ``[U, 3, H, W]`` and each pair's index into them."""
        rows, index = torch.unique(self.row[block], return_inverse=True)
        images = torch.stack([dataset[int(self.clean.indices[r])][0] for r in rows.tolist()])
        return images, index

    def targets(self, block: slice, g: GraphTensors, ancestors: Tensor, descendants: Tensor) -> PairTargets:
        """Ω and Ψ = h(Ω, G) of the block's pairs, from each pair's clean prediction."""
        combo = self.combo[block]
        clean = self.clean.positive[self.row[block]]
        omega = torch.zeros_like(clean)
        for j, c in enumerate(combo.tolist()):
            omega[j, list(self.combos[c].members)] = True
        return pair_targets(clean, omega, g, ancestors=ancestors[combo], descendants=descendants[combo])

    def finish(self, rows: Sequence[ResultRow], s: AttackSetting) -> list[int]:
        """Count the setting's rows as stored; the combinations they complete."""
        finished = []
        rate = self.rates.setdefault(s, [0, 0, 0])
        for r in rows:
            self.done.add(r.key)
            self.remaining[r.combo_id] -= 1
            if self.remaining[r.combo_id] == 0:
                finished.append(r.combo_id)
            rate[0] += 1
            rate[1] += r.success
            rate[2] += r.consistent
        return finished

    def running(self, s: AttackSetting) -> str:
        n, ok, consistent = self.rates.get(s, [0, 0, 0])
        name = ATTACKS.get(s.attack).display_name or s.attack
        return f"{name} ε={s.eps:g}: FR_N {100 * ok / max(n, 1):.0f}% FR_S {100 * consistent / max(n, 1):.0f}%"

