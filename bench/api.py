"""Your model, your images, one call: ``bench.benchmark`` (this module's ``benchmark``) runs
the paper's protocol on any ``nn.Module`` through the same engine, rows and DuckDB tables as
``bench run``.

Example::

    import bench

    result = bench.benchmark(model, images, labels=["cat", "dog", "car"], graph="hierarchy.csv",
                             attacks="gmla,mla-u", sizes=[1, 2], eps=0.03, iterations=50)
    print(result.table())          # the paper's layout, Markdown
    df = result.summary()          # FR_N, FR_S, NT_R per attack and |Ω| (pandas)

``model`` maps images ``[B, 3, H, W]`` in [0, 1] to logits: over every node of the graph (a
model trained on the extended labels, as the paper's), or over ``labels`` only, in which case
``bench.models.adapters.ExtendedLogits`` gives the abstract nodes their logits (a node is as
positive as its most positive descendant label; the result says so). ``labels`` names the
model's outputs in their order. ``graph`` is a packaged or saved graph's name (``voc``), a
``LabelGraph``, or a CSV of ``parent,child`` names over ``labels``.

The run is identified, like every run, by its configuration: the model's parameters' and the
images' sha256 are part of it, so the same call resumes (or finds done) the same run.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import torch
from torch import Tensor, nn

from bench import numerics
from bench.datasets.base import MultiLabelDataset
from bench.defenses import Defense
from bench.devices import resolve_device
from bench.errors import BenchError, InvalidValue
from bench.models.adapters import fit_model, parameters_sha256
from bench.names import parse_attacks
from bench.sweep.build import defense_for
from bench.sweep.config import sweep_config
from bench.sweep.inputs import own_model
from bench.sweep.prepare import SweepOutcome
from bench.sweep.presets import Preset, SweepOptions, get_preset
from bench.sweep.progress import RichSweepProgress, SweepProgress
from bench.sweep.runner import run_sweep
from kg.catalog import load_graph, read_edges_csv
from kg.graph import LabelGraph
from results.merge import load_into_memory
from results.store import ResultStore
from results.tables import paper_layout, render
from results.views import Selection

if TYPE_CHECKING:
    import pandas


class ImageTensors(MultiLabelDataset):
    """Images ``[N, 3, H, W]`` in [0, 1] as a dataset of ``graph`` (the protocol attacks what the
    model predicts, so ground truth is optional: ``targets`` over the labels or the nodes)."""

    def __init__(self, images: Tensor, graph: LabelGraph, targets: Tensor | None = None, name: str = "images") -> None:
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[2] != images.shape[3]:
            raise BenchError(f"images must be [N, 3, S, S] in [0, 1]; got {list(images.shape)}")
        if images.numel() and (float(images.min()) < 0 or float(images.max()) > 1):
            raise BenchError("images must lie in [0, 1] (the attacks' ε is measured there)")
        self.images, self.graph, self.name, self.split = images.float().cpu(), graph, name, "test"
        self.image_size = int(images.shape[-1])
        if targets is None:
            self._targets = torch.zeros(len(images), graph.n)
        else:
            self._targets = torch.from_numpy(graph.extend_labels(targets.cpu().numpy()))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.images[index], self._targets[index]

    def image_id(self, index: int) -> str:
        return f"{self.name}/{index:05d}"

    def targets(self) -> Tensor:
        return self._targets.clone()

    def fingerprint(self) -> dict[str, object]:
        return {"images": len(self), "sha256": parameters_sha256(self.images)}


def resolve_graph(graph: str | Path | LabelGraph | None, labels: Sequence[str] | None) -> LabelGraph:
    """The graph a call names: a ``LabelGraph``, a CSV of ``parent,child`` pairs over ``labels``,
    or a graph's name or JSON file."""
    if isinstance(graph, LabelGraph):
        return graph
    if graph is None:
        raise BenchError("name the label graph: graph='voc', a LabelGraph or a CSV of parent,child pairs")
    if Path(graph).suffix.lower() == ".csv":
        if not labels:
            raise BenchError(f"graph {graph} is a CSV of edges: pass labels=[...] (the model's outputs, in order)")
        return read_edges_csv(graph, labels)
    return load_graph(str(graph))


