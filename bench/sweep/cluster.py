"""Sweeps on a Ray cluster (``bench run --ray local|auto|ADDRESS``; the optional extra ``ray``).

The driver (the ``bench run`` process) prepares the sweep exactly as a single process does
(``bench.sweep.prepare``: clean predictions, plan, run records, closures, what is stored), cuts
the combinations that still have pairs to attack into *work units*, and hands the units to Ray
actors: one per GPU (``num_gpus=1``), or, on a cluster without GPUs, CPU workers of
``cpus_per_worker`` cores each (torch uses that many threads in each). Every actor loads the
model and the dataset once and runs each unit as a single process runs its shard: a
``PairQueue`` of the unit's combinations through ``attack_rows`` (the same engine and
metrics); it streams rows back, and the driver alone writes them to the one DuckDB file
(``Prepared.write``: the store's transactional, idempotent ``write_rows``, combinations
marked complete).

What travels: one ``WorkerInputs`` (the model's weights, the dataset object, the graph, the
clean predictions, the attacks...) goes through Ray's object store once (``ray.put``); each
actor fetches it once. Images are read by the dataset object itself, so an on-disk dataset
(VOC, NUS-WIDE, Open Images, the ``stamps`` cache under ``$BENCH_DATA``) must be at the same
path on every node (a shared file system); the object store never carries a whole image
collection.

Rows equal a single process's, bitwise: a pair's row depends only on its own inputs, the
device, B and the threads torch uses (``docs/sweeps.md``, the reproducibility contract), not
on which worker or unit ran it.

Faults: an actor whose process dies mid-unit is restarted by Ray and the unit runs again
(rows written twice are stored once); a dead driver is a re-run of the same command, which
resumes; a worker that raises on bad data stops the run with that one error, the rows already
written kept.
"""

from __future__ import annotations

import copy
import os
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from bench import numerics
from bench.attacks.base import Attack
from bench.attacks.engine import EngineStats
from bench.errors import BenchError, InvalidValue, one_line
from bench.registry import child_process_env
from bench.sweep.config import AttackSetting
from bench.sweep.pairs import PairQueue
from bench.sweep.planning import CleanPredictions, PlannedCombination
from bench.sweep.prepare import Prepared, SweepOutcome, SweepRequest, prepared_sweep
from bench.sweep.progress import StageTimes, SweepProgress
from bench.sweep.rows import ExampleSpec, Saved, attack_rows
from kg.closure import GraphTensors
from kg.graph import LabelGraph
from results.schema import ResultKey, ResultRow, RunConfig
from results.store import ResultStore

if TYPE_CHECKING:  # the dataset package registers every loader on import
    from bench.datasets.base import MultiLabelDataset

UNITS_PER_WORKER = 1  # work units per worker: each keeps its slots full over a long queue (rows stream back)
ACTOR_RESTARTS = 3
REACH_TIMEOUT = 5.0  # seconds to reach a cluster's address
RESTART_WAIT = 120.0  # seconds for Ray to restart a worker whose process died


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise BenchError("sweeps on Ray need the optional extra 'ray': pip install 'semattack-bench[ray]'") from None
    return ray


@dataclass(frozen=True)
class WorkerInputs:
    """What every worker starts from: the driver puts one in Ray's object store, each actor
    (and an actor Ray restarts) is created from it."""

    model: nn.Module  # on the CPU; the worker moves it to ``device``
    dataset: MultiLabelDataset
    graph: LabelGraph
    clean: CleanPredictions
    settings: list[AttackSetting]
    attacks: dict[AttackSetting, Attack]
    device: str
    batch_size: int  # the pair batch size B
    max_targets: int
    threads: int  # torch threads of a CPU worker (0: torch's default)
    closure: str
    examples: ExampleSpec | None


@dataclass
class Unit:
    """A chunk of the shard's combinations (positions in the attacked list)."""

    index: int
    positions: list[int]


def connect(address: str, *, cpus: int | None = None) -> Any:
    """Start (``local``) or join (``auto`` / ``ray://…`` / ``host:port``) a Ray cluster."""
    ray = import_ray()
    if address not in ("local", "auto"):
        _check_reachable(address)
    if ray.is_initialized():
        return ray
    env = child_process_env()
    try:
        if address == "local":
            ray.init(
                num_cpus=cpus,
                include_dashboard=False,
                log_to_driver=False,
                runtime_env={"env_vars": env},
                _node_ip_address="127.0.0.1",
            )
        else:
            ray.init(address=address, log_to_driver=False, runtime_env={"env_vars": env})
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise BenchError(f"cannot reach a Ray cluster at {address!r}: {one_line(exc)}") from None
    return ray


