"""The paper and ablation layouts against numpy aggregates, and each renderer read back."""

from __future__ import annotations

import csv
import io
import re

import numpy as np
import pytest

from bench.errors import BenchError
from results.store import ResultStore
from results.tables import (
    Cell,
    ablation_layout,
    format_cell,
    paper_layout,
    tex,
    to_csv,
    to_latex,
    to_markdown,
    to_rich,
)
from results.views import Selection
from tests.results_fixtures import config, fake_sweep, store_sweep
from tests.test_results_views import reference_summary

PAPER_ATTACKS = ("mla-u", "mla-c", "gmla")
ABLATION_ATTACKS = ("gmla-alpha", "gmla-beta", "gmla", "mla-u")


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    """Two models on two datasets at |Ω| = 2, 3, and an ablation run with a τ sweep."""
    store = ResultStore(tmp_path_factory.mktemp("tables") / "r.duckdb")
    sweeps = {}
    for seed, (dataset, model) in enumerate([("nus", "asl"), ("voc", "asl"), ("voc", "ml-gcn"), ("nus", "ml-gcn")]):
        sweep = fake_sweep(config(dataset, model, attacks=PAPER_ATTACKS), seed=seed)
        sweeps[store_sweep(store, sweep)] = sweep
    abl = fake_sweep(
        config("openimages", "asl", name="abl", attacks=ABLATION_ATTACKS, sizes=(1, 2, 3), tau=(-0.85, 0.0)), seed=7
    )
    sweeps[store_sweep(store, abl)] = abl
    paper_runs = [r for r in sweeps if r != "abl"]
    return store, sweeps, paper_runs, reference_summary(sweeps)


def run_of(sweeps, dataset, model):
    return next(r for r, s in sweeps.items() if (s.config.dataset, s.config.model_name) == (dataset, model))


def test_paper_layout_cells_match_numpy(db):
    store, sweeps, runs, ref = db
    with store.reader() as con:
        layout = paper_layout(con, runs, Selection(size=3))
    assert [g.key for g in layout.groups] == ["voc", "nus"], "datasets not in the paper's order (VOC, NUS-WIDE)"
    assert [r.keys for r in layout.rows] == [
        (m, a) for m in ("asl", "ml-gcn") for a in (*PAPER_ATTACKS, "worst-case")
    ], f"rows should be models × attacks in the paper's order, then the worst case, got {[r.keys for r in layout.rows]}"
    for row in layout.rows:
        model, attack = row.keys
        if attack == "worst-case":
            continue  # its numbers: tests/test_results_worst_case.py
        cells = iter(row.cells)
        for group in layout.groups:
            expected = ref[run_of(sweeps, group.key, model), 3, attack, 0.01, -0.85]
            for metric, _ in group.columns:
                cell = next(cells)
                if metric == "ssim":
                    assert cell.std is None and np.isclose(cell.mean, expected["ssim_pooled"]), (
                        f"pooled SSIM of {model}/{attack}/{group.key}: {cell.mean} != {expected['ssim_pooled']}"
                    )
                else:
                    got, want = (cell.mean, cell.std), (expected[f"{metric}_mean"], expected[f"{metric}_std"])
                    assert np.allclose(got, want), f"{metric} of {model}/{attack}/{group.key}: {got} != {want}"


def test_ssim_over_combinations_and_metric_choice(db):
    store, sweeps, runs, ref = db
    with store.reader() as con:
        layout = paper_layout(con, runs, Selection(size=2), metrics=["ssim"], attacks=["gmla"], ssim="combinations")
        with pytest.raises(BenchError, match=r"unknown metric 'fr_x' \(did you mean 'fr_s', 'fr_n'"):
            paper_layout(con, runs, Selection(size=2), metrics=["fr_x"])
        with pytest.raises(BenchError, match="unknown attack 'gmal'"):
            paper_layout(con, runs, Selection(size=2), attacks=["gmal"])
    cell = layout.rows[0].cells[0]
    expected = ref[run_of(sweeps, "voc", "asl"), 2, "gmla", 0.01, -0.85]
    assert np.allclose((cell.mean, cell.std), (expected["ssim_mean"], expected["ssim_std"])), (
        "SSIM over combinations should be mean ± std of the per-combination means"
    )


