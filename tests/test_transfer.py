"""``bench run --transfer-to``: a run's adversarial images evaluated on other models, on the toy
dataset and model (``tests/sweep_fixtures.py``). The transfer rows against a per-pair reference
computed here from the saved adversarial images; a target equal to the run's model; a finished
run given new targets (its rows recomputed, never changed, a tampered row caught); the
``transfer`` table layout against a Python aggregation; bad input in one line."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import duckdb
import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import bench.cli  # noqa: F401  (registers every command)
from bench.cli import error_message
from bench.cli.apps import app
from bench.errors import BenchError
from kg.closure import GraphTensors, consistent_at, global_consistency, turn_off_closure
from results.report import build_report
from results.store import ResultStore
from tests.cli_main import cli
from tests.sweep_fixtures import CONV, NAME, SIDE, ToyDataset, ToyNet, save_toy_model, toy_graph

SOURCE = "toy-model"
SWEEP = [
    "run",
    "-d",
    NAME,
    "-m",
    SOURCE,
    "--attack",
    "gmla,mla-u,ml-dp",
    "--size",
    "1-2",
    "--eps",
    "0.06",
    "--iterations",
    "10",
    "--images-per-combo",
    "3",
    "--combos-per-size",
    "4",
    "--batch-size",
    "4",
    "--preset",
    "fast",
    "--quiet",
    "--name",
    "toy",
]
NOISY = "tests.test_transfer:noisy_toy"
NUMBERS = "SELECT * EXCLUDE (seconds, machine) FROM results ORDER BY combo_id, image_id, attack, eps, tau"
STORED = "SELECT * FROM results ORDER BY combo_id, image_id, attack, eps, tau"
runner = CliRunner()


def noisy_toy() -> nn.Module:
    """The toy model with noise on its filters: another model of the same graph, whose clean
    predictions differ from the toy's on some images (a ``module:factory`` target)."""
    net = ToyNet(toy_graph().n)
    with torch.no_grad():
        net.linear.weight.add_(torch.randn(net.linear.weight.shape, generator=torch.Generator().manual_seed(3)) * 0.3)
    return net


def wrong_outputs() -> nn.Module:
    """A model with 4 outputs: neither the toy graph's 6 labels nor its 9 nodes."""
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * SIDE * SIDE, 4))


@pytest.fixture(scope="module", autouse=True)
def toy_models():
    save_toy_model(SOURCE)
    save_toy_model("toy-conv", CONV)


def invoke(*args: str):
    result = runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})
    if result.exception is not None and not isinstance(result.exception, (BenchError, SystemExit)):
        raise result.exception
    return result


def run(db: Path, *extra: str) -> None:
    result = invoke(*SWEEP, "--db", db, *extra)
    assert result.exit_code == 0, f"{extra}: {result.output}{result.exception!r}"


def error_of(*args: str) -> str:
    result = invoke(*args)
    assert isinstance(result.exception, BenchError), f"{args}: expected a BenchError, got {result.exception!r}"
    message = error_message(result.exception)
    assert "\n" not in message, f"one line: {message!r}"
    return message


def query(db: Path, sql: str, params=None) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def transfer_rows(db: Path, target: str) -> dict[tuple, dict]:
    with ResultStore(db, create=False).reader() as con:
        cur = con.execute("SELECT * FROM transfer WHERE target = ?", [target])
        names = [d[0] for d in cur.description]
        rows = [dict(zip(names, r)) for r in cur.fetchall()]
    return {(r["combo_id"], r["image_id"], r["attack"], r["eps"], r["tau"]): r for r in rows}


def result_rows(db: Path) -> dict[tuple, dict]:
    with ResultStore(db, create=False).reader() as con:
        cur = con.execute("SELECT r.*, c.labels FROM results r JOIN combinations c USING (run_id, combo_id)")
        names = [d[0] for d in cur.description]
        rows = [dict(zip(names, r)) for r in cur.fetchall()]
    return {(r["combo_id"], r["image_id"], r["attack"], r["eps"], r["tau"]): r for r in rows}


