"""The worst case over a run's attacks (the ``worst_case`` view and attack ``worst-case`` of the
rates and tables) against a plain Python loop over hand-made rows (docs/results.md, the rule)."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import pytest

from results.schema import Combination, ResultRow, RunConfig
from results.store import ResultStore
from results.tables import WORST_CASE_NOTE, format_cell, paper_layout, to_csv, to_latex, to_markdown, to_rich
from results.views import Selection, fetch_dicts
from tests.results_fixtures import config

TOL = 1e-6  # the documented threat-model tolerance: linf <= eps + 1e-6
KEY = ("run_id", "combo_id", "image_id", "eps")


@dataclass
class Run:
    config: RunConfig
    combinations: list[Combination]
    rows: list[ResultRow]


def row(combo, image, attack, eps, tau=-0.85, ok=False, cons=False, ntr=0.0, linf=None, flipped=(), n=0):
    """One result row; ``n`` varies the values no rule reads (success_iteration, l2, seconds, SSIM, RMSD)."""
    return ResultRow(
        combo_id=combo,
        image_id=image,
        attack=attack,
        eps=eps,
        tau=tau,
        success=ok,
        consistent=ok and cons,
        ntr_share=ntr if ok else 0.0,
        success_iteration=10 + n if ok else 300,
        linf=eps if linf is None else linf,
        l2=0.5 + 0.01 * n,
        seconds=0.1 + 0.001 * n,
        ssim=0.9 + 0.001 * n if ok else None,
        rmsd=0.01 + 0.0001 * n if ok and attack in ("ml-dp", "mla-lp") else None,
        flipped=(None if flipped is None else (tuple(flipped) if ok else ())),
    )


def main_run() -> Run:
    """Four attacks, two ε, GMLA at two τ, |Ω| = 1 and 2 with an empty combination. Pairs of
    combinations 0 and 1 at ε = 0.01 are set by hand (the cases asserted by name); the others
    are drawn, with NT_R on a coarse grid (ties) and ML-DP / MLA-LP sometimes outside the ball."""
    cfg = config(
        "voc",
        "asl",
        name="wc",
        attacks=("mla-u", "gmla", "ml-dp", "mla-lp"),
        eps=(0.01, 0.05),
        tau=(-0.85, 0.0),
        sizes=(1, 2),
    )
    combos = [
        Combination(0, ("a",), 3, 3),
        Combination(1, ("b",), 5, 3),
        Combination(2, ("a", "b"), 3, 3),
        Combination(3, ("b", "c"), 4, 3),
        Combination(4, ("c", "d"), 0, 0),
    ]
    e = 0.01
    rows = [
        # combo 0 im0: ML-DP fooled it consistently but left the ball; MLA-U decides (inconsistent)
        row(0, "im0", "ml-dp", e, ok=True, cons=True, ntr=0.0, linf=0.03, flipped=("x",), n=1),
        row(0, "im0", "mla-u", e, ok=True, ntr=0.2, flipped=("y", "z"), n=2),
        row(0, "im0", "gmla", e, n=3),
        row(0, "im0", "gmla", e, tau=0.0, n=4),
        row(0, "im0", "mla-lp", e, n=5),
        # combo 0 im1: four consistent successes tie at NT_R 0.1 → GMLA (name), then τ = -0.85
        row(0, "im1", "mla-u", e, ok=True, cons=True, ntr=0.1, flipped=("u",), n=6),
        row(0, "im1", "gmla", e, tau=0.0, ok=True, cons=True, ntr=0.1, flipped=("v",), n=7),
        row(0, "im1", "gmla", e, ok=True, cons=True, ntr=0.1, flipped=("w",), n=8),
        row(0, "im1", "ml-dp", e, ok=True, ntr=0.0, n=9),
        row(0, "im1", "mla-lp", e, ok=True, cons=True, ntr=0.1, linf=e + 1e-8, n=10),
        # combo 0 im2: only attacks outside the ball succeeded → not fooled
        row(0, "im2", "ml-dp", e, ok=True, cons=True, linf=0.03, n=11),
        row(0, "im2", "mla-lp", e, ok=True, cons=True, linf=0.02, n=12),
        row(0, "im2", "mla-u", e, n=13),
        row(0, "im2", "gmla", e, n=14),
        row(0, "im2", "gmla", e, tau=0.0, n=15),
        # combo 1 im0: ML-DP inside the ball (exactly ε) is the only consistent success
        row(1, "im0", "ml-dp", e, ok=True, cons=True, ntr=0.3, flipped=("q",), n=16),
        row(1, "im0", "mla-u", e, ok=True, ntr=0.0, n=17),
        row(1, "im0", "gmla", e, n=18),
        # combo 1 im1: nobody fooled it and a row predates results.flipped → flipped NULL
        row(1, "im1", "mla-u", e, flipped=None, n=19),
        row(1, "im1", "gmla", e, n=20),
        # combo 1 im2: inconsistent successes only → the lowest NT_R (GMLA at τ = 0)
        row(1, "im2", "mla-u", e, ok=True, ntr=0.2, n=21),
        row(1, "im2", "gmla", e, tau=0.0, ok=True, ntr=0.1, n=22),
        row(1, "im2", "gmla", e, ok=True, ntr=0.2, n=23),
    ]
    rng = np.random.default_rng(5)
    for eps in cfg.eps:
        for c in combos:
            if c.attacked == 0 or (eps == e and c.combo_id < 2):
                continue
            for i in range(c.attacked):
                for attack in cfg.attacks:
                    for tau in cfg.tau if attack == "gmla" else cfg.tau[:1]:
                        ok = bool(rng.random() < 0.35)
                        outside = attack in ("ml-dp", "mla-lp") and rng.random() < 0.5
                        rows.append(
                            row(
                                c.combo_id,
                                f"im{i}",
                                attack,
                                eps,
                                tau=tau,
                                ok=ok,
                                cons=bool(rng.random() < 0.5),
                                ntr=float(rng.choice([0.0, 0.1, 0.2])),
                                linf=3 * eps if outside else eps,
                                flipped=("f",),
                                n=len(rows),
                            )
                        )
    return Run(cfg, combos, rows)


def solo_run() -> Run:
    """One attack: no worst case in the rates."""
    cfg = config("voc", "ml-gcn", name="solo", attacks=("mla-u",), sizes=(1,))
    rows = [row(0, f"im{i}", "mla-u", 0.01, ok=i % 2 == 0, ntr=0.1, n=i) for i in range(3)]
    return Run(cfg, [Combination(0, ("a",), 3, 3)], rows)


def partial_run() -> Run:
    """Two attacks at ε = 0.01, one at ε = 0.02 (GMLA never got there): a worst case at 0.01 only."""
    cfg = config("nus", "asl", name="part", attacks=("mla-u", "gmla"), eps=(0.01, 0.02), sizes=(1,))
    rows = []
    for i in range(3):
        rows.append(row(0, f"im{i}", "mla-u", 0.01, ok=i == 0, cons=True, ntr=0.1, n=i))
        rows.append(row(0, f"im{i}", "gmla", 0.01, ok=i < 2, ntr=0.0, n=10 + i))
        rows.append(row(0, f"im{i}", "mla-u", 0.02, ok=True, n=20 + i))
    return Run(cfg, [Combination(0, ("a",), 3, 3)], rows)


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    store = ResultStore(tmp_path_factory.mktemp("worst") / "r.duckdb")
    runs = {}
    for run in (main_run(), solo_run(), partial_run()):
        run_id = store.begin_run(run.config)
        store.write_combinations(run_id, run.combinations)
        store.write_rows(run_id, run.rows, complete=[c.combo_id for c in run.combinations])
        store.finish_run(run_id)
        runs[run_id] = run
    return store, runs


# ---------------------------------------------------------------------- the reference
def beats(a: ResultRow, b: ResultRow) -> bool:
    """Whether successful row ``a`` decides before ``b``: consistent first, then the lower NT_R,
    then the attack's name, then τ."""
    if a.consistent != b.consistent:
        return a.consistent
    if a.ntr_share != b.ntr_share:
        return a.ntr_share < b.ntr_share
    if a.attack != b.attack:
        return a.attack < b.attack
    return a.tau < b.tau


