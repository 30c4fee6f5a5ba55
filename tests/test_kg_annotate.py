"""``bench kg annotate``: a run's per-label numbers on the graph store's nodes equal a
brute-force count over the stored rows, and the SQL view ``label_rates`` equals it too; runs
are keyed (annotating one leaves another's numbers alone, annotating again stores no
duplicates); ``bench kg view --run`` colours the nodes by them. On Ladybug always, on Neo4j
with a server (tests/conftest.py)."""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
from collections import defaultdict

import numpy as np
import pytest
from typer.testing import CliRunner

import bench.cli  # noqa: F401  (registers every command)
from bench.cli import error_message
from bench.cli.apps import app
from bench.errors import BenchError
from kg.catalog import load_graph
from kg.stores import open_store
from results.annotate import annotate
from results.schema import Combination, ResultRow
from results.store import ResultStore, read_results
from tests.results_fixtures import config

PREFIX = "semattack_test_"
KINDS = ["ladybug", pytest.param("neo4j", marks=pytest.mark.neo4j)]
SETTINGS = [("mla-u", 0.01, -0.85), ("gmla", 0.01, -0.85), ("gmla", 0.01, 0.0)]


def synthetic_run(graph, seed: int) -> tuple[list[Combination], list[ResultRow]]:
    """Random combinations of 1-2 dataset labels, rows for every setting, flipped labels drawn
    from outside Ω on successful rows (the runner's rule)."""
    rng = np.random.default_rng(seed)
    labels = list(graph.nodes[: graph.n_labels])
    pool = [c for k in (1, 2) for c in itertools.combinations(labels, k)]
    picked = [pool[i] for i in rng.choice(len(pool), size=12, replace=False)]
    combos, rows = [], []
    for combo_id, omega in enumerate(picked):
        combos.append(Combination(combo_id, omega, 4, 3))
        others = [x for x in graph.nodes if x not in omega]
        for attack, eps, tau in SETTINGS:
            p = rng.uniform(0.1, 0.95)
            for image in range(3):
                ok = bool(rng.random() < p)
                flipped = tuple(rng.choice(others, size=int(rng.integers(0, 4)), replace=False)) if ok else ()
                rows.append(
                    ResultRow(
                        combo_id=combo_id,
                        image_id=f"im{image}",
                        attack=attack,
                        eps=eps,
                        tau=tau,
                        success=ok,
                        consistent=ok and bool(rng.random() < 0.7),
                        ntr_share=len(flipped) / len(others) if ok else 0.0,
                        success_iteration=7,
                        linf=eps,
                        l2=1.0,
                        seconds=0.1,
                        ssim=0.95 if ok else None,
                        flipped=tuple(str(x) for x in flipped),
                    )
                )
    return combos, rows


def reference(graph, combos: list[Combination], rows: list[ResultRow]) -> dict[tuple, dict]:
    """The numbers per (attack, ε, τ, label), counted row by row."""
    omega = {c.combo_id: set(c.labels) for c in combos}
    by_setting = defaultdict(list)
    for r in rows:
        by_setting[r.attack, r.eps, r.tau].append(r)
    out = {}
    for (attack, eps, tau), mine in by_setting.items():
        all_flips = sum(len(r.flipped) for r in mine)
        for label in graph.nodes:
            targeted = [r for r in mine if label in omega[r.combo_id]]
            flips = sum(label in r.flipped for r in mine)
            nt_pairs = len(mine) - len(targeted)
            fr_n = sum(r.success for r in targeted) / len(targeted) if targeted else None
            out[attack, eps, tau, label] = {
                "pairs": len(targeted),
                "fr_n": fr_n,
                "fr_s": sum(r.consistent for r in targeted) / len(targeted) if targeted else None,
                "nt_pairs": nt_pairs,
                "nt_flips": flips,
                "nt_rate": flips / nt_pairs if nt_pairs else None,
                "nt_share": flips / all_flips if all_flips else None,
                "band": "Untargeted"
                if not targeted
                else "Fragile"
                if 3 * fr_n >= 2
                else "Contested"
                if 3 * fr_n >= 1
                else "Robust",
            }
    return out