@dataclass
class Benchmark:
    """What ``benchmark`` returns: the run's id and results file (``None`` in memory: then
    ``connection`` holds the results), the sweep's outcome, and the tables and DataFrames of
    this run (never pooled with other runs of the file)."""

    run_id: str
    db: Path | None
    outcome: SweepOutcome
    graph: LabelGraph
    fitted: str
    connection: duckdb.DuckDBPyConnection | None = None

    def reader(self) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
        """A connection to the results, with the views (the in-memory one, or the file read-only)."""
        if self.connection is not None:
            return nullcontext(self.connection)
        return ResultStore(self.db, create=False).reader()

    def sql(self, query: str, *params: Any) -> pandas.DataFrame:
        """A query on the results as a DataFrame (filter by ``run_id = ?`` yourself)."""
        with self.reader() as con:
            return con.execute(query, list(params)).df()

    def rows(self) -> pandas.DataFrame:
        """This run's result rows, one per (combination, image, attack, ε, τ)."""
        return self.sql("SELECT * FROM results WHERE run_id = ? ORDER BY ALL", self.run_id)

    def checks(self) -> pandas.DataFrame:
        """The run's reliability checks (``bench.sweep.checks``): name, status, value, detail."""
        return self.sql("SELECT name, status, value, detail FROM checks WHERE run_id = ? ORDER BY name", self.run_id)

    def summary(self) -> pandas.DataFrame:
        """FR_N, FR_S, NT_R (mean and std over the combinations) per attack, |Ω|, ε and τ."""
        return self.sql("SELECT * FROM rate_summary WHERE run_id = ? ORDER BY size, attack", self.run_id)

    def table(self, size: int | None = None, fmt: str = "markdown") -> Any:
        """The paper's layout of this run for one |Ω| (default: the largest), in ``fmt``
        (markdown, latex, csv, or rich for a rich ``Table``)."""
        with self.reader() as con:
            sizes = [
                r[0]
                for r in con.execute(
                    "SELECT DISTINCT size FROM rate_summary WHERE run_id = ?", [self.run_id]
                ).fetchall()
            ]
            if not sizes:
                raise BenchError(f"run {self.run_id} has no rows (no image was eligible)")
            layout = paper_layout(con, [self.run_id], Selection(size if size is not None else max(sizes)))
        return render(layout, fmt)