def test_paper_layout_refuses_ambiguous_selections(db):
    store, _, runs, _ = db
    with store.reader() as con:
        with pytest.raises(BenchError, match=r"holds several \|Ω\| for gmla: pick one with `size` \(2, 3\)"):
            paper_layout(con, runs)
        with pytest.raises(BenchError, match=r"no results at ε = 0\.5; stored: 0\.01"):
            paper_layout(con, runs, Selection(size=2, eps=0.5))
    twin_run = store_sweep(store, fake_sweep(config("voc", "asl", name="twin", attacks=PAPER_ATTACKS), seed=11))
    with store.reader() as con, pytest.raises(BenchError, match="both hold asl on voc: pick one with `runs`"):
        paper_layout(con, [*runs, twin_run], Selection(size=2))


def test_ablation_layout_matches_numpy(db):
    store, _, _, ref = db
    with store.reader() as con:
        layout = ablation_layout(con, ["abl"], Selection(tau=0.0))
        with pytest.raises(BenchError, match="one run"):
            ablation_layout(con, [], Selection(tau=0.0))
    assert [g.key for g in layout.groups] == ["fr_n", "fr_s", "nt_r"], "ablation metrics"
    assert [k for k, _ in layout.groups[0].columns] == ["gmla-alpha", "gmla-beta", "gmla"], "ablation attacks"
    assert [r.keys for r in layout.rows] == [("1",), ("2",), ("3",)], "ablation rows should be |Ω| = 1, 2, 3"
    for row in layout.rows:
        cells = iter(row.cells)
        for group in layout.groups:
            for attack, _ in group.columns:
                tau = 0.0 if attack == "gmla" else -0.85  # GMLA_α/β take no τ: stored at tau[0]
                expected = ref["abl", int(row.keys[0]), attack, 0.01, tau]
                cell = next(cells)
                assert np.allclose(
                    (cell.mean, cell.std), (expected[f"{group.key}_mean"], expected[f"{group.key}_std"])
                ), f"{group.key} of {attack} at |Ω| = {row.keys[0]}"


# ---------------------------------------------------------------------- renderers
@pytest.fixture(scope="module")
def layout(db):
    store, _, runs, _ = db
    with store.reader() as con:
        return paper_layout(con, runs, Selection(size=3))


def test_format_cell():
    assert format_cell(Cell(71.44, 18.06, True)) == "71.4 ± 18.1", "percent cell"
    assert format_cell(Cell(0.9751, None, False)) == "0.98", "pooled SSIM cell"
    assert format_cell(Cell(None, None, True)) == "–", "empty cell"
    assert format_cell(Cell(2.123, 0.5, True), digits=2) == "2.12 ± 0.50", "digits"


