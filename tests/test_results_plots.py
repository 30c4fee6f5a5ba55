"""Figures: valid PNG/PDF files whose plotted points are the numpy aggregates of the rows."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from bench.errors import BenchError
from results.plots import _rmsd_figure, _sweep_figure, label, plot
from results.store import ResultStore
from results.views import Selection
from tests.results_fixtures import config, fake_sweep, store_sweep
from tests.test_results_views import reference_summary


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    store = ResultStore(tmp_path_factory.mktemp("plots") / "r.duckdb")
    sweep = fake_sweep(
        config(
            "voc",
            "asl",
            name="sweep",
            attacks=("mla-u", "gmla", "ml-dp"),
            sizes=(1, 2, 3),
            eps=(0.01, 0.03),
            tau=(-0.9, -0.85, 0.0),
        ),
        seed=3,
    )
    store_sweep(store, sweep)
    return store, sweep


@pytest.mark.parametrize(
    ("kind", "selection", "suffix"),
    [
        ("size", Selection(eps=0.01, tau=-0.85), ".png"),
        ("eps", Selection(size=2, tau=-0.85), ".pdf"),
        ("tau", Selection(size=3, eps=0.03), ".png"),
        ("rmsd", Selection(size=2, eps=0.01), ".png"),
    ],
)
def test_every_kind_writes_a_valid_file(db, tmp_path, kind, selection, suffix):
    store, _ = db
    with store.reader() as con:
        path = plot(con, kind, tmp_path / f"{kind}{suffix}", "sweep", selection)
    if suffix == ".png":
        with Image.open(path) as img:
            img.verify()
            assert img.format == "PNG" and img.size[0] > 300, f"{kind}: not a PNG figure ({img.format}, {img.size})"
    else:
        assert path.read_bytes()[:5] == b"%PDF-", f"{kind}: not a PDF"
    assert not list(tmp_path.glob(".*.tmp")), "a temporary file was left behind"


def test_size_curves_are_the_numpy_means(db):
    store, sweep = db
    ref = reference_summary({"sweep": sweep})
    with store.reader() as con:
        fig = _sweep_figure(con, "sweep", "size", Selection(eps=0.01, tau=-0.85), ["fr_s", "nt_r"], [])
    for ax, metric in zip(fig.axes, ("fr_s", "nt_r")):
        lines = {bars.get_label(): bars.lines[0] for bars in ax.containers}
        # the worst case over the attacks is a curve too (its numbers: tests/test_results_worst_case.py)
        assert set(lines) == {"MLA-U", "GMLA", "ML-DP", "Worst case"}, f"{metric}: curves {set(lines)}"
        for attack, name in (("mla-u", "MLA-U"), ("gmla", "GMLA"), ("ml-dp", "ML-DP")):
            want = [
                ref["sweep", s, attack, 0.01, -0.9 if attack != "gmla" else -0.85][f"{metric}_mean"] for s in (1, 2, 3)
            ]
            assert np.allclose(lines[name].get_ydata(), want), f"{metric} curve of {attack} is not the numpy mean"
            assert np.allclose(np.round(lines[name].get_xdata()), [1, 2, 3]), f"{attack} not drawn at |Ω| = 1, 2, 3"


def test_tau_plot_shows_only_attacks_run_at_several_tau(db):
    store, _ = db
    with store.reader() as con:
        fig = _sweep_figure(con, "sweep", "tau", Selection(size=1, eps=0.01), ["fr_s"], [])
        labels = [bars.get_label() for bars in fig.axes[0].containers]
        assert labels == ["GMLA"], f"τ sweep should show GMLA only, got {labels}"
        with pytest.raises(BenchError, match="several τ"):
            _sweep_figure(con, "sweep", "tau", Selection(size=1, eps=0.01), ["fr_s"], ["mla-u"])


def test_rmsd_histogram_counts_successful_ml_dp_rows(db):
    store, sweep = db
    with store.reader() as con:
        fig = _rmsd_figure(con, "sweep", Selection(size=3, eps=0.03), [])
    combos = {c.combo_id for c in sweep.combinations if c.size == 3}
    rows = [r for r in sweep.rows if r.attack == "ml-dp" and r.eps == 0.03 and r.combo_id in combos]
    counts = sum(p.get_height() for p in fig.axes[0].patches)
    assert counts == sum(r.success for r in rows), f"histogram holds {counts} examples, not the successful rows"
    assert f"{sum(r.success for r in rows)}/{len(rows)}" in fig.axes[0].get_title(), "title should give n/attacked"


def test_plot_refuses_bad_requests(db, tmp_path):
    store, _ = db
    with store.reader() as con:
        with pytest.raises(BenchError, match=r"must end in \.png or \.pdf"):
            plot(con, "size", tmp_path / "x.svg", "sweep", Selection(eps=0.01))
        with pytest.raises(BenchError, match=r"unknown metric 'frs' \(did you mean 'fr_s'"):
            plot(con, "size", tmp_path / "x.png", "sweep", Selection(eps=0.01), metrics=["frs"])
        with pytest.raises(BenchError, match=r"holds several ε for gmla: pick one with `eps` \(0\.01, 0\.03\)"):
            plot(con, "size", tmp_path / "x.png", "sweep", Selection())
    assert label("GMLA_α") == r"GMLA$_{\alpha}$" and label("FR_S (%)") == "FR$_{S}$ (%)", "matplotlib labels"
