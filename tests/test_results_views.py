"""The SQL views against the same aggregates computed with plain numpy on constructed rows."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from bench.errors import BenchError
from results.store import ResultStore
from results.views import Selection, fetch_dicts, pick
from tests.results_fixtures import Sweep, config, fake_sweep, store_sweep

ATTACKS = ("mla-u", "gmla", "ml-dp")


def reference_summary(sweeps: dict[str, Sweep]) -> dict[tuple, dict]:
    """The metrics of docs/attacks.md with numpy: per-combination rates, then np.mean / np.std (ddof 0) in %."""
    per_combo: dict[tuple, list] = defaultdict(list)
    sizes = {}
    for run, sweep in sweeps.items():
        sizes.update({(run, c.combo_id): c.size for c in sweep.combinations})
        for r in sweep.rows:
            per_combo[run, r.combo_id, r.attack, r.eps, r.tau].append(r)
    per_size: dict[tuple, list] = defaultdict(list)
    for (run, combo, attack, eps, tau), rows in per_combo.items():
        per_size[run, sizes[run, combo], attack, eps, tau].append(rows)
    out = {}
    for key, combos in per_size.items():
        rates = defaultdict(list)
        pooled = []
        for rows in combos:
            success = np.array([r.success for r in rows])
            consistent = np.array([r.consistent for r in rows])
            ssim = np.array([r.ssim for r in rows if r.success], dtype=float)
            rates["fr_n"].append(success.mean())
            rates["fr_s"].append((success & consistent).mean())
            rates["nt_r"].append(np.mean([r.ntr_share for r in rows]))
            if len(ssim):
                rates["ssim"].append(ssim.mean())
            pooled.extend(ssim)
        ref = {"n_combinations": len(combos), "ssim_pooled": np.mean(pooled) if pooled else None}
        for m in ("fr_n", "fr_s", "nt_r"):
            ref[f"{m}_mean"] = 100 * np.mean(rates[m])
            ref[f"{m}_std"] = 100 * np.std(rates[m])
        ref["ssim_mean"] = np.mean(rates["ssim"]) if rates["ssim"] else None
        ref["ssim_std"] = np.std(rates["ssim"]) if rates["ssim"] else None
        out[key] = ref
    return out


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    """Two runs, two ε and three τ (GMLA only), four combinations per |Ω| plus an empty one."""
    store = ResultStore(tmp_path_factory.mktemp("views") / "r.duckdb")
    sweeps = {}
    for seed, (dataset, model) in enumerate([("voc", "asl"), ("nus", "ml-gcn")]):
        cfg = config(dataset, model, attacks=ATTACKS, eps=(0.01, 0.05), tau=(-0.85, -0.5, 0.0), sizes=(1, 2, 3))
        sweep = fake_sweep(cfg, seed=seed)
        sweeps[store_sweep(store, sweep)] = sweep
    return store, sweeps


def test_rate_summary_matches_numpy(filled):
    store, sweeps = filled
    ref = reference_summary(sweeps)
    with store.reader() as con:
        # the attacks' own rows; attack 'worst-case' is checked in tests/test_results_worst_case.py
        rows = fetch_dicts(con, "SELECT * FROM rate_summary WHERE attack <> 'worst-case'")
    got = {(r["run_id"], r["size"], r["attack"], r["eps"], r["tau"]): r for r in rows}
    assert set(got) == set(ref), f"rate_summary groups differ: {set(got) ^ set(ref)}"
    for key, expected in ref.items():
        for name, value in expected.items():
            if value is None:
                assert got[key][name] is None, f"{name} at {key}: {got[key][name]} where numpy has none"
            else:
                assert np.isclose(got[key][name], value, rtol=1e-9, atol=1e-12), (
                    f"{name} at {key}: view {got[key][name]} != numpy {value}"
                )


def test_std_is_population_std(filled):
    store, _ = filled
    with store.reader() as con:
        row = fetch_dicts(con, "SELECT * FROM rate_summary WHERE n_combinations > 1 AND fr_n_std > 0 LIMIT 1")[0]
        per_combo = [
            r[0]
            for r in con.execute(
                "SELECT fr_n FROM combination_rates WHERE run_id=? AND size=? AND attack=? AND eps=? AND tau=?",
                [row["run_id"], row["size"], row["attack"], row["eps"], row["tau"]],
            ).fetchall()
        ]
    assert np.isclose(row["fr_n_std"], 100 * np.std(per_combo, ddof=0)), "fr_n_std is not np.std (ddof = 0)"
    assert not np.isclose(row["fr_n_std"], 100 * np.std(per_combo, ddof=1)), "fr_n_std looks like a sample std"


def test_combination_rates_and_counts(filled):
    store, sweeps = filled
    with store.reader() as con:
        rates = fetch_dicts(con, "SELECT * FROM combination_rates")
        summary = fetch_dicts(con, "SELECT DISTINCT run_id, size, n_planned, n_empty FROM rate_summary")
    for r in rates:
        assert r["fr_s"] <= r["fr_n"] + 1e-12, f"FR_S above FR_N in {r}"
        assert r["attacked"] >= r["succeeded"], f"more successes than attacked images in {r}"
    for s in summary:
        combos = [c for c in sweeps[s["run_id"]].combinations if c.size == s["size"]]
        assert s["n_empty"] == sum(c.eligible == 0 for c in combos), f"n_empty wrong for {s}"
        assert s["n_planned"] == sum(c.attacked > 0 for c in combos), f"n_planned wrong for {s}"


def test_run_overview_counts(filled):
    store, sweeps = filled
    with store.reader() as con:
        overview = {r["run_id"]: r for r in fetch_dicts(con, "SELECT * FROM run_overview")}
    for run, sweep in sweeps.items():
        assert overview[run]["rows"] == len(sweep.rows), f"run_overview rows of {run}"
        assert overview[run]["combinations"] == overview[run]["complete"] == len(sweep.combinations), (
            f"run_overview combinations of {run}"
        )


# ---------------------------------------------------------------------- pick
def _rows(**axes):
    base = {"run_id": "r", "attack": "gmla", "size": 3, "eps": 0.01, "tau": -0.85}
    return [{**base, **dict(zip(axes, values))} for values in zip(*axes.values())]


def test_pick_fixes_axes_and_names_choices():
    rows = _rows(size=[1, 2, 3])
    with pytest.raises(BenchError, match=r"several \|Ω\| .*pick one with `size` \(1, 2, 3\)"):
        pick(rows, Selection())
    assert [r["size"] for r in pick(rows, Selection(size=2))] == [2], "--size 2 did not keep |Ω| = 2 only"
    assert len(pick(rows, Selection(), vary="size")) == 3, "the varied axis was narrowed"
    with pytest.raises(BenchError, match=r"no results at \|Ω\| = 7; stored: 1, 2, 3"):
        pick(rows, Selection(size=7))


def test_pick_keeps_attacks_that_take_no_tau():
    rows = _rows(tau=[-0.85, 0.0]) + [dict(r, attack="mla-u") for r in _rows(tau=[-0.85])]
    kept = pick(rows, Selection(tau=0.0))
    assert sorted((r["attack"], r["tau"]) for r in kept) == [("gmla", 0.0), ("mla-u", -0.85)], (
        f"τ selection should keep GMLA at τ=0 and MLA-U at its only τ, got {kept}"
    )