def test_markdown_reads_back(layout):
    lines = [line for line in to_markdown(layout).splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header[:3] == ["Model", "Attack", "PASCAL-VOC ↑FR_N"], f"markdown header: {header}"
    body = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    assert len(body) == len(layout.rows), "markdown row count"
    for cells, row in zip(body, layout.rows):
        assert len(cells) == len(header), f"ragged markdown row {cells}"
        assert cells[2:] == [format_cell(c) for c in row.cells], "markdown cells differ from the layout"
    assert body[1][0] == "" and body[0][0] == "ASL", "a model's name should show once per group"


def test_latex_is_booktabs_and_balanced(layout):
    text = to_latex(layout)
    n_columns = 2 + sum(len(g.columns) for g in layout.groups)
    for rule in (r"\toprule", r"\midrule", r"\bottomrule", r"\cmidrule(lr){3-6}", r"\cmidrule(lr){7-10}"):
        assert rule in text, f"LaTeX lacks {rule}"
    spans = [int(n) for n in re.findall(r"\\multicolumn\{(\d+)\}", text)]
    assert sum(spans) == n_columns - 2, f"group headers span {spans}, not {n_columns - 2} columns"
    rows = [line for line in text.splitlines() if line.endswith(r"\\") and "multicolumn" not in line]
    assert all(line.count("&") == n_columns - 1 for line in rows), "a LaTeX row has the wrong number of cells"
    assert r"$\uparrow$FR$_{N}$" in text and r"$\pm$" in text, "metric labels or ± not typeset"
    assert tex("GMLA_α") == r"GMLA$_{\alpha}$" and tex("50% & my_attack") == r"50\% \& my\_attack", "tex escaping"


def test_csv_keeps_full_precision(layout, db):
    _, sweeps, _, ref = db
    table = list(csv.DictReader(io.StringIO(to_csv(layout))))
    assert len(table) == len(layout.rows), "CSV row count"
    first = table[0]
    expected = ref[run_of(sweeps, "voc", first["model"]), 3, first["attack"], 0.01, -0.85]
    assert float(first["voc_fr_s_mean"]) == pytest.approx(expected["fr_s_mean"], rel=1e-5), "CSV FR_S mean"
    assert float(first["voc_fr_s_std"]) == pytest.approx(expected["fr_s_std"], rel=1e-5), "CSV FR_S std"
    assert first["voc_ssim_std"] == "", "pooled SSIM has no std in CSV"


def test_rich_table_has_every_cell(layout):
    table = to_rich(layout)
    assert len(table.columns) == 2 + sum(len(g.columns) for g in layout.groups), "rich column count"
    assert table.row_count == len(layout.rows), "rich row count"
    assert list(table.columns[2].cells) == [format_cell(r.cells[0]) for r in layout.rows], "rich cells"


def test_a_plugin_attacks_display_name_reaches_the_tables():
    """One definition of each name: tables read a registered attack's own ``display_name``."""
    from bench.attacks import ATTACKS, register_attack
    from bench.attacks.mla_u import MLAU
    from bench.names import ATTACK_NAMES, attack_display

    @register_attack("my-plugin-attack")
    class Mine(MLAU):
        display_name = "Mine_β"

    try:
        assert attack_display("my-plugin-attack") == "Mine_β", "the plugin's own name"
    finally:
        ATTACKS.unregister("my-plugin-attack")  # other tests list the seven built-in attacks
    assert "my-plugin-attack" not in ATTACKS, "unregistered"
    assert attack_display("gmla") == ATTACK_NAMES["gmla"] == ATTACKS.get("gmla").display_name, (
        "one definition for built-ins"
    )
    assert attack_display("never-registered") == "never-registered", "unknown names shown as stored"


def test_wide_tables_print_one_group_at_a_time_and_ml_dp_is_marked(db, tmp_path, capsys):
    from bench.cli.results import WRAP_AT, print_layout
    from results.tables import UNBOUNDED_NOTE, WORST_CASE_NOTE, to_latex, to_markdown

    store, _, paper_runs, _ = db
    with store.reader() as con:
        ablation = ablation_layout(con, ["abl"], Selection(eps=0.01, tau=-0.85))
    parts = ablation.by_group()
    assert [p.groups[0] for p in parts] == list(ablation.groups), "one part per column group"
    for i, row in enumerate(ablation.rows):
        assert [c for p in parts for c in p.rows[i].cells] == list(row.cells), "the parts hold the same cells in order"
    capsys.readouterr()
    print_layout(ablation)
    widest = max(len(line) for line in capsys.readouterr().out.splitlines())
    assert widest <= WRAP_AT, f"the ablation table printed {widest} columns wide"

    other = ResultStore(tmp_path / "dp.duckdb")
    store_sweep(other, fake_sweep(config("voc", "asl", attacks=("gmla", "ml-dp")), seed=2))
    with other.reader() as con:
        with_dp = paper_layout(con, [], Selection(size=3))
    with store.reader() as con:
        without = paper_layout(con, [paper_runs[0]], Selection(size=3))
    assert with_dp.notes == (UNBOUNDED_NOTE, WORST_CASE_NOTE), "ML-DP's note, then the worst case's (two attacks)"
    assert without.notes == (WORST_CASE_NOTE,), "the ML-DP note only where ML-DP is a row"
    assert UNBOUNDED_NOTE in to_markdown(with_dp) and "unbounded" in to_latex(with_dp)


def test_an_unfinished_run_is_marked_with_what_it_lacks(tmp_path):
    """A table never shows a partial run as a whole: the interrupted run's note says how many
    combinations are complete and which of its attacks have no row; a finished run has none."""
    import duckdb

    from tests.test_sweep_runner import sweep, toy_config

    path = tmp_path / "r.duckdb"
    config = toy_config(attacks=("mla-u", "gmla"), sizes=(1,), iterations=3)
    sweep(path, config)
    with ResultStore(path).reader() as con:
        assert not any("not finished" in n for n in paper_layout(con, [config.run_id], Selection(1)).notes)
    with duckdb.connect(str(path)) as con:  # as a run stopped before its GMLA pairs and two combinations
        con.execute("UPDATE runs SET finished = NULL")
        con.execute("DELETE FROM results WHERE attack = 'gmla'")
        con.execute("UPDATE combinations SET complete = false WHERE combo_id < 2")
        total = con.execute("SELECT count(*) FROM combinations").fetchone()[0]
    with ResultStore(path).reader() as con:
        notes = paper_layout(con, [], Selection(1)).notes
        ablation = ablation_layout(con, [], Selection(1), attacks=["mla-u"]).notes
    expected = (
        f"run {config.run_id} is not finished: {total - 2} of {total} combinations complete; no rows yet for gmla."
    )
    assert expected in notes and expected in ablation, notes