def check_address(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of a cluster address, ``None`` for ``local`` and ``auto``; anything else
    is refused in one line (checked before any work starts)."""
    if address in ("local", "auto"):
        return None
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit():
        raise InvalidValue("address", address, "give local, auto, HOST:PORT or ray://HOST:PORT")
    return host.strip("[]"), int(port)


def _check_reachable(address: str) -> None:
    """A quick TCP connect to ``host:port`` (Ray itself waits minutes for a dead address)."""
    host_port = check_address(address)
    if host_port is None:
        return
    host, port = host_port
    try:
        socket.create_connection((host, port), timeout=REACH_TIMEOUT).close()
    except OSError as exc:
        raise BenchError(f"cannot reach a Ray cluster at {address!r}: {exc.strerror or exc}") from None


def _worker_class(ray: Any) -> Any:
    @ray.remote(max_restarts=ACTOR_RESTARTS)
    class SweepWorker:
        """Loads the model and the dataset once; runs work units through the engine."""

        def __init__(self, inputs: WorkerInputs) -> None:
            if inputs.threads:
                torch.set_num_threads(inputs.threads)
            self.inputs = inputs
            self.device = torch.device(inputs.device)
            self.model = inputs.model.to(self.device).eval()
            self.g = GraphTensors(inputs.graph)

        def pid(self) -> int:
            return os.getpid()

        def row_numerics(self, precision: str, mode: str) -> numerics.RowNumerics:
            """The numerics this worker's rows are computed under (``numerics.row_numerics``; its
            runtime_env pinned ``mode`` before torch loaded)."""
            numerics.require(mode)
            return numerics.row_numerics(self.device, precision, self.inputs.batch_size, mode)

        def run(
            self, combos: list[PlannedCombination], descendants: Tensor, done: set[ResultKey]
        ) -> Iterator[tuple[list[ResultRow], Saved, dict[str, EngineStats] | None]]:
            """Streams ``(rows, saved examples, None)`` per metrics batch, then ``([], [], slot use)``."""
            inputs = self.inputs
            queue = PairQueue(
                combos, inputs.clean, inputs.settings, done, self.g, descendants, inputs.dataset, inputs.closure
            )
            slot_use: dict[str, EngineStats] = {}
            for rows, saved, _ in attack_rows(
                queue,
                inputs.attacks,
                self.model,
                inputs.batch_size,
                inputs.max_targets,
                StageTimes(),
                slot_use,
                inputs.examples,
            ):
                yield rows, saved, None
            yield [], [], slot_use

    return SweepWorker


def run_sweep_ray(
    config: RunConfig,
    model: nn.Module,
    dataset: MultiLabelDataset,
    graph: LabelGraph,
    store: ResultStore,
    request: SweepRequest | None = None,
    *,
    address: str = "local",
    workers: int | None = None,
    cpus_per_worker: int = 1,
    units_per_worker: int = UNITS_PER_WORKER,
    progress: SweepProgress | None = None,
    times: StageTimes | None = None,
    **options: Any,
) -> SweepOutcome:
    """``run_sweep`` with the attacks spread over a Ray cluster's workers (see the module docstring).

    Args:
        request: as for ``run_sweep`` (fields also as keywords). Its ``device``: ``cuda`` puts
            one worker on each GPU of the cluster, ``cpu`` runs CPU workers; its
            ``allow_mixed_numerics`` lets workers whose numerics fingerprints differ (from each
            other or from the run's stored rows) add rows (recorded).
        address: ``local`` (start Ray here), ``auto`` (the cluster this machine belongs to) or
            a cluster address.
        workers: how many workers (default: every GPU, or the cluster's CPUs ÷ ``cpus_per_worker``).
        cpus_per_worker: cores (and torch threads) of each CPU worker.

    Each worker is started with the run's CPU-numerics environment (``bench.numerics``) and
    records its own fingerprint before its first unit; its rows carry it.
    """
    request = SweepRequest.of(request, options)
    if request.transfer:
        raise BenchError(
            "the transfer of adversarial images to other models runs in one process, not on a Ray cluster: "
            "run the sweep without Ray to add transfer targets"
        )
    if config.protocol.defense is not None:
        raise BenchError(
            "a sweep against a defended model runs in one process, not on a Ray cluster: run it without Ray"
        )
    device = torch.device(request.device)
    request = replace(request, device=device)
    ray = connect(address)
    resources = ray.cluster_resources()
    gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 0))
    if device.type == "cuda":
        if gpus == 0:
            raise InvalidValue("device", "cuda", f"the Ray cluster at {address!r} has no GPU (it has {cpus} CPUs)")
        n_workers, placement, threads = min(workers or gpus, gpus), {"num_gpus": 1}, 0
    else:
        if cpus_per_worker < 1:
            raise InvalidValue("cpus_per_worker", cpus_per_worker, "must be at least 1")
        n_workers, placement, threads = (
            workers or max(cpus // cpus_per_worker, 1),
            {"num_cpus": cpus_per_worker},
            cpus_per_worker,
        )
    env = {**child_process_env(), **numerics.mode_env(config.protocol.cpu_numerics)}
    per_worker: dict[str, Any] = {**placement, "runtime_env": {"env_vars": env}}
    with prepared_sweep(
        config, model, dataset, graph, store, request, progress=progress, times=times, record_machine=False
    ) as (prep, model):
        todo = [i for i, c in enumerate(prep.queue.combos) if prep.queue.remaining[c.combo_id] > 0]
        units = _units(todo, n_workers * units_per_worker)
        if units:
            with prep.times("workers start"):
                inputs = WorkerInputs(
                    model=copy.deepcopy(model).cpu(),
                    dataset=dataset,
                    graph=graph,
                    clean=prep.clean,
                    settings=prep.settings,
                    attacks=prep.attacks,
                    device=str(device),
                    batch_size=prep.batch_size,
                    max_targets=max(config.sizes),
                    threads=threads,
                    closure=prep.queue.closure,
                    examples=prep.examples,
                )
                driver = _Driver(
                    ray,
                    prep,
                    units,
                    inputs,
                    per_worker,
                    min(n_workers, len(units)),
                    config,
                    request.allow_mixed_numerics,
                )
            driver.run()
        return prep.outcome()


class _Driver:
    """The driver's loop: start ``n_workers`` workers from ``inputs``, hand them the units,
    write the rows that stream back, requeue the unit of a worker whose process died."""

    def __init__(
        self,
        ray,
        prep: Prepared,
        units: list[Unit],
        inputs: WorkerInputs,
        per_worker: dict[str, Any],
        n_workers: int,
        config: RunConfig,
        allow_mixed: bool,
    ) -> None:
        self.ray, self.prep, self.queue, self.units = ray, prep, prep.queue, units
        self.waiting: list[Unit] = list(units)
        self.pending: dict = {}
        self.done_by_combo: dict[int, set] = {}
        self.numerics = (config.protocol.precision, config.protocol.cpu_numerics)
        self.allow_mixed = allow_mixed
        self.machines: dict[int, str] = {}  # actor → its row_numerics_id (the rows' machine), before its first unit
        self.fingerprints: dict[str, numerics.RowNumerics] = {}  # the workers' row numerics in this sweep, by id
        worker = _worker_class(ray).options(**per_worker)
        inputs_ref = ray.put(inputs)  # one copy in the object store; every actor (and a restart) reads it
        self.actors: list = [worker.remote(inputs_ref) for _ in range(n_workers)]
        self.idle: list = list(self.actors)
        self.state = {id(a): "starting" for a in self.actors}
        self.names = {id(a): f"worker {i + 1}" for i, a in enumerate(self.actors)}
        self.rows_by = {id(a): 0 for a in self.actors}

    def show(self) -> None:
        self.prep.progress.workers([f"{self.names[k]}: {v}, {self.rows_by[k]} rows" for k, v in self.state.items()])

    def machine_of(self, actor) -> str:
        """The actor's ``row_numerics_id``, recorded with the run the first time (and after a
        restart, which may bring it up on another node); a worker of other numerics is refused there."""
        if id(actor) not in self.machines:
            try:
                fp = self.ray.get(actor.row_numerics.remote(*self.numerics))
            except self.ray.exceptions.RayTaskError as exc:
                raise _worker_error(exc, "its start") from None
            store, run_id = self.prep.store, self.prep.run_id
            machine = store.use_machine(run_id, fp, allow_mixed=self.allow_mixed, peers=self.fingerprints)
            self.machines[id(actor)], self.fingerprints[machine] = machine, fp
        return self.machines[id(actor)]

    def submit(self, actor) -> None:
        self.machine_of(actor)
        unit = self.waiting.pop(0)
        combos = [self.queue.combos[i] for i in unit.positions]
        for key in self.queue.done:  # what is stored by now (a requeued unit skips it)
            self.done_by_combo.setdefault(key.combo_id, set()).add(key)
        done = set().union(*(self.done_by_combo.get(c.combo_id, set()) for c in combos))
        stream = actor.run.options(num_returns="streaming").remote(combos, self.queue.descendants[unit.positions], done)
        self.pending[stream] = (actor, unit)
        self.state[id(actor)] = f"unit {unit.index + 1}/{len(self.units)} ({len(combos)} combinations)"
        self.show()

    def run(self) -> None:
        ray = self.ray
        while self.waiting and self.idle:
            self.submit(self.idle.pop(0))
        while self.pending:
            ready, _ = ray.wait(list(self.pending), num_returns=1)
            stream = ready[0]
            actor, unit = self.pending[stream]
            try:
                rows, saved, stats = ray.get(next(stream))
            except StopIteration:
                del self.pending[stream]
                self.next_for(actor)
                continue
            except ray.exceptions.RayTaskError as exc:
                for a in self.actors:
                    ray.kill(a, no_restart=True)  # stops the other units: the run ends here
                raise _worker_error(exc, f"work unit {unit.index}") from None
            except ray.exceptions.RayActorError as exc:
                del self.pending[stream]
                self.died(actor, unit, exc)
                continue
            for name, st in (stats or {}).items():
                self.prep.slot_use.setdefault(name, EngineStats()).add(st)
            before = self.prep.written
            self.prep.write(rows, saved, machine=self.machines[id(actor)])
            self.rows_by[id(actor)] += self.prep.written - before
            self.show()

    def next_for(self, actor) -> None:
        if self.waiting:
            self.submit(actor)
        else:
            self.idle.append(actor)
            self.state[id(actor)] = "done"
            self.show()

    def died(self, actor, unit: Unit, exc: BaseException) -> None:
        """The worker's process died: Ray restarts it (up to ACTOR_RESTARTS times) and the unit
        goes back to the queue with what is stored by now; past that, the worker is given up and
        another one takes the unit."""
        self.waiting.insert(0, unit)
        self.machines.pop(id(actor), None)
        self.state[id(actor)] = "its process died; restarting"
        self.show()
        if _alive(self.ray, actor):
            self.submit(actor)
            return
        self.state[id(actor)] = "gone"
        self.actors.remove(actor)
        if not self.actors:
            raise BenchError(f"every Ray worker died (the last: {_death(exc)}); re-run the same command to resume")
        if self.idle:
            self.submit(self.idle.pop(0))


def _units(positions: Sequence[int], n: int) -> list[Unit]:
    """``positions`` dealt into at most ``n`` units, round robin (every unit gets combinations
    of every size, so units take about the same time)."""
    n = max(min(n, len(positions)), 1) if positions else 0
    return [Unit(i, list(positions[i::n])) for i in range(n)]


def _worker_error(exc: BaseException, during: str) -> BenchError:
    """A worker's exception as the driver's one-line error."""
    cause = getattr(exc, "cause", None) or exc
    if isinstance(cause, BenchError):
        return cause.prefixed("a Ray worker stopped")
    return BenchError(f"a Ray worker failed on {during}: {type(cause).__name__}: {cause}")


def _death(exc: BaseException) -> str:
    """Why an actor died, in one line (Ray's message spans many)."""
    text = " ".join(str(exc).split())
    return text[:300] + ("…" if len(text) > 300 else "")


def _alive(ray, actor) -> bool:
    """Whether Ray brought the actor back after its process died."""
    try:
        ray.get(actor.pid.remote(), timeout=RESTART_WAIT)
        return True
    except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
        return False
