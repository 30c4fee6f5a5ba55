"""Neo4j going away under ``bench kg load`` and ``bench run`` (issue 21): one line and a
non-zero exit, or a retry that the driver's managed transactions make safe; never a
traceback, never a half-loaded graph (node and edge counts and the content's sha256 read back
with ``GraphStore.content``), and a resumed sweep stores exactly the rows of an uninterrupted
one. Every scenario runs against one throwaway server of this module's own (``neo4j/server``,
``tests/neo4j_fixtures.py``), never the one ``NEO4J_URI`` names, since they kill it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from bench.cli import error_message  # (registers every command)
from bench.cli.apps import app
from bench.errors import BenchError
from bench.sweep import prepare as sweep_runner
from kg.graph import LabelGraph
from kg.stores import open_store
from tests.neo4j_fixtures import ROOT, ThrowawayServer, free_ports
from tests.sweep_fixtures import NAME, save_toy_model

pytestmark = pytest.mark.neo4j

SWEEP = f"run -d {NAME} -m toy-model --attack mla-u --size 1 --iterations 3 --eps 0.06 --quiet".split()
ROW_SQL = "SELECT * EXCLUDE (seconds) FROM results ORDER BY combo_id, image_id, attack, eps, tau"
BIG = "faults_big"
runner = CliRunner()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """This module's server; stopped whatever happens, leaving no process behind."""
    s = ThrowawayServer(tmp_path_factory.mktemp("neo4j-faults") / "home")
    try:
        s.start()
        yield s
    finally:
        s.stop()
        assert not s.processes(), "no server process left behind"


@pytest.fixture
def on(server, monkeypatch):
    """This process talks to the module's server."""
    for key, value in server.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("NEO4J_DATABASE", raising=False)
    return server


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The toy sweep uninterrupted (on Ladybug): the rows every interrupted one must end with."""
    save_toy_model()
    folder = tmp_path_factory.mktemp("reference")
    done = invoke(*SWEEP, "--db", str(folder / "r.duckdb"), "--graph-db", str(folder / "g.lbug"))
    assert done.exit_code == 0, done.output
    return rows(folder / "r.duckdb")


def invoke(*args: str):
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


def rows(db: Path) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(ROW_SQL).fetchall()
    finally:
        con.close()


def bench(*args: str, env: dict[str, str]) -> subprocess.Popen:
    """``bench ARGS`` in a process of its own (its stderr is what a user sees)."""
    return subprocess.Popen(
        [sys.executable, "-c", "from bench.cli import main; main()", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200", **env},
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), f"one line on stderr, no traceback: {err!r}"
    return lines[0]


def big_graph(n: int = 5000) -> LabelGraph:
    """A 4-ary tree of ``n`` nodes (the root last, depth 6), the first half labels: a load that
    takes long enough on Neo4j to kill the server in the middle of it."""
    edges = [(n - 1 - (q - 1) // 4, n - 1 - q) for q in range(1, n)]
    nodes = tuple(f"node{i:05d}" for i in range(n))
    return LabelGraph(BIG, nodes, tuple(edges), n // 2, ids=tuple(f"id{i}" for i in range(n)))


def test_a_stopped_server_before_kg_load_is_one_line(on):
    """``bench kg load`` with the server stopped (nothing listens on its port): one line, exit 2."""
    (dead,) = free_ports(1)
    gone = f"bolt://127.0.0.1:{dead}"
    load = bench("kg", "load", "-g", "stamps", "--graph-store", "neo4j", env={**on.env, "NEO4J_URI": gone})
    out, err = load.communicate(timeout=120)
    assert load.returncode == 2, f"exit 2: {load.returncode} {out} {err}"
    assert one_error_line(err).startswith(f"error: cannot reach Neo4j at {gone}: "), err
    assert on.password not in err, "never the password"


def test_a_server_killed_during_kg_load_leaves_no_half_loaded_graph(on, tmp_path):
    """SIGKILL the JVM while ``bench kg load`` writes a 5,000-node graph, then restart it:
    the load either finishes on the driver's retry or says one line and exits 2; the graph is
    then absent or whole, and ``bench kg load`` again stores it whole."""
    graph = big_graph()
    path = graph.save(tmp_path / f"{BIG}.json")
    with open_store("neo4j") as watcher:
        load = bench("kg", "load", "-g", str(path), "--graph-store", "neo4j", env=on.env)
        deadline = time.monotonic() + 120
        while not any("$nodes" in q or "$edges" in q for q in running_queries(watcher)):
            assert load.poll() is None, f"the load ended before it could be interrupted: {load.communicate()}"
            assert time.monotonic() < deadline, "the load did not start writing within 2 minutes"
            time.sleep(0.02)
        on.kill()
    try:
        on.start()  # while the load's driver retries its transaction (for 30 s)
        out, err = load.communicate(timeout=120)
    finally:
        if load.poll() is None:
            load.kill()
    if load.returncode == 0:
        assert BIG in out and not err.strip(), f"a retry after the restart stored it, quietly: {out} {err}"
    else:
        assert load.returncode == 2, f"exit 2: {load.returncode} {out} {err}"
        one_error_line(err)
    with open_store("neo4j") as store:
        content, record = store.content(BIG), store.graphs().get(BIG)
        if record is None:
            assert content.n_nodes == content.n_edges == 0, f"nothing half-loaded: {content}"
        else:
            assert content.matches(record) and content.sha256 == graph.sha256, f"whole: {content} vs {record}"
    again = invoke("kg", "load", "-g", str(path), "--graph-store", "neo4j")
    assert again.exit_code == 0, again.output
    with open_store("neo4j") as store:
        content = store.content(BIG)
        assert (content.n_nodes, content.n_edges, content.sha256) == (graph.n, len(graph.edges), graph.sha256)
        assert content.matches(store.graphs()[BIG]), "the record and the content agree"


def test_a_sweep_with_the_server_gone_is_one_line_and_resumes_to_an_uninterrupted_runs_rows(
    on, reference, tmp_path, monkeypatch
):
    """``bench run`` asks the graph store once, before any attack. The server stopped by then:
    one line, no row stored. Run again once the server is back, with the server killed right
    after that step (restarted or not, the sweep never asks again): it finishes, and its rows
    are exactly an uninterrupted run's, none twice."""
    (dead,) = free_ports(1)
    gone = f"bolt://127.0.0.1:{dead}"
    db = tmp_path / "r.duckdb"
    monkeypatch.setenv("NEO4J_URI", gone)
    failed = invoke(*SWEEP, "--db", str(db), "--graph-store", "neo4j")
    assert isinstance(failed.exception, BenchError), failed.output
    message = error_message(failed.exception)
    assert message.startswith(f"cannot reach Neo4j at {gone}: ") and "\n" not in message, message
    assert rows(db) == [], "no row stored"

    monkeypatch.setenv("NEO4J_URI", on.uri)  # the server is back
    original = sweep_runner.closure_masks

    def then_kill(*args, **kwargs):
        masks = original(*args, **kwargs)
        on.kill()
        return masks

    monkeypatch.setattr(sweep_runner, "closure_masks", then_kill)
    resumed = invoke(*SWEEP, "--db", str(db), "--graph-store", "neo4j")
    assert resumed.exit_code == 0, resumed.output
    assert on.pid() is None, "the server was killed during the sweep"
    assert rows(db) == reference, "the resumed run's rows equal an uninterrupted run's, none twice"


def running_queries(store) -> list[str]:
    return [r["q"] for r in store.query("SHOW TRANSACTIONS YIELD currentQuery AS q RETURN q")]