def test_transfer_rows_equal_a_per_pair_reference(tmp_path):
    """Every transfer row against the saved adversarial image fed to the target here, one pair at
    a time: eligibility, Ψ from the target's own clean prediction (kg.closure), the metrics."""
    db = tmp_path / "a.duckdb"
    run(db, "--transfer-to", NOISY, "--save-images", "100")
    graph, data = toy_graph(), ToyDataset("test", toy_graph())
    g = GraphTensors(graph)
    model = noisy_toy().eval()
    results, moved = result_rows(db), transfer_rows(db, NOISY)
    artifacts = ResultStore(db, create=False).artifacts("toy")
    assert set(moved) == set(results) == {tuple(k) for k in artifacts}, "one transfer row and one example per row"
    seen = {"eligible": set(), "success": set()}
    for key, row in moved.items():
        source = results[key]
        with np.load(artifacts[key]) as z:
            adv = torch.from_numpy(z["adv_float"])[None]
        clean = data[int(key[1].rsplit("/", 1)[1])][0][None]
        with torch.no_grad():
            before, after = model(clean) > 0, model(adv) > 0
        omega = torch.zeros(1, graph.n, dtype=torch.bool)
        omega[0, graph.indices(source["labels"])] = True
        eligible = bool(before[omega].all()) and bool(global_consistency(before, g)[0])
        psi = turn_off_closure(before | omega, omega, g)
        success = eligible and not bool(after[omega].any())
        consistent = success and bool(consistent_at(after, omega, g)[0])
        outside = ~psi[0]
        ntr = float(((after != before)[0] & outside).sum()) / float(outside.sum()) if success else 0.0
        want = {
            "source_success": source["success"],
            "eligible": eligible,
            "success": success,
            "consistent": consistent,
            "ntr_share": ntr,
        }
        got = {k: row[k] for k in want}
        assert got == pytest.approx(want, rel=1e-12, abs=0), f"{key}: stored {got}, reference {want}"
        seen["eligible"].add(eligible)
        seen["success"].add(success)
    assert seen == {"eligible": {True, False}, "success": {True, False}}, f"the case covers too little: {seen}"


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    """A run without targets, then with the run's own model as target, then with a second target."""
    db = tmp_path_factory.mktemp("transfer") / "r.duckdb"
    run(db)
    first = query(db, STORED)
    run(db, "--transfer-to", SOURCE)
    second = query(db, STORED)
    run(db, "--transfer-to", f"{SOURCE},toy-conv")
    return db, first, second, query(db, STORED)


def test_the_runs_own_model_reproduces_its_rows(resumed):
    db = resumed[0]
    results, moved = result_rows(db), transfer_rows(db, SOURCE)
    assert set(moved) == set(results), "a transfer row for every row"
    assert any(r["success"] for r in results.values()), "some pairs succeed"
    for key, row in moved.items():
        source = results[key]
        want = (True, source["success"], source["success"], source["consistent"], source["ntr_share"])
        got = (row["eligible"], row["source_success"], row["success"], row["consistent"], row["ntr_share"])
        assert got == want, f"{key}: on its own model {got}, the row {want}"


