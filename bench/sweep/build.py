"""From names to a ready sweep: the wiring every command and Python caller shares.

``load_inputs`` goes from a dataset's and a model's names to the model fitted to one split of
the dataset (``Inputs``); ``build_sweep`` from those names and the sweep's options to a
``Sweep`` whose ``run`` writes the rows::

    from bench.sweep import SweepOptions, build_sweep

    sweep = build_sweep("stamps", preset="fast", options=SweepOptions(attacks=("gmla",), sizes=(1,)))
    outcome = sweep.run()

Each input is checked once, where it is first known: the options' values when
``SweepOptions`` is made; where and how the sweep runs (graph store, graph name, shard, Ray,
defense) before the model loads; |Ω| against the graph in ``sweep_config``; the results file
last, so a mistake leaves no file behind.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from bench import numerics
from bench.defenses import Defense, create_defense
from bench.devices import resolve_device
from bench.errors import BenchError
from bench.sweep.config import shard_db_path, sweep_config
from bench.sweep.inputs import SweepModel, fit_dataset, load_sweep_model
from bench.sweep.prepare import SweepOutcome, SweepRequest
from bench.sweep.presets import Preset, SweepOptions, get_preset
from bench.sweep.progress import SweepProgress
from bench.sweep.transfer import TransferTarget, check_names, fit_target, target_name
from kg.graph import LabelGraph
from results.schema import RunConfig
from results.store import ResultStore, default_db_path

if TYPE_CHECKING:
    from bench.datasets.base import MultiLabelDataset

Report = Callable[[str], None]


def _quiet(_: str) -> None:
    """A report that says nothing."""


@dataclass
class Inputs:
    """A model fitted to a dataset's split: ``model`` as loaded (what identifies it), ``net``
    with its outputs in ``graph``'s node order, ``data`` the split seen in that order, and
    ``load_split`` loading another split of the same dataset alike."""

    dataset: str
    model: SweepModel
    net: nn.Module
    data: MultiLabelDataset
    graph: LabelGraph
    load_split: Callable[[str], MultiLabelDataset]


def load_inputs(
    dataset: str | None,
    model: str | None = None,
    *,
    split: str = "test",
    device: torch.device | str = "cpu",
    trust: bool = False,
    image_size: int | None = None,
    arch: str | None = None,
    embeddings: str | Path | None = None,
    root: str | Path | None = None,
    graph: str | None = None,
    report: Report = _quiet,
) -> Inputs:
    """``model`` (a name ``load_sweep_model`` takes; ``None``: the newest trained on ``dataset``)
    fitted to ``split`` of ``dataset`` (its files under ``root``; ``graph``: a folder dataset's
    graph; ``None``: the dataset the model was trained on). ``report`` gets what was chosen or
    matched, one line each."""
    from bench.datasets import create_dataset

    if dataset is None and model is None:
        raise BenchError("give {dataset} (its newest trained model is used) or {model}", options=["dataset", "model"])
    device = resolve_device(device)
    loaded = load_sweep_model(
        dataset or "", model, device, trust, image_size=image_size, arch=arch, embeddings=embeddings
    )
    dataset = dataset or loaded.card.get("dataset")
    if not dataset:
        raise BenchError("a published checkpoint needs {dataset}", options=["dataset"])
    if model is None:
        report(
            f"model: the newest trained for {dataset}, {Path(loaded.path).name} ({loaded.name}); "
            "`bench models` lists them"
        )
    dataset_options = {"graph": graph} if graph else {}

    def load_split(name: str) -> MultiLabelDataset:
        return create_dataset(dataset, name, root=root, image_size=loaded.image_size, **dataset_options)

    net, data, fitted_graph = fit_dataset(loaded, load_split(split), report=report)
    return Inputs(dataset, loaded, net, data, fitted_graph, load_split)


@dataclass(frozen=True)
class RayCluster:
    """Where a sweep runs on Ray: ``address`` (``local``, ``auto`` or a cluster's), ``workers``
    (default: one per GPU, or the CPUs ÷ ``cpus_per_worker``) and each CPU worker's cores."""

    address: str
    workers: int | None = None
    cpus_per_worker: int = 1


@dataclass
class Sweep:
    """A sweep ready to run: its configuration, inputs, results file and how it runs."""

    config: RunConfig
    inputs: Inputs
    store: ResultStore
    request: SweepRequest
    defense: Defense | None = None
    ray: RayCluster | None = None

    def run(self, progress: SweepProgress | None = None) -> SweepOutcome:
        """Run (or resume) the sweep: in this process, or over the Ray cluster."""
        from bench.sweep.runner import run_sweep

        i = self.inputs
        if self.ray is None:
            return run_sweep(self.config, i.net, i.data, i.graph, self.store, self.request, progress=progress)
        from bench.sweep.cluster import run_sweep_ray

        return run_sweep_ray(
            self.config,
            i.net,
            i.data,
            i.graph,
            self.store,
            self.request,
            progress=progress,
            address=self.ray.address,
            workers=self.ray.workers,
            cpus_per_worker=self.ray.cpus_per_worker,
        )


def build_sweep(
    dataset: str,
    model: str | None = None,
    *,
    preset: str | Preset = "paper",
    options: SweepOptions | None = None,
    name: str = "",
    shard: tuple[int, int] = (0, 1),
    db: str | Path | None = None,
    wait: float = 60.0,
    device: torch.device | str = "auto",
    batch_size: int | None = None,
    graph_store: str = "ladybug",
    graph_db: str | Path | None = None,
    root: str | Path | None = None,
    graph: str | None = None,
    image_size: int | None = None,
    arch: str | None = None,
    embeddings: str | Path | None = None,
    trust: bool = False,
    save_images: int = 0,
    allow_mixed_numerics: bool = False,
    transfer_to: Sequence[str] = (),
    defense: str | Defense | None = None,
    eot: int = 1,
    ray: RayCluster | None = None,
    report: Report = _quiet,
    warn: Report | None = None,
) -> Sweep:
    """The sweep ``bench run`` runs, from names: ``dataset`` and ``model`` as ``load_inputs``
    takes them, ``options`` over ``preset``; the rows go to ``db`` (default
    ``$BENCH_DATA/results.duckdb``; a shard of ``shard = (i, n)`` to its own file beside it).

    ``transfer_to`` names models the adversarial images are also fed to; ``defense`` (a name
    with parameters, ``"smoothing:sigma=0.25"``, or a ``Defense``) is prepared on its own split
    and attacked with ``eot`` draws; ``ray`` spreads the sweep over a cluster. ``report`` gets
    what was chosen, fitted or prepared, ``warn`` what deserves attention (default: ``report``),
    once every input has passed its checks: a mistake is its error alone.
    """
    from bench.sweep.cluster import check_address, import_ray
    from kg.catalog import graph_path
    from kg.stores import check_store

    said: list[tuple[Report, str]] = []  # what to report, once every input has passed its checks
    options = options or SweepOptions()  # the preset's, all of them
    numerics.pin(options.cpu_numerics)  # as the `bench` command does at its start
    chosen = get_preset(preset) if isinstance(preset, str) else preset
    shard_index, shard_count = shard
    if not 0 <= shard_index < shard_count:
        raise BenchError(f"{{shard}} {shard_index}/{shard_count}: give i/n with 0 ≤ i < n", options=["shard"])
    check_store(graph_store, graph_db)
    if graph and not graph.lower().endswith(".csv"):  # a CSV of edges is read with the folder's labels
        graph_path(graph)  # an unknown graph: one line with the closest names
    if ray is not None:
        import_ray()
        check_address(ray.address)
        if shard_count > 1:
            raise BenchError(
                "{ray} and {shard} do not combine: Ray spreads the whole sweep over its workers",
                options=["ray", "shard"],
            )
        if transfer_to:
            raise BenchError(
                "{transfer_to} and {ray} do not combine: transfer runs in one process (leave out {ray})",
                options=["transfer_to", "ray"],
            )
    chosen_defense = defense_for(defense, eot, ray)
    dev = resolve_device(device)
    inputs = load_inputs(
        dataset,
        model,
        split=options.split,
        device=dev,
        trust=trust,
        image_size=image_size,
        arch=arch,
        embeddings=embeddings,
        root=root,
        graph=graph,
        report=lambda line: said.append((report, line)),
    )
    transfer = _transfer_targets(
        transfer_to, inputs, dev, trust, image_size, lambda line: said.append((warn or report, line))
    )
    if chosen_defense is not None:  # fit what it learns from clean data (the detector's threshold) on its own split
        chosen_defense.prepare(inputs.net, inputs.graph, inputs.load_split)
        eot_text = f", attacked with EOT over {eot} draws" if eot > 1 else ""
        said.append((report, f"defense: {chosen_defense.describe()}{eot_text}"))
    config = sweep_config(
        dataset,
        inputs.model,
        inputs.graph,
        chosen,
        options,
        name=name,
        shard=shard,
        device=str(dev),
        data=inputs.data.fingerprint(),
        defense=chosen_defense.config() if chosen_defense is not None else None,
        eot=eot,
    )
    for say, line in said:
        say(line)
    path = shard_db_path(Path(db) if db else default_db_path(), shard_index, shard_count)
    store = ResultStore(path, lock_timeout=wait)
    request = SweepRequest(
        device=dev,
        batch_size=batch_size,
        graph_store=graph_store,
        graph_db=graph_db,
        save_images=save_images,
        allow_mixed_numerics=allow_mixed_numerics,
        transfer=transfer,
    )
    return Sweep(config, inputs, store, request, chosen_defense, ray)


def defense_for(defense: str | Defense | None, eot: int = 1, ray: RayCluster | None = None) -> Defense | None:
    """The defense a sweep is asked for (a spec ``name:key=value,...`` or a ``Defense``),
    unprepared, checked with ``eot`` and ``ray`` before any work."""
    if defense is None:
        if eot != 1:
            raise BenchError(
                "{eot} averages the draws of a randomised defense: give one with {defense}", options=["eot", "defense"]
            )
        return None
    chosen = create_defense(defense) if isinstance(defense, str) else defense
    if eot != 1 and not chosen.randomised:
        raise BenchError(
            f"{{eot}} {eot}: defense {chosen.name} draws no randomness to average (smoothing does)", options=["eot"]
        )
    if ray is not None:
        raise BenchError(
            "{defense} and {ray} do not combine: a defended sweep runs in one process (leave out {ray})",
            options=["defense", "ray"],
        )
    return chosen


def _transfer_targets(
    names: Sequence[str], inputs: Inputs, device: torch.device, trust: bool, image_size: int | None, warn: Report
) -> tuple[TransferTarget, ...]:
    """The models the adversarial images are also fed to, loaded as ``model`` is and fitted to
    the run's graph; one that does not load or fit is one line, before any file is touched."""
    targets = []
    for spec in names:
        try:
            model = load_sweep_model(inputs.dataset, spec, device, trust, image_size=image_size)
        except BenchError as exc:
            raise exc.prefixed(f"{{transfer_to}} {spec}", options=["transfer_to"]) from None
        targets.append(fit_target(model, inputs.data, inputs.graph))
        if model.image_size != inputs.model.image_size and not model.own:
            warn(
                f"transfer target {target_name(model)} takes {model.image_size} px images; it is given the run's "
                f"{inputs.model.image_size} px images as they are"
            )
    check_names(targets)
    return tuple(targets)
