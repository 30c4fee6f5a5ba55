"""``bench kg load | closure | query`` and ``bench perf kg`` end to end (CliRunner, and the real
entry point in a subprocess for the one-line errors). Ψ is checked against a recursive
reference written here from the definition (docs/knowledge-graphs.md, Closures)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

import bench.cli  # noqa: F401  registers every command
from bench.cli import error_message
from bench.cli.apps import app
from bench.errors import BenchError
from kg.catalog import PACKAGED, graph_names, load_graph, user_graph_dir
from kg.graph import LabelGraph
from kg.stores import open_store

runner = CliRunner()


def toy(extra_edge: bool = False) -> LabelGraph:
    nodes = ("cat", "dog", "person", "feline", "canine", "carnivore", "animal")
    edges = [(3, 0), (4, 1), (5, 3), (5, 4), (6, 5), (6, 2)] + ([(3, 1)] if extra_edge else [])
    return LabelGraph("toycli", nodes, tuple(edges), 3)


@pytest.fixture()
def db(tmp_path, monkeypatch):
    """A private data directory holding the toy graph (as a user's graph), and a store path."""
    monkeypatch.setenv("BENCH_DATA", str(tmp_path / "data"))
    toy().save(user_graph_dir() / "toycli.json")
    return tmp_path / "cli.lbug"


def invoke(*args: str):
    return runner.invoke(app, list(args))


def ok(*args: str) -> str:
    result = invoke(*args)
    assert result.exit_code == 0, f"bench {' '.join(args)} failed: {result.exception!r}\n{result.output}"
    return result.output


def fails(match: str, *args: str) -> None:
    result = invoke(*args)
    assert result.exit_code != 0, f"bench {' '.join(args)} should fail\n{result.output}"
    assert isinstance(result.exception, BenchError), f"bench {' '.join(args)}: {result.exception!r}, not a BenchError"
    assert re.search(match, error_message(result.exception)), (
        f"bench {' '.join(args)}: message {result.exception} lacks {match!r}"
    )
    assert "\n" not in error_message(result.exception), f"multi-line message: {result.exception}"


def stored(db) -> dict[str, str]:
    with open_store("ladybug", path=db) as s:
        return {name: g.sha256 for name, g in s.graphs().items()}


def reference_turn_off(graph: LabelGraph, pred: set[int], targets: set[int]) -> set[int]:
    """Ψ from the definition: Ω, its positive descendants, then each positive ancestor left
    without a positive child outside Ψ, repeated upwards."""
    psi = set(targets) | {d for t in targets for d in graph.descendants(t) if d in pred}
    candidates = {a for t in targets for a in graph.ancestors(t) if a in pred and graph.children(a)}
    grew = True
    while grew:
        grew = False
        for a in sorted(candidates - psi):
            if all(c in psi or c not in pred for c in graph.children(a)):
                psi.add(a)
                grew = True
    return psi


def printed_psi(output: str) -> set[str]:
    match = re.search(r"\|Ψ\| = (\d+): (.*)", output)
    assert match, f"no Ψ line in\n{output}"
    names = {x.strip() for x in match.group(2).split(",") if x.strip()}
    assert len(names) == int(match.group(1)), f"|Ψ| {match.group(1)} but {len(names)} names printed"
    return names


# ------------------------------------------------------------------------- load
def test_load_is_idempotent_and_a_changed_graph_replaces_its_copy(db):
    assert "loaded" in ok("kg", "load", "--graph", "toycli", "--graph-db", str(db)), "first load"
    assert "unchanged" in ok("kg", "load", "--graph", "toycli", "--graph-db", str(db)), "second load"
    assert stored(db) == {"toycli": toy().sha256}, f"stored graphs {stored(db)}"
    toy(extra_edge=True).save(user_graph_dir() / "toycli.json")
    assert "replaced" in ok("kg", "load", "--graph", "toycli", "--graph-db", str(db)), "changed graph"
    assert stored(db) == {"toycli": toy(extra_edge=True).sha256}, f"stored graphs {stored(db)}"


def test_load_all_stores_every_catalog_graph_side_by_side(db):
    ok("kg", "load", "--graph-db", str(db))
    expected = {name: load_graph(name).sha256 for name in graph_names()}
    assert stored(db) == expected, f"stored {sorted(stored(db))}, catalog {sorted(expected)}"


def test_bad_input_gives_one_line_and_leaves_the_store_as_it_was(db):
    ok("kg", "load", "--graph", "toycli", "--graph-db", str(db))
    before = stored(db)
    fails(r"unknown graph 'nosuch'", "kg", "load", "--graph", "toycli,nosuch", "--graph-db", str(db))
    fails(
        r"unknown graph 'toycl' \(did you mean 'toycli'",
        "kg",
        "closure",
        "--graph",
        "toycl",
        "--targets",
        "cat",
        "--graph-db",
        str(db),
    )
    fails(
        r"unknown label in graph 'toycli': 'cta'",
        "kg",
        "closure",
        "--graph",
        "toycli",
        "--targets",
        "cta",
        "--graph-db",
        str(db),
    )
    fails(
        r"target 'cat' is not positive",
        "kg",
        "closure",
        "--graph",
        "toycli",
        "--targets",
        "cat",
        "--positive",
        "dog",
        "--graph-db",
        str(db),
    )
    fails(
        r"target 'cat' is already positive",
        "kg",
        "closure",
        "--graph",
        "toycli",
        "--targets",
        "cat",
        "--positive",
        "cat",
        "--turn-on",
        "--graph-db",
        str(db),
    )
    fails(r"--targets is empty", "kg", "closure", "--graph", "toycli", "--targets", ",", "--graph-db", str(db))
    fails(r"unknown graph store 'ladybugs' \(did you mean 'ladybug'", "kg", "load", "--graph-store", "ladybugs")
    fails(r"--graph-db names a Ladybug file", "kg", "load", "--graph-store", "neo4j", "--graph-db", str(db))
    fails(
        r"Cypher error \(Ladybug\): .*read-only",
        "kg",
        "query",
        "MATCH (n:Label) DETACH DELETE n",
        "--graph-db",
        str(db),
    )
    fails(r"Cypher error \(Ladybug\): Binder exception", "kg", "query", "MATCH (n) RETURN m", "--graph-db", str(db))
    fails(r"--param 'g' is not NAME=VALUE", "kg", "query", "RETURN 1", "-p", "g", "--graph-db", str(db))
    assert stored(db) == before, f"a failed command changed the store: {stored(db)} != {before}"
    with open_store("ladybug", path=db) as s:
        assert s.query("MATCH (n:Label) RETURN count(n) AS n")[0]["n"] == toy().n, "nodes changed"


def test_entry_point_prints_one_line_without_traceback(db, tmp_path):
    env = {**os.environ, "NEO4J_URI": "bolt://127.0.0.1:1", "NEO4J_PASSWORD": "s3cret-pw", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from bench.cli import main; main()",
            "kg",
            "load",
            "--graph-store",
            "neo4j",
            "--graph",
            "toycli",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, f"exit {proc.returncode}, stderr {proc.stderr}"
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot reach Neo4j at bolt://127.0.0.1:1"), (
        f"stderr: {proc.stderr}"
    )
    assert "Traceback" not in proc.stderr and "s3cret-pw" not in proc.stderr + proc.stdout, f"stderr: {proc.stderr}"


# ---------------------------------------------------------------------- closure
@pytest.mark.parametrize(
    ("targets", "positive"),
    [
        ("cat", None),
        ("cat", "cat,dog"),
        ("cat,dog", None),
        ("cat,dog", "cat,dog,person"),
        ("carnivore", "cat,person"),
        ("feline", "cat"),
    ],
)
def test_closure_prints_the_reference_psi_and_the_cypher(db, targets, positive):
    graph = toy()
    args = ["kg", "closure", "--graph", "toycli", "--targets", targets, "--graph-db", str(db)]
    output = ok(*args, *(["--positive", positive] if positive else []))
    t = set(graph.indices(targets.split(",")))
    if positive is None:  # the largest Ψ: the targets with all their ancestors and descendants
        pred = t | {x for i in t for x in graph.ancestors(i) | graph.descendants(i)}
    else:  # the given labels and their ancestors
        pred = {x for i in graph.indices(positive.split(",")) for x in graph.ancestors(i) | {i}}
    expected = {graph.nodes[i] for i in reference_turn_off(graph, pred, t)}
    assert printed_psi(output) == expected, f"Ψ for targets {targets}, positive {positive}:\n{output}"
    assert "IS_A*1..30" in output and "Cypher: ancestors (ladybug)" in output, (
        f"the Cypher used is not shown:\n{output}"
    )
    assert f"$labels = {targets.split(',')!r}" in output, f"the parameters are not shown:\n{output}"


def test_closure_only_reads_the_store(tmp_path, monkeypatch):
    """A graph the store lacks is answered from its file in a temporary store, and said; no store
    file is created, and a stored copy is neither loaded nor replaced."""
    monkeypatch.setenv("BENCH_DATA", str(tmp_path / "data"))
    first = ok("kg", "closure", "--graph", "voc", "--targets", "cat")
    assert "no graph store at" in first and "answered from the graph file" in first, first
    assert not (tmp_path / "data").exists(), "kg closure created files"
    db = tmp_path / "g.lbug"
    with open_store("ladybug", path=db) as s:
        s.load(toy())
    second = ok("kg", "closure", "--graph", "voc", "--targets", "cat", "--graph-db", str(db))
    assert "'voc' is not in the Ladybug database" in second, second
    assert printed_psi(second) == printed_psi(first), "the same Ψ either way"
    with open_store("ladybug", path=db) as s:
        assert list(s.graphs()) == [toy().name], "voc was not loaded into the store"


def test_closure_turn_on_adds_one_path_up(db):
    # cat is a leaf: switching it on from nothing needs feline, carnivore and animal.
    assert printed_psi(
        ok("kg", "closure", "--graph", "toycli", "--targets", "cat", "--turn-on", "--graph-db", str(db))
    ) == {"cat", "feline", "carnivore", "animal"}, "turn-on Ψ of cat"
    # with person positive, animal is on already: the path stops below it.
    output = ok(
        "kg",
        "closure",
        "--graph",
        "toycli",
        "--targets",
        "cat",
        "--turn-on",
        "--positive",
        "person",
        "--graph-db",
        str(db),
    )
    assert printed_psi(output) == {"cat", "feline", "carnivore"}, f"turn-on Ψ of cat with person positive:\n{output}"


def test_closure_on_voc_matches_the_reference(db):
    if not (PACKAGED / "voc.json").exists():
        pytest.skip("kg/graphs/voc.json is not built yet")
    graph = load_graph("voc")
    output = ok(
        "kg",
        "closure",
        "--graph",
        "voc",
        "--targets",
        "cat,dog",
        "--positive",
        "cat,dog,person,sofa",
        "--graph-db",
        str(db),
    )
    t = set(graph.indices(["cat", "dog"]))
    pred = {x for i in graph.indices(["cat", "dog", "person", "sofa"]) for x in graph.ancestors(i) | {i}}
    expected = {graph.nodes[i] for i in reference_turn_off(graph, pred, t)}
    assert printed_psi(output) == expected, f"VOC Ψ of cat,dog:\n{output}"


# ------------------------------------------------------------------ query, perf
def test_query_prints_rows_with_parameters(db):
    ok("kg", "load", "--graph", "toycli", "--graph-db", str(db))
    output = ok(
        "kg",
        "query",
        "MATCH (n:Label) WHERE n.graph = $g AND n.idx < $k RETURN n.name AS name ORDER BY n.idx",
        "-p",
        "g=toycli",
        "-p",
        "k=2",
        "--graph-db",
        str(db),
    )
    assert '"cat"' in output and '"dog"' in output and '"person"' not in output, f"query rows:\n{output}"
    assert "2 rows" in output, f"row count:\n{output}"


def test_perf_kg_times_both_methods_and_checks_they_agree(db):
    output = ok("perf", "kg", "--graph", "synthetic", "--size", "2", "--repeats", "1")
    assert "190 combinations of 2 of the 20 labels" in output, f"perf header:\n{output}"
    assert re.search(r"ratio [\d,.]+×", output) and "identical answers" in output, f"perf result:\n{output}"
    fails(
        r"--size 4: must be between 1 and the 3 labels",
        "perf",
        "kg",
        "--graph",
        str(user_graph_dir() / "toycli.json"),
        "--size",
        "4",
    )


def test_query_rows_as_json(db):
    import json

    ok("kg", "load", "--graph", "toycli", "--graph-db", str(db))
    out = ok(
        "kg",
        "query",
        "MATCH (n:Label) WHERE n.graph = $g RETURN n.name AS name, n.idx AS idx ORDER BY idx",
        "-p",
        "g=toycli",
        "--graph-db",
        str(db),
        "--format",
        "json",
    )
    graph = toy()
    assert json.loads(out) == [{"name": x, "idx": i} for i, x in enumerate(graph.nodes)], out


def test_an_unexpected_error_is_one_line_naming_its_traceback_file(monkeypatch, capsys):
    import re

    import bench.cli.kg_graphs

    def broken(name):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(bench.cli.kg_graphs, "load_graph", broken)
    monkeypatch.setattr(sys, "argv", ["bench", "kg", "show", "cat", "--graph", "voc"])
    with pytest.raises(SystemExit) as exit_info:
        bench.cli.main()
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert exit_info.value.code == 1 and len(lines) == 1 and "Traceback" not in err, err
    assert "internal error, RuntimeError: boom (traceback: " in lines[0] and "--debug prints it" in lines[0], err
    log = re.search(r"traceback: (\S+\.log);", lines[0]).group(1)
    text = open(log, encoding="utf-8").read()
    assert "bench kg show cat --graph voc" in text and "Traceback" in text and "second line" in text, text
    monkeypatch.setattr(sys, "argv", ["bench", "--debug", "kg", "show", "cat", "--graph", "voc"])
    with pytest.raises(RuntimeError, match="boom"):
        bench.cli.main()