def reference_pairs(runs: dict[str, Run]) -> dict[tuple, dict]:
    """Every column of ``worst_case``, per (run, combination, image, ε), by a loop over the rows."""
    out = {}
    for run_id, run in runs.items():
        attacks_at: dict[float, set] = defaultdict(set)
        pairs: dict[tuple, list[ResultRow]] = defaultdict(list)
        for r in run.rows:
            attacks_at[r.eps].add(r.attack)
            pairs[r.combo_id, r.image_id, r.eps].append(r)
        for (combo, image, eps), group in pairs.items():
            best = None
            for r in group:
                if r.success and r.linf <= eps + TOL and (best is None or beats(r, best)):
                    best = r
            if best is None:
                unknown = any(r.flipped is None for r in group)
                picked = dict(
                    success=False,
                    consistent=False,
                    ntr_share=0.0,
                    ssim=None,
                    rmsd=None,
                    success_iteration=None,
                    linf=None,
                    l2=None,
                    flipped=None if unknown else [],
                    decided_by=None,
                    decided_tau=None,
                    detected=None,
                )
            else:
                picked = dict(
                    success=True,
                    consistent=best.consistent,
                    ntr_share=best.ntr_share,
                    ssim=best.ssim,
                    rmsd=best.rmsd,
                    success_iteration=best.success_iteration,
                    linf=best.linf,
                    l2=best.l2,
                    flipped=None if best.flipped is None else list(best.flipped),
                    decided_by=best.attack,
                    decided_tau=best.tau,
                    detected=best.detected,
                )
            out[run_id, combo, image, eps] = dict(
                attack="worst-case",
                tau=run.config.tau[0],
                seconds=sum(r.seconds for r in group),
                n_attacks=len(attacks_at[eps]),
                **picked,
            )
    return out


def mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def reference_combinations(runs: dict[str, Run], pairs: dict[tuple, dict]) -> dict[tuple, dict]:
    """combination_rates' worst-case rows: per (run, combination, ε) where the run has two attacks."""
    grouped: dict[tuple, list[dict]] = defaultdict(list)
    for (run_id, combo, _, eps), p in pairs.items():
        if p["n_attacks"] >= 2:
            grouped[run_id, combo, eps].append(p)
    out = {}
    for (run_id, combo, eps), group in grouped.items():
        c = next(c for c in runs[run_id].combinations if c.combo_id == combo)
        won = [p for p in group if p["success"]]
        out[run_id, combo, eps] = dict(
            size=c.size,
            labels=list(c.labels),
            tau=runs[run_id].config.tau[0],
            attacked=len(group),
            succeeded=len(won),
            fr_n=len(won) / len(group),
            fr_s=sum(p["consistent"] for p in group) / len(group),
            nt_r=float(np.mean([p["ntr_share"] for p in group])),
            ssim=mean(p["ssim"] for p in won),
            rmsd=mean(p["rmsd"] for p in won),
            success_iteration=mean(p["success_iteration"] for p in group),
            linf=mean(p["linf"] for p in group),
            l2=mean(p["l2"] for p in group),
            seconds=sum(p["seconds"] for p in group),
        )
    return out


def reference_summary(pairs: dict[tuple, dict], combos: dict[tuple, dict]) -> dict[tuple, dict]:
    """rate_summary's worst-case rows: numpy mean / std (ddof 0) over the combinations, in %."""
    per_size: dict[tuple, list[dict]] = defaultdict(list)
    for (run_id, _, eps), c in combos.items():
        per_size[run_id, c["size"], eps].append(c)
    out = {}
    for (run_id, size, eps), group in per_size.items():
        combo_ids = {k[1] for k, c in combos.items() if k[0] == run_id and k[2] == eps and c["size"] == size}
        won = [
            p
            for (r, combo, _, e), p in pairs.items()
            if r == run_id and e == eps and combo in combo_ids and p["success"]
        ]
        ssims = [c["ssim"] for c in group if c["ssim"] is not None]
        ref = dict(
            tau=group[0]["tau"],
            n_combinations=len(group),
            n_attacked=sum(c["attacked"] for c in group),
            n_succeeded=sum(c["succeeded"] for c in group),
            ssim_mean=float(np.mean(ssims)) if ssims else None,
            ssim_std=float(np.std(ssims)) if ssims else None,
            ssim_pooled=mean(p["ssim"] for p in won),
            rmsd_pooled=mean(p["rmsd"] for p in won),
        )
        for m in ("fr_n", "fr_s", "nt_r"):
            ref[f"{m}_mean"] = 100 * float(np.mean([c[m] for c in group]))
            ref[f"{m}_std"] = 100 * float(np.std([c[m] for c in group]))
        out[run_id, size, eps] = ref
    return out


