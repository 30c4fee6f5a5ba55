"""Sweeps on a local Ray cluster started by the tests (2 CPUs, 2 workers): the same rows and
tables as one process, a worker killed mid-run, a driver that dies and a re-run that resumes,
a worker that raises, and the bad input that never reaches a cluster."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest
import torch

ray = pytest.importorskip(
    "ray", reason="the optional extra 'ray' is not installed (pip install 'semattack-bench[ray]')"
)

from bench.cli import error_message  # noqa: E402
from bench.errors import BenchError  # noqa: E402
from bench.sweep.cluster import connect, import_ray, run_sweep_ray  # noqa: E402
from results.store import ResultStore  # noqa: E402
from tests.sweep_fixtures import ToyDataset, ToyNet, toy_graph  # noqa: E402
from tests.test_sweep_runner import ROW_SQL, SUMMARY_SQL, CrashingStore, fetch, rounded, toy_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A Ray instance on this machine only, without the token file under ~/.ray."""
    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE",)}
    os.environ["RAY_AUTH_MODE"] = "disabled"
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        _node_ip_address="127.0.0.1",
        _temp_dir=str(tmp_path_factory.mktemp("ray")),
        runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}},
    )
    yield
    ray.shutdown()
    for k, v in saved.items():
        os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """The reference: the same sweep in one process."""
    from bench.sweep.runner import run_sweep

    graph = toy_graph()
    path = tmp_path_factory.mktemp("single") / "single.duckdb"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers' threads (--ray-cpus 1): the contract holds per thread count
    try:
        run_sweep(
            toy_config(), ToyNet(graph.n).eval(), ToyDataset("test", graph), graph, ResultStore(path), batch_size=8
        )
    finally:
        torch.set_num_threads(threads)
    return path


def on_ray(path, store=None, dataset=None, **kw):
    graph = toy_graph()
    return run_sweep_ray(
        toy_config(),
        ToyNet(graph.n).eval(),
        dataset or ToyDataset("test", graph),
        graph,
        store or ResultStore(path),
        address="local",
        batch_size=8,
        workers=2,
        **kw,
    )


def test_ray_gives_the_rows_and_tables_of_one_process(cluster, single, tmp_path):
    outcome = on_ray(tmp_path / "ray.duckdb")
    assert outcome.finished and outcome.written == outcome.pairs, "every planned row written once"
    assert fetch(tmp_path / "ray.duckdb", ROW_SQL) == fetch(single, ROW_SQL), "Ray rows equal one process's, bitwise"
    assert rounded(fetch(tmp_path / "ray.duckdb", SUMMARY_SQL)) == rounded(fetch(single, SUMMARY_SQL)), "same tables"
    assert {"ml-dp", "mla-lp"} <= {r[0] for r in fetch(single, "SELECT DISTINCT attack FROM results")}, (
        "ML-DP and MLA-LP included"
    )
    assert fetch(tmp_path / "ray.duckdb", "SELECT count(*) FROM combinations WHERE NOT complete")[0][0] == 0, (
        "all complete"
    )


def worker_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cmdline").read_bytes().startswith(b"ray::SweepWorker"):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


class KillingStore(ResultStore):
    """Kills one worker process (SIGKILL) when the first rows arrive, while the other units run."""

    killed: list[int] = []

    def write_rows(self, run_id, rows, complete=(), artifacts=()):
        if rows and not self.killed:
            pids = worker_pids()
            if pids:
                os.kill(pids[0], signal.SIGKILL)
                self.killed.append(pids[0])
        return super().write_rows(run_id, rows, complete, artifacts)


def test_a_worker_killed_mid_run_loses_nothing(cluster, single, tmp_path):
    store = KillingStore(tmp_path / "killed.duckdb")
    outcome = on_ray(tmp_path / "killed.duckdb", store=store, units_per_worker=6)
    assert store.killed, "a worker process was killed"
    assert outcome.finished, "the run finished"
    assert fetch(tmp_path / "killed.duckdb", ROW_SQL) == fetch(single, ROW_SQL), "same rows, none lost or duplicated"


def test_a_dead_driver_resumes_to_the_same_rows(cluster, single, tmp_path):
    file = tmp_path / "driver.duckdb"
    with pytest.raises(KeyboardInterrupt):
        on_ray(file, store=CrashingStore(file, crash_at=2))
    partial = fetch(file, "SELECT count(*) FROM results")[0][0]
    assert 0 < partial, "the driver died after writing some rows"
    resumed = on_ray(file)
    assert resumed.resumed == partial and resumed.finished, "the re-run computes only what is missing"
    assert fetch(file, ROW_SQL) == fetch(single, ROW_SQL), "resumed rows equal one process's"


class BrokenOnWorkers(ToyDataset):
    """Decodes on the driver; on a worker (after unpickling) one image is corrupt."""

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.broken = True

    def __getitem__(self, index):
        if getattr(self, "broken", False) and index == 5:
            raise BenchError(f"image {self.image_id(index)} is corrupt")
        return super().__getitem__(index)


def test_a_worker_that_raises_stops_the_run_with_its_one_line_and_keeps_the_rows(cluster, single, tmp_path):
    file = tmp_path / "broken.duckdb"
    with pytest.raises(BenchError, match=r"^a Ray worker stopped: image toy/test/0005 is corrupt$"):
        on_ray(file, dataset=BrokenOnWorkers("test", toy_graph()), units_per_worker=6)
    stored = fetch(file, ROW_SQL)
    reference = set(fetch(single, ROW_SQL))
    assert all(row in reference for row in stored), "the rows written before the error are kept, and correct"


def test_bad_input_never_reaches_a_cluster(cluster, tmp_path, monkeypatch):
    with pytest.raises(BenchError, match="`device` 'cuda': the Ray cluster at 'local' has no GPU"):
        on_ray(tmp_path / "gpu.duckdb", device="cuda")
    assert (
        not (tmp_path / "gpu.duckdb").exists() or fetch(tmp_path / "gpu.duckdb", "SELECT count(*) FROM runs")[0][0] == 0
    )
    with pytest.raises(BenchError, match=r"cannot reach a Ray cluster at '127.0.0.1:9': Connection refused"):
        connect("127.0.0.1:9")  # a port nobody listens on: one line at once, no cluster joined
    with pytest.raises(BenchError, match=r"`address` 'nowhere': give local, auto, HOST:PORT") as raised:
        connect("nowhere")
    assert error_message(raised.value).startswith("--ray 'nowhere': give local"), "the CLI names --ray"
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(BenchError, match=r"sweeps on Ray need the optional extra 'ray'"):
        import_ray()
    with pytest.raises(BenchError, match=r"sweeps on Ray need"):
        connect("local")