def test_new_targets_recompute_without_changing_the_rows(resumed, tmp_path):
    db, first, second, third = resumed
    assert first == second == third, "the stored rows are unchanged (seconds and machine included)"
    assert len(first) == len(set(r[:6] for r in first)), "no row stored twice"
    counts = dict(query(db, "SELECT target, count(*) FROM transfer GROUP BY target"))
    assert counts == {SOURCE: len(first), "toy-conv": len(first)}, counts
    assert query(db, "SELECT finished IS NOT NULL FROM runs") == [(True,)], "the run stays finished"

    # a stored row tampered with: recomputing its pair for a missing transfer row refuses it
    tampered = tmp_path / "t.duckdb"
    tampered.write_bytes(db.read_bytes())
    con = duckdb.connect(str(tampered))
    combo, image, attack = con.execute(
        "SELECT combo_id, image_id, attack FROM results ORDER BY combo_id, image_id, attack LIMIT 1"
    ).fetchone()
    where = "combo_id = ? AND image_id = ? AND attack = ?"
    con.execute(f"UPDATE results SET ntr_share = 0.5 WHERE {where}", [combo, image, attack])
    con.execute(f"DELETE FROM transfer WHERE target = 'toy-conv' AND {where}", [combo, image, attack])
    con.close()
    before = query(tampered, "SELECT count(*) FROM transfer")
    message = error_of(*SWEEP, "--db", str(tampered), "--transfer-to", f"{SOURCE},toy-conv")
    assert f"combination {combo}, image {image}, {attack}" in message and "ntr_share" in message, message
    assert "differs from the stored one" in message, message
    assert query(tampered, "SELECT count(*) FROM transfer") == before, "nothing of the refused batch was stored"


def test_the_transfer_layout_equals_an_aggregation_of_the_rows(resumed, tmp_path):
    db = resumed[0]
    result = invoke("table", "--db", db, "--run", "toy", "--layout", "transfer", "--format", "csv")
    assert result.exit_code == 0, result.output
    table = list(csv.DictReader(io.StringIO(result.output)))
    stored = query(db, "SELECT target, attack, source_success, eligible, success, consistent, ntr_share FROM transfer")
    assert [r["attack"] for r in table] == ["mla-u", "gmla", "ml-dp"], "attacks in the paper's order"
    for target in (SOURCE, "toy-conv"):
        for line in table:
            pairs = [r for r in stored if r[0] == target and r[1] == line["attack"] and r[2] and r[3]]
            assert pairs, f"{target} {line['attack']}: no pair to aggregate"
            want = {
                "fr_n": 100 * np.mean([r[4] for r in pairs]),
                "fr_s": 100 * np.mean([r[4] and r[5] for r in pairs]),
                "nt_r": 100 * np.mean([r[6] for r in pairs]),
            }
            for metric, value in want.items():
                assert float(line[f"{target}_{metric}_mean"]) == float(f"{value:.6g}"), f"{target} {metric}"
    for fmt, marker in (("markdown", "| MLA-U |"), ("latex", r"\toprule")):
        shown = invoke("table", "--db", db, "--layout", "transfer", "--format", fmt)
        assert shown.exit_code == 0 and marker in shown.output and "toy-conv" in shown.output, shown.output
    message = error_of("table", "--db", str(db), "--layout", "transfer", "--size", "1")
    assert "pools every |Ω|" in message and "--size" in message, message
    store = ResultStore(db, create=False)
    with store.reader() as con:
        page = build_report(con, "toy", store.artifacts("toy"))
    assert "<h2>Transfer</h2>" in page and "toy-conv" in page, "the report's transfer section"


def test_bad_targets_are_one_line_and_write_nothing(tmp_path, capsys, monkeypatch):
    db = tmp_path / "bad.duckdb"
    base = [*SWEEP, "--db", str(db)]
    cases = [
        ("nope", "--transfer-to nope: unknown trained model 'nope'"),
        ("tests.test_transfer:wrong_outputs", "transfer target tests.test_transfer:wrong_outputs: the model has 4"),
        (f"{SOURCE},{SOURCE}", "two transfer targets are named 'toy-model'"),
        (" , ", "--transfer-to ' , ': name one or more models"),
    ]
    for target, expected in cases:
        assert expected in error_of(*base, "--transfer-to", target), target
        assert not db.exists(), f"{target}: the results file was created"
    assert "do not combine" in error_of(*base, "--transfer-to", SOURCE, "--ray", "local")
    code, _, err = cli(capsys, monkeypatch, *base, "--transfer-to", "nope")
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "unknown trained model 'nope'" in lines[0], (code, err)
    assert not db.exists(), "nothing written"