def same(got, expected) -> bool:
    if expected is None or got is None:
        return got is expected
    if isinstance(expected, float):
        return math.isclose(got, expected, rel_tol=1e-9, abs_tol=1e-12)
    return got == expected


def check(got: dict[tuple, dict], expected: dict[tuple, dict], what: str) -> None:
    assert set(got) == set(expected), f"{what}: keys differ: {sorted(set(got) ^ set(expected), key=str)}"
    for key, ref in expected.items():
        for name, value in ref.items():
            assert same(got[key][name], value), f"{what} {name} at {key}: view {got[key][name]!r} != loop {value!r}"


# ---------------------------------------------------------------------- tests
def test_worst_case_view_matches_the_loop(filled):
    store, runs = filled
    expected = reference_pairs(runs)
    with store.reader() as con:
        rows = fetch_dicts(con, "SELECT * FROM worst_case")
    assert len(rows) == len(expected), "one worst_case row per (run, combination, image, ε)"
    columns = set(KEY) | set(next(iter(expected.values())))
    assert set(rows[0]) == columns, f"worst_case columns: {sorted(set(rows[0]) ^ columns)}"
    check({tuple(r[k] for k in KEY): r for r in rows}, expected, "worst_case")


def test_the_hand_made_cases(filled):
    """The rule's cases by name, independent of the loop."""
    store, _ = filled
    with store.reader() as con:
        got = {
            (r["combo_id"], r["image_id"]): r
            for r in fetch_dicts(con, "SELECT * FROM worst_case WHERE run_id = 'wc' AND eps = 0.01 AND combo_id < 2")
        }
    unbounded = got[0, "im0"]
    assert (unbounded["decided_by"], unbounded["consistent"], unbounded["ntr_share"]) == ("mla-u", False, 0.2), (
        f"ML-DP's consistent success outside the ball must not count: {unbounded}"
    )
    tie = got[0, "im1"]
    assert (tie["decided_by"], tie["decided_tau"], tie["flipped"]) == ("gmla", -0.85, ["w"]), (
        f"a tie is broken by attack name, then τ: {tie}"
    )
    outside = got[0, "im2"]
    assert not outside["success"] and outside["decided_by"] is None and outside["ssim"] is None, outside
    assert outside["ntr_share"] == 0.0 and outside["flipped"] == [], "a pair nobody fooled holds NT_R 0, no flips"
    inside = got[1, "im0"]
    assert (inside["decided_by"], inside["consistent"], inside["rmsd"]) == ("ml-dp", True, pytest.approx(0.0116)), (
        f"ML-DP inside the ball counts and brings its RMSD: {inside}"
    )
    assert got[1, "im1"]["flipped"] is None, "a row from before results.flipped leaves an unfooled pair's flips NULL"
    lowest = got[1, "im2"]
    assert (lowest["decided_by"], lowest["decided_tau"], lowest["consistent"]) == ("gmla", 0.0, False), lowest
    assert all(r["tau"] == -0.85 and r["attack"] == "worst-case" for r in got.values()), "the run's first τ"


def test_worst_case_rates_and_summary_match_the_loop(filled):
    store, runs = filled
    pairs = reference_pairs(runs)
    combos = reference_combinations(runs, pairs)
    summary = reference_summary(pairs, combos)
    with store.reader() as con:
        rates = fetch_dicts(con, "SELECT * FROM combination_rates WHERE attack = 'worst-case'")
        sizes = fetch_dicts(con, "SELECT * FROM rate_summary WHERE attack = 'worst-case'")
    check({(r["run_id"], r["combo_id"], r["eps"]): r for r in rates}, combos, "combination_rates")
    check({(r["run_id"], r["size"], r["eps"]): r for r in sizes}, summary, "rate_summary")
    settings = {(r["run_id"], r["eps"]) for r in sizes}
    assert settings == {("wc", 0.01), ("wc", 0.05), ("part", 0.01)}, (
        f"a worst case only where a run has two attacks at that ε (not 'solo', not 'part' at 0.02): {settings}"
    )