def benchmark(
    model: nn.Module,
    images: Tensor | MultiLabelDataset,
    labels: Sequence[str] | None = None,
    graph: str | Path | LabelGraph | None = None,
    *,
    attacks: str | Sequence[str] = "gmla,mla-u,mla-c",
    sizes: int | Sequence[int] = (1, 2),
    eps: float | Sequence[float] | None = None,
    iterations: int | None = None,
    images_per_combination: int | None = None,
    preset: str | Preset = "paper",
    targets: Tensor | None = None,
    db: str | Path | None = None,
    name: str = "",
    device: str | torch.device = "auto",
    batch_size: int | None = None,
    progress: bool | SweepProgress = True,
    seed: int = 0,
    defense: str | Defense | None = None,
    eot: int = 1,
) -> Benchmark:
    """Attack ``model`` on ``images`` under the paper's protocol (module docstring).

    Args:
        model: any ``nn.Module``: images in [0, 1] → logits over the graph's nodes or ``labels``.
        images: ``[N, 3, S, S]`` in [0, 1], or a ``MultiLabelDataset`` (then ``labels`` and
            ``graph`` default to its graph's).
        labels: the model's output names, in order (default: the graph's order).
        graph: a graph name, a ``LabelGraph`` or a CSV of ``parent,child`` pairs over ``labels``.
        attacks, sizes, eps, iterations, images_per_combination: the sweep (``bench run``'s
            options); what is not given comes from ``preset`` (``paper``, ``fast``).
        targets: optional ground truth (not used by the protocol, stored with the dataset).
        db: the results file (default: a new one in a temporary folder, named in the result), or
            ``":memory:"``: the results in an in-memory DuckDB (``result.connection``), no file kept.
        name: the run's name (default: the model's class and the configuration's hash).
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda``; ``batch_size``: B.
        progress: a rich progress bar (terminal and Jupyter), or your own ``SweepProgress``.
        defense: attack the model under a defense (``bench.defenses``: ``"kg-detector"``,
            ``"smoothing:sigma=0.25"``, or a ``Defense``); a detector without ``max_violations``
            is fitted on ``images`` themselves. ``eot``: draws of a randomised defense the
            attacks average.
    """
    if not isinstance(model, nn.Module):
        raise InvalidValue("model", type(model).__name__, "give a torch.nn.Module")
    numerics.pin("native")  # MKL strict, as the `bench` command runs: MKL reads it at its first product
    if isinstance(images, MultiLabelDataset):
        data = images
        graph = data.graph if graph is None else resolve_graph(graph, labels or data.graph.labels)
        dataset_name = data.name
    else:
        if not isinstance(images, Tensor):
            raise InvalidValue("images", type(images).__name__, "give a [N, 3, S, S] tensor or a MultiLabelDataset")
        graph = resolve_graph(graph, labels)
        data = ImageTensors(images, graph, targets)
        dataset_name = "images"
    if len(data) == 0:
        raise BenchError("no images to attack")
    dev = resolve_device(str(device))
    card = {"model": type(model).__name__, "labels": list(labels) if labels is not None else list(graph.labels)}
    model = model.to(dev).eval()
    net, fitted = fit_model(model, graph, labels, data[0][0].to(dev))
    loaded = own_model(model, type(model).__name__.lower(), {**card, "outputs": fitted}, dev, int(data.image_size))
    options = SweepOptions(
        attacks=parse_attacks(attacks) if isinstance(attacks, str) else tuple(attacks),
        sizes=(sizes,) if isinstance(sizes, int) else tuple(sizes),
        eps=None if eps is None else ((eps,) if isinstance(eps, (int, float)) else tuple(eps)),
        iterations=iterations,
        images_per_combination=images_per_combination,
        seed=seed,
    )
    chosen = get_preset(preset) if isinstance(preset, str) else preset
    chosen_defense = defense_for(defense, eot)
    if chosen_defense is not None:
        chosen_defense.prepare(net, graph, lambda split: data)
    fingerprint = data.fingerprint()
    if fingerprint is None:  # a dataset of the user's own without one: its images identify it
        fingerprint = {"images": len(data), "sha256": parameters_sha256(data[i][0] for i in range(len(data)))}
    config = sweep_config(
        dataset_name,
        loaded,
        graph,
        chosen,
        options,
        name=name,
        device=str(dev),
        data=fingerprint,
        defense=chosen_defense.config() if chosen_defense is not None else None,
        eot=eot,
    )
    in_memory = str(db) == ":memory:"
    path = Path(tempfile.mkdtemp(prefix="semattack-")) / "results.duckdb" if db is None or in_memory else Path(db)
    if progress is True:
        from rich.console import Console

        display: AbstractContextManager[SweepProgress | None] = RichSweepProgress(Console())
    else:
        display = nullcontext(progress or None)
    try:
        with display as bar:
            outcome = run_sweep(
                config, net, data, graph, ResultStore(path), device=dev, batch_size=batch_size, progress=bar
            )
        if not in_memory:
            return Benchmark(outcome.run_id, path, outcome, graph, fitted)
        return Benchmark(outcome.run_id, None, outcome, graph, fitted, load_into_memory(path))
    finally:
        if in_memory:
            shutil.rmtree(path.parent, ignore_errors=True)
