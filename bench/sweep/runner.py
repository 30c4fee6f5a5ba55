"""Running a sweep in one process: ``run_sweep`` prepares the run (``bench.sweep.prepare``),
runs the pair queue through the engine (``bench.sweep.rows.attack_rows``) and writes each
metrics batch's rows with one ``write_rows`` call, which also marks complete the combinations
whose last row it holds.

**Reproducibility.** A pair's row depends on its inputs, the machine, the device and B, never
on which pairs share its batch, on the order pairs arrive or on when it enters. Hence a resumed
run, the shards of ``--shard i/n`` merged, and any number of Ray workers give bitwise the rows
of one uninterrupted run (with the same B). ``docs/sweeps.md`` states the contract.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import nn

from bench.sweep.prepare import SweepOutcome, SweepRequest, prepared_sweep
from bench.sweep.progress import StageTimes, SweepProgress
from bench.sweep.rows import attack_rows
from kg.graph import LabelGraph
from results.schema import RunConfig
from results.store import ResultStore

if TYPE_CHECKING:  # the dataset package registers every loader on import
    from bench.datasets.base import MultiLabelDataset


def run_sweep(
    config: RunConfig,
    model: nn.Module,
    dataset: MultiLabelDataset,
    graph: LabelGraph,
    store: ResultStore,
    request: SweepRequest | None = None,
    *,
    progress: SweepProgress | None = None,
    times: StageTimes | None = None,
    **options: Any,
) -> SweepOutcome:
    """Run (or resume) the sweep ``config`` describes and write its rows to ``store``.

    Args:
        config: the run's configuration (``sweep_config``; ``config.protocol`` holds the split,
            how combinations are chosen, per-attack ``steps`` and ``images``, closure, precision).
        model: the model under attack, on the request's device; outputs in ``graph``'s node order.
        dataset: the split to attack (``MultiLabelDataset``), labelled in ``graph``'s order.
        request: how to run it (``SweepRequest``: device, B, graph store, saved examples, mixed
            numerics, transfer targets); its fields may also be given as keywords (``batch_size=8``).

    With ``cpu_numerics`` = ``portable`` (``config.protocol``), ``bench.numerics.pin("portable")``
    must have run before torch's first kernel in this process.
    """
    request = SweepRequest.of(request, options)
    with prepared_sweep(config, model, dataset, graph, store, request, progress=progress, times=times) as (
        prep,
        model,
    ):
        for rows, saved, transfer in attack_rows(
            prep.queue,
            prep.attacks,
            model,
            prep.batch_size,
            max(config.sizes),
            prep.times,
            prep.slot_use,
            prep.examples,
            prep.transfer,
            prep.defended,
        ):
            prep.write(rows, saved, transfer=transfer)
        return prep.outcome()