def same(a, b) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15) if isinstance(a, float) or isinstance(b, float) else a == b


def check_equal(got: dict[tuple, dict], expected: dict[tuple, dict], what: str) -> None:
    assert set(got) == set(expected), f"{what}: keys differ: {sorted(set(got) ^ set(expected))[:5]}"
    for key, numbers in expected.items():
        for name, value in numbers.items():
            assert same(got[key][name], value), f"{what}: {name} of {key}: {got[key][name]!r}, by counting {value!r}"


def keyed(rows) -> dict[tuple, dict]:
    return {(r["attack"], r["eps"], r["tau"], r["label"]): r for r in rows}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Two runs on a renamed VOC graph in one results file, and their reference numbers."""
    graph = dataclasses.replace(load_graph("voc"), name=PREFIX + "annotate_voc")
    store = ResultStore(tmp_path_factory.mktemp("annotate") / "r.duckdb")
    runs = {}
    for seed in (1, 2):
        combos, rows = synthetic_run(graph, seed)
        cfg = config(graph_name=graph.name, graph_sha256=graph.sha256, seed=seed, attacks=("mla-u", "gmla"))
        run = store.begin_run(cfg)
        store.write_combinations(run, combos)
        store.write_rows(run, rows, complete=[c.combo_id for c in combos])
        runs[run] = reference(graph, combos, rows)
    return graph, store, runs


@pytest.fixture(scope="module", params=KINDS)
def graph_store(request, tmp_path_factory, results):
    graph = results[0]
    options = {"path": tmp_path_factory.mktemp("ladybug") / "graphs.lbug"} if request.param == "ladybug" else {}
    with open_store(request.param, **options) as s:
        s.load(graph)
        yield s
        s.drop(graph.name)


def test_label_rates_view_equals_counting(results):
    graph, store, runs = results
    for run, expected in runs.items():
        with read_results(store.path) as con:
            view = keyed(
                dict(zip([d[0] for d in con.description], row))
                for row in con.execute("SELECT * FROM label_rates WHERE run_id = ?", [run]).fetchall()
            )
        listed = {k: v for k, v in expected.items() if v["pairs"] or v["nt_flips"]}
        check_equal(
            {k: view[k] for k in view},
            {k: {n: v[n] for n in v if n != "band"} for k, v in listed.items()},
            "label_rates",
        )


def test_annotations_equal_counting_and_runs_stay_apart(results, graph_store):
    graph, store, runs = results
    first, second = runs
    with read_results(store.path) as con:
        done = annotate(graph_store, con, first)
        assert done.graph_status == "present" and len(done.outcomes) == len(SETTINGS) * graph.n, done.graph_status
        check_equal(keyed(graph_store.outcomes(graph.name, first)), runs[first], f"{first} on the store")
        annotate(graph_store, con, second)
        annotate(graph_store, con, first)  # again: replaces its own outcomes, stores no second copy
    for run, expected in runs.items():
        check_equal(keyed(graph_store.outcomes(graph.name, run)), expected, f"{run} after both annotations")
    total = graph_store.query(
        "MATCH (o:Outcome)-[:OUTCOME_OF]->(l:Label) WHERE o.graph = $g RETURN count(o) AS n", {"g": graph.name}
    )
    assert total == [{"n": 2 * len(SETTINGS) * graph.n}], f"outcomes stored once per run: {total}"
    assert sorted(graph_store.annotated_graphs(first)) == [graph.name]


@pytest.mark.neo4j
def test_neo4j_outcomes_carry_their_band_as_a_label(results):
    graph, store, runs = results
    run = next(iter(runs))
    with open_store("neo4j") as s, read_results(store.path) as con:
        s.load(graph)
        try:
            annotate(s, con, run)
            rows = s.query(
                "MATCH (o:Outcome) WHERE o.graph = $g AND o.run_id = $r RETURN o.band AS band, labels(o) AS labels",
                {"g": graph.name, "r": run},
            )
        finally:
            s.drop(graph.name)
    assert rows and all(sorted(r["labels"]) == sorted(["Outcome", r["band"]]) for r in rows), rows[:3]
    counts = {b: sum(r["band"] == b for r in rows) for b in {r["band"] for r in rows}}
    expected = defaultdict(int)
    for numbers in runs[run].values():
        expected[numbers["band"]] += 1
    assert counts == dict(expected), f"bands on Neo4j {counts}, by counting {dict(expected)}"


def test_a_graph_replaced_or_dropped_takes_its_outcomes_along(results, tmp_path):
    graph, store, runs = results
    run = next(iter(runs))
    with open_store("ladybug", path=tmp_path / "g.lbug") as s, read_results(store.path) as con:
        s.load(graph)
        annotate(s, con, run)
        changed = dataclasses.replace(graph, edges=graph.edges[:-1])
        assert s.load(changed) == "replaced"
        assert s.outcomes(graph.name, run) == [], "outcomes of the replaced graph's nodes are gone"
        with pytest.raises(BenchError, match="is not the graph run .* was computed on"):
            annotate(s, con, run)
        s.drop(graph.name)
        assert s.query("MATCH (o:Outcome) RETURN count(o) AS n") == [{"n": 0}]


def test_bad_runs_give_one_line(results, tmp_path):
    graph, store, runs = results
    with open_store("ladybug", path=tmp_path / "g.lbug") as s, read_results(store.path) as con:
        with pytest.raises(BenchError, match="unknown run 'nope'"):
            annotate(s, con, "nope")
        with pytest.raises(BenchError, match="neither .* nor the catalog holds"):
            annotate(s, con, next(iter(runs)))  # renamed graph: not stored, not in the catalog
    empty = ResultStore(tmp_path / "empty.duckdb")
    run = empty.begin_run(config(graph_name="voc", graph_sha256=load_graph("voc").sha256))
    with open_store("ladybug", path=tmp_path / "g.lbug") as s, read_results(empty.path) as con:
        with pytest.raises(BenchError, match="has no result rows yet"):
            annotate(s, con, run)


def test_cli_annotates_and_view_colours_by_band(tmp_path):
    """On the packaged VOC graph, loaded from the catalog by annotate itself."""
    graph = load_graph("voc")
    combos, rows = synthetic_run(graph, 3)
    db = ResultStore(tmp_path / "r.duckdb")
    run = db.begin_run(config(graph_name="voc", graph_sha256=graph.sha256, attacks=("mla-u", "gmla")))
    db.write_combinations(run, combos)
    db.write_rows(run, rows)
    runner = CliRunner()
    common = ["--graph-db", str(tmp_path / "g.lbug")]
    done = runner.invoke(app, ["kg", "annotate", "--run", run, "--db", str(db.path), *common])
    assert done.exit_code == 0, done.output
    assert "loaded graph 'voc'" in done.output and f"{len(SETTINGS) * graph.n} outcomes" in done.output, done.output
    page = tmp_path / "v.html"
    ambiguous = runner.invoke(app, ["kg", "view", "--run", run, "-o", str(page), *common])
    assert ambiguous.exit_code != 0 and "pick one with --attack (gmla, mla-u)" in error_message(ambiguous.exception)
    shown = runner.invoke(app, ["kg", "view", "--run", run, "-a", "mla-u", "-o", str(page), *common])
    assert shown.exit_code == 0, shown.output
    html = page.read_text()
    assert graph.source in html, "the stored graph's source is shown"
    expected = reference(graph, combos, rows)
    for name in ("Fragile", "Contested", "Robust", "Untargeted"):
        drawn = len(re.findall(rf'<g class="n [la] {name}"', html))
        count = sum(v["band"] == name for (a, *_), v in expected.items() if a == "mla-u")
        assert drawn == count, f"{name}: {drawn} nodes drawn, {count} by counting"
    missing = runner.invoke(app, ["kg", "view", "--run", "other", "-o", str(page), *common])
    assert missing.exit_code != 0 and "bench kg annotate --run other" in error_message(missing.exception)