def test_pseudo_rows_stay_out_of_what_counts_real_rows(filled, tmp_path):
    store, runs = filled
    real = sum(len(r.rows) for r in runs.values())
    with store.reader() as con:
        assert con.execute("SELECT count(*) FROM results WHERE attack = 'worst-case'").fetchone()[0] == 0
        overview = {r["run_id"]: r["rows"] for r in fetch_dicts(con, "SELECT * FROM run_overview")}
        assert overview == {k: len(r.rows) for k, r in runs.items()}, "run_overview counts real rows"
        for view in ("setting_totals", "label_rates"):
            attacks = {r[0] for r in con.execute(f"SELECT DISTINCT attack FROM {view}").fetchall()}
            assert "worst-case" not in attacks, f"{view} holds the worst case"
    assert all(k.attack != "worst-case" for k in store.done_keys("wc")), "resume keys"
    merged = ResultStore(tmp_path / "merged.duckdb")
    assert sum(r.rows_added for r in merged.merge([store.path])) == real, "a merge copies real rows only"


def test_paper_layout_ends_with_the_worst_case(filled):
    store, runs = filled
    pairs = reference_pairs(runs)
    ref = reference_summary(pairs, reference_combinations(runs, pairs))["wc", 2, 0.01]
    with store.reader() as con:
        layout = paper_layout(con, ["wc"], Selection(size=2, eps=0.01, tau=-0.85))
        filtered = paper_layout(con, ["wc"], Selection(size=2, eps=0.01, tau=-0.85), attacks=["gmla", "mla-u"])
        solo = paper_layout(con, ["solo"], Selection(size=1))
    last = layout.rows[-1]
    assert [r.keys[1] for r in layout.rows] == ["mla-u", "mla-lp", "gmla", "ml-dp", "worst-case"], (
        "the attacks in the paper's order, then the worst case"
    )
    assert last.labels == ("ASL", "Worst case"), last.labels
    expected = [
        f"{format_cell_value(ref['fr_n_mean'], 1)} ± {format_cell_value(ref['fr_n_std'], 1)}",
        f"{format_cell_value(ref['fr_s_mean'], 1)} ± {format_cell_value(ref['fr_s_std'], 1)}",
        f"{format_cell_value(ref['nt_r_mean'], 1)} ± {format_cell_value(ref['nt_r_std'], 1)}",
        format_cell_value(ref["ssim_pooled"], 2),
    ]
    assert [format_cell(c) for c in last.cells] == expected, "the worst case's cells"
    for cell, key in zip(last.cells, ("fr_n_mean", "fr_s_mean", "nt_r_mean", "ssim_pooled")):
        assert math.isclose(cell.mean, ref[key], rel_tol=1e-9), key
    assert WORST_CASE_NOTE in layout.notes, layout.notes
    markdown = to_markdown(layout)
    assert f"|  | Worst case | {' | '.join(expected)} |" in markdown, markdown
    latex = to_latex(layout)
    in_tex = " & ".join(e.replace("±", r"$\pm$") for e in expected)
    assert f" & Worst case & {in_tex} " + "\\\\" in latex, latex
    assert to_csv(layout).splitlines()[-1].startswith("asl,worst-case,"), to_csv(layout)
    assert list(to_rich(layout).columns[1].cells)[-1] == "Worst case", "rich table"
    assert "worst-case" not in {r.keys[1] for r in filtered.rows}, "naming attacks leaves the worst case out"
    assert [r.keys[1] for r in solo.rows] == ["mla-u"] and WORST_CASE_NOTE not in solo.notes, "one attack: no row"


def format_cell_value(value: float, digits: int) -> str:
    """``value`` rounded half up to ``digits`` decimals, written out independently of results.tables."""
    from decimal import ROUND_HALF_UP, Decimal

    return str(Decimal(f"{value:.12g}").quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP))


def test_worst_case_is_a_display_name_not_an_attack():
    from bench.attacks import ATTACKS
    from bench.names import ATTACK_NAMES, attack_display, paper_order

    assert "worst-case" not in ATTACKS and "worst-case" not in ATTACK_NAMES, "never a registered attack"
    assert attack_display("worst-case") == "Worst case"
    assert paper_order(["worst-case", "gmla", "zz-plugin", "mla-u"])[-1] == "worst-case", "the worst case last"
