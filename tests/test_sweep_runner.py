"""The sweep runner on the toy dataset and model (``tests/sweep_fixtures.py``): the graph store's
masks against the graph, packed batches against attacking each pair alone through the attack
engine directly, shards merged against one run, a crashed run resumed against an
uninterrupted one, the combination records, and bad input."""

from __future__ import annotations

import itertools
from dataclasses import fields, replace

import networkx as nx
import numpy as np
import pytest
import torch

from bench.attacks import create_attack
from bench.attacks.targets import omega_masks, pair_targets
from bench.errors import BenchError
from bench.metrics import pair_metrics
from bench.sweep.config import attack_settings, shard_db_path, sweep_config
from bench.sweep.inputs import SweepModel
from bench.sweep.planning import PlannedCombination, clean_predictions
from bench.sweep.presets import FAST, PAPER, SweepOptions
from bench.sweep.runner import run_sweep
from kg.catalog import load_graph
from kg.closure import GraphTensors, turn_off_closure
from kg.stores import open_store
from kg.stores.closures import closure_masks, stored_graph_name
from results.store import ResultStore
from tests.dags import consistent_prediction
from tests.sweep_fixtures import NAME, ToyDataset, ToyNet, toy_graph

# compares results bit for bit or near a decision boundary: ./setup.sh test reruns it under emulated CPUs
pytestmark = pytest.mark.bitwise

ATTACKS = ("ml-dp", "gmla", "mla-u", "mla-lp")  # an Auto-PGD family that does not start the grid
ROW_SQL = "SELECT * EXCLUDE (seconds) FROM results ORDER BY combo_id, image_id, attack, eps, tau"
SUMMARY_SQL = "SELECT * FROM rate_summary ORDER BY size, attack, eps, tau"


# the fast preset with every combination of each size (the toy graph has few)
TOY = replace(FAST, name="toy", combinations_per_size=None)


def toy_config(shard=(0, 1), preset=TOY, name="", device="", model=None, **overrides):
    graph = toy_graph()
    model = model or SweepModel(ToyNet(graph.n), NAME, {"model": NAME}, "", 8)
    options = {"attacks": ATTACKS, "eps": (0.06,), "sizes": (1, 2), "images_per_combination": 2, "iterations": 10}
    options = SweepOptions(**{**options, **overrides})
    return sweep_config(NAME, model, graph, preset, options, name=name, shard=shard, device=device)


def sweep(path, config, batch_size=8, store=None, model=None, **options):
    graph = toy_graph()
    model = model or ToyNet(graph.n).eval()
    data = ToyDataset("test", graph)
    return run_sweep(config, model, data, graph, store or ResultStore(path), batch_size=batch_size, **options)


def fetch(path, sql):
    """Rows as tuples, list columns (labels, flipped) as tuples too, so that rows hash."""
    with ResultStore(path, create=False).reader() as con:
        rows = con.execute(sql).fetchall()
    return [tuple(tuple(v) if isinstance(v, list) else v for v in row) for row in rows]


def rounded(rows):
    """Rows with floats to 9 significant digits (sums over rows stored in another order differ in the last bit)."""
    return [tuple(float(f"{v:.9g}") if isinstance(v, float) else v for v in row) for row in rows]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted run: the reference for the other tests."""
    path = tmp_path_factory.mktemp("reference") / "single.duckdb"
    outcome = sweep(path, toy_config())
    return path, outcome


def test_store_masks_agree_with_the_graph():
    for graph in (toy_graph(), load_graph("stamps")):
        nxg = graph.to_networkx()
        combos = [c for k in (1, 2) for c in itertools.combinations(range(graph.n_labels), k)][:60]
        planned = [PlannedCombination(i, c, tuple(graph.nodes[v] for v in c), 1, (0,)) for i, c in enumerate(combos)]
        ancestors, descendants = closure_masks(graph, planned)
        for i, c in enumerate(combos):
            up = set().union(*(nx.ancestors(nxg, v) for v in c))
            down = set().union(*(nx.descendants(nxg, v) for v in c))
            assert set(ancestors[i].nonzero().flatten().tolist()) == up, (
                f"{graph.name} {c}: store ancestors != networkx"
            )
            assert set(descendants[i].nonzero().flatten().tolist()) == down, (
                f"{graph.name} {c}: store descendants != networkx"
            )
        # Ψ with the store's masks equals Ψ computed from the graph alone
        rng = np.random.default_rng(0)
        g = GraphTensors(graph)
        pred = torch.tensor(np.array([consistent_prediction(graph, rng) for _ in combos]))
        omega = torch.zeros_like(pred)
        for i, c in enumerate(combos):
            omega[i, list(c)] = True
        with_masks = turn_off_closure(pred, omega, g, descendants=descendants)
        assert torch.equal(with_masks, turn_off_closure(pred, omega, g)), (
            f"{graph.name}: Ψ from the store's masks differs"
        )


def test_rows_equal_each_pair_attacked_alone(reference):
    """Packed batches across combinations give each pair's result as if it were attacked alone
    in a padded batch of the same B (the attack engine called directly, Ψ from ``pair_targets``,
    metrics from ``pair_metrics`` on the engine's logits). The contract holds at one B: the
    reference never computes at another batch shape than the runner's."""
    path, outcome = reference
    graph, data = toy_graph(), ToyDataset("test", toy_graph())
    model = ToyNet(graph.n).eval()
    g = GraphTensors(graph)
    clean = clean_predictions(model, data, graph)
    row_of = {int(i): r for r, i in enumerate(clean.indices)}
    rows = fetch(
        path,
        "SELECT c.labels, r.image_id, r.attack, r.success, r.consistent, r.ntr_share, r.success_iteration, r.linf, "
        "r.ssim, r.rmsd, r.flipped "
        "FROM results r JOIN combinations c USING (run_id, combo_id) ORDER BY r.attack, r.combo_id, r.image_id",
    )
    assert len(rows) == outcome.pairs == outcome.written, "every planned row was written once"
    steps = {"gmla": 10, "mla-u": 10, "ml-dp": FAST.attack_steps["ml-dp"], "mla-lp": FAST.attack_steps["mla-lp"]}
    for attack, group in itertools.groupby(rows, key=lambda r: r[2]):
        group = list(group)
        engine = create_attack(attack, eps=0.06, steps=steps[attack], **({"tau": -0.85} if attack == "gmla" else {}))
        index = [int(r[1].rsplit("/", 1)[1]) for r in group]
        x = torch.stack([data[i][0] for i in index])
        # the runner's clean pass (its batches), not a forward at this group's batch shape
        positive = clean.positive[[row_of[i] for i in index]]
        targets = pair_targets(positive, omega_masks(graph, [list(r[0]) for r in group]), g)
        inputs = targets.attack_inputs(engine.semantic)
        alone = [
            engine(model, x[p : p + 1], *(t[p : p + 1] for t in inputs), batch_size=8, max_targets=2)
            for p in range(len(group))
        ]
        adv = torch.cat([a.adv for a in alone])
        # the logits of the engine's own forward at B rows (the runner's too): a forward at another
        # batch shape may round a logit differently, and MLA-LP ends pairs on the threshold
        logits = torch.cat([a.logits for a in alone])
        m = pair_metrics(targets, logits, g, x, adv)
        for p, (labels, image_id, _, success, consistent, ntr, its, linf, ssim, rmsd, flipped) in enumerate(group):
            where = f"{attack} on {labels} / {image_id}"
            assert success == bool(m.success[p]) and consistent == bool(m.consistent[p]), (
                f"{where}: success/consistency differ"
            )
            assert ntr == pytest.approx(float(m.ntr_share[p])), f"{where}: NT_R share differs"
            changed = tuple(graph.nodes[k] for k in m.flipped[p].nonzero().flatten().tolist())
            assert flipped == changed, f"{where}: flipped {flipped}, the pair alone changed {changed} outside Ψ"
            assert linf == pytest.approx(float(m.linf[p]), abs=1e-6), f"{where}: ℓ∞ differs"
            expected_its = int(alone[p].iterations[0]) if success else steps[attack]
            assert its == expected_its, f"{where}: iterations {its} != {expected_its}"
            assert (ssim is None) == (not success), f"{where}: SSIM only for successful rows"
            assert (rmsd is None) == (not (success and attack == "ml-dp")), (
                f"{where}: RMSD only for successful ML-DP rows"
            )
    assert any(r[3] for r in rows) and not all(r[3] for r in rows), "the toy sweep has successes and failures"


def test_occupancy_equals_a_brute_force_count_of_the_stored_iterations(reference):
    """Each Auto-PGD pair holds its slot for its iterations + 1 ticks (the clean image's evaluation)."""
    path, outcome = reference
    stats = outcome.slot_use["Auto-PGD"]
    held = fetch(path, "SELECT sum(success_iteration + 1) FROM results WHERE attack IN ('gmla', 'mla-u')")[0][0]
    assert stats.live == held, f"engine counted {stats.live} live slot·ticks, the rows say {held}"
    assert stats.occupancy == pytest.approx(held / (stats.batch * stats.ticks)), "occupancy = live ÷ (B × ticks)"
    assert set(outcome.slot_use) == {"Auto-PGD", "ML-DP", "MLA-LP"}, "one engine per attack family"


def test_combination_records_and_completion(reference):
    path, outcome = reference
    graph = toy_graph()
    combos = fetch(path, "SELECT combo_id, labels, eligible, attacked, complete FROM combinations ORDER BY combo_id")
    expected = list(itertools.combinations(graph.labels, 1)) + list(itertools.combinations(graph.labels, 2))
    assert [tuple(c[1]) for c in combos] == expected, "every 1- and 2-combination, in enumeration order"
    assert all(c[4] for c in combos), "every combination is marked complete"
    assert all(c[3] == min(c[2], 2) for c in combos), "attacked = min(eligible, N)"
    assert outcome.finished and fetch(path, "SELECT finished IS NOT NULL FROM runs")[0][0], "the run is finished"
    empty = fetch(path, "SELECT count(*) FROM combinations WHERE eligible = 0")[0][0]
    assert empty == outcome.empty, "the outcome counts the combinations without images"


def test_size_three_keeps_empty_combinations(tmp_path):
    config = toy_config(attacks=("mla-u",), sizes=(3,), images_per_combination=1, iterations=2)
    outcome = sweep(tmp_path / "r.duckdb", config)
    combos = fetch(tmp_path / "r.duckdb", "SELECT eligible, attacked, complete FROM combinations")
    assert len(combos) == 20, "all C(6, 3) combinations are recorded"
    assert outcome.empty == sum(1 for c in combos if c[0] == 0) > 0, (
        "combinations without eligible images are kept with 0"
    )
    assert all(c[2] for c in combos), "empty combinations count as complete"


def test_shards_merged_equal_the_single_run(reference, tmp_path):
    path, _ = reference
    files = []
    for i in range(2):
        file = shard_db_path(tmp_path / "results.duckdb", i, 2)
        sweep(file, toy_config(shard=(i, 2)))
        ids = {r[0] for r in fetch(file, "SELECT combo_id FROM combinations")}
        assert all(c % 2 == i for c in ids), f"shard {i}/2 holds only its combinations"
        files.append(file)
    assert [f.name for f in files] == ["results.shard-0-of-2.duckdb", "results.shard-1-of-2.duckdb"], "shard file names"
    merged = ResultStore(tmp_path / "merged.duckdb")
    merged.merge(files)
    assert fetch(merged.path, ROW_SQL) == fetch(path, ROW_SQL), "merged shard rows equal the single run's"
    assert fetch(merged.path, "SELECT finished IS NOT NULL FROM runs")[0][0], (
        "every shard merged and complete: the run is finished"
    )
    assert rounded(fetch(merged.path, SUMMARY_SQL)) == rounded(fetch(path, SUMMARY_SQL)), (
        "merged shard tables equal the single run's"
    )


class CrashingStore(ResultStore):
    """A store whose process 'dies' (raises) when the ``crash_at``-th batch of rows arrives."""

    def __init__(self, path, crash_at: int) -> None:
        super().__init__(path)
        self.crash_at, self.writes = crash_at, 0

    def write_rows(self, run_id, rows, complete=(), artifacts=()):
        if rows:
            self.writes += 1
            if self.writes == self.crash_at:
                raise KeyboardInterrupt("killed")
        return super().write_rows(run_id, rows, complete, artifacts)


def test_crashed_run_resumes_to_the_uninterrupted_result(reference, tmp_path):
    path, outcome = reference
    file = tmp_path / "crash.duckdb"
    with pytest.raises(KeyboardInterrupt):
        sweep(file, toy_config(), store=CrashingStore(file, crash_at=5))
    partial = fetch(file, "SELECT count(*) FROM results")[0][0]
    assert 0 < partial < outcome.pairs, "the crash left part of the rows"
    resumed = sweep(file, toy_config())
    assert resumed.resumed == partial and resumed.written == outcome.pairs - partial, (
        "resume computes only what is missing"
    )
    assert fetch(file, ROW_SQL) == fetch(path, ROW_SQL), "resumed rows equal the uninterrupted run's"
    assert rounded(fetch(file, SUMMARY_SQL)) == rounded(fetch(path, SUMMARY_SQL)), (
        "resumed tables equal the uninterrupted run's"
    )
    again = sweep(file, toy_config())
    assert again.written == 0 and again.resumed == outcome.pairs, "a finished run re-run does nothing"


def test_another_configuration_under_the_same_name_is_refused(reference, tmp_path):
    file = tmp_path / "named.duckdb"
    sweep(file, toy_config(attacks=("mla-u",), sizes=(1,), iterations=2, name="mine"))
    before = fetch(file, ROW_SQL)
    with pytest.raises(BenchError, match="run 'mine' .* has another configuration .*eps"):
        sweep(file, toy_config(attacks=("mla-u",), sizes=(1,), iterations=2, name="mine", eps=(0.05,)))
    assert fetch(file, ROW_SQL) == before, "the stored rows are untouched"


def test_no_eligible_image_is_one_line_and_stores_nothing(tmp_path):
    graph = toy_graph()
    silent = ToyNet(graph.n)
    with torch.no_grad():
        silent.linear.bias.fill_(-1e3)  # predicts nothing: consistent, but no target is positive
    message = "no test image of sweep-toy is eligible for any target set of size 1, 2: .* predicts positive is 0,"
    with pytest.raises(BenchError, match=message):
        sweep(tmp_path / "none.duckdb", toy_config(), model=silent.eval())
    assert fetch(tmp_path / "none.duckdb", "SELECT count(*) FROM runs")[0][0] == 0, "no run is recorded"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [({"eps": (0.0,)}, r"`eps` 0: outside \(0, 1\]"), ({"sizes": (1, 7)}, r"\|Ω\| = 7 is larger than the 6 labels")],
)
def test_bad_settings_fail_before_any_work_or_write(tmp_path, overrides, message):
    with pytest.raises(BenchError, match=message):
        sweep(tmp_path / "bad.duckdb", toy_config(**overrides))
    bad = tmp_path / "bad.duckdb"
    assert not bad.exists() or fetch(bad, "SELECT count(*) FROM runs")[0][0] == 0, "no run is recorded"


def test_settings_follow_the_preset_and_the_contract():
    config = toy_config(
        attacks=("gmla", "mla-u", "mla-lp", "ml-dp"), tau=(-0.85, -0.5), preset=FAST, images_per_combination=6
    )
    settings = attack_settings(config)
    by = {(s.attack, s.tau): s for s in settings}
    assert {s.tau for s in settings if s.attack == "gmla"} == {-0.85, -0.5}, "GMLA runs at every τ"
    assert [s.tau for s in settings if s.attack == "mla-u"] == [-0.85], "attacks without τ run once, at τ[0]"
    assert by[("mla-lp", -0.85)].steps == FAST.attack_steps["mla-lp"], "MLA-LP takes the preset's steps"
    assert by[("ml-dp", -0.85)].images == FAST.attack_images["ml-dp"], "ML-DP attacks fewer images under fast"
    assert by[("gmla", -0.85)].steps == 10 and by[("gmla", -0.85)].images == 6, "Auto-PGD attacks take N and all images"
    paper = toy_config(attacks=("mla-lp", "ml-dp"), iterations=300, preset=PAPER)
    assert {s.attack: s.steps for s in attack_settings(paper)} == {"mla-lp": 10, "ml-dp": 100}, "the paper's budgets"


def test_the_official_closure_is_part_of_the_configuration(tmp_path):
    default, official = toy_config(), toy_config(closure="official")
    assert "closure" not in default.extra, "the default keeps the ids of runs stored before the option"
    assert official.extra["closure"] == "official" and official.config_hash != default.config_hash, (
        "another Ψ, another run"
    )
    outcome = sweep(
        tmp_path / "official.duckdb", toy_config(closure="official", attacks=("gmla",), sizes=(1,), iterations=2)
    )
    assert outcome.finished and outcome.written == outcome.pairs > 0


def test_bf16_precision_is_its_own_run_and_agrees_with_fp32(reference, tmp_path):
    """``--precision bf16``: another configuration (another run id), the model under autocast;
    on the toy sweep its success flags agree with fp32's for most pairs."""
    path, _ = reference
    default, bf16 = toy_config(), toy_config(precision="bf16")
    assert "precision" not in default.extra and bf16.config_hash != default.config_hash
    outcome = sweep(tmp_path / "bf16.duckdb", bf16)
    assert outcome.finished and outcome.written == outcome.pairs
    ours = dict(
        ((r[0], r[1], r[2]), r[3])
        for r in fetch(tmp_path / "bf16.duckdb", "SELECT combo_id, image_id, attack, success FROM results")
    )
    fp32 = dict(
        ((r[0], r[1], r[2]), r[3]) for r in fetch(path, "SELECT combo_id, image_id, attack, success FROM results")
    )
    same = sum(ours[k] == fp32[k] for k in fp32)
    assert set(ours) == set(fp32) and same >= 0.8 * len(fp32), f"{same} of {len(fp32)} success flags agree"


def test_typed_protocol_keeps_the_stored_layout_and_round_trips():
    """``RunConfig.protocol`` is typed; what is stored (and hashed) keeps the layout runs were
    stored with, so their ids do not move."""
    from results.schema import Protocol

    config = toy_config()
    assert set(config.extra) == {
        "split",
        "target",
        "combos",
        "combinations_per_size",
        "include_abstract",
        "steps",
        "images",
    }
    assert config.extra["target"] == "off" and config.protocol.split == "test" and config.protocol.steps["gmla"] == 10
    for protocol in (
        Protocol(),
        Protocol(closure="official", precision="bf16", steps={"gmla": 5}, images={"ml-dp": 2}),
    ):
        assert Protocol.from_extra(protocol.to_extra()) == protocol, "round trip"
    assert "closure" not in Protocol().to_extra() and "precision" not in Protocol().to_extra(), "defaults left out"


def test_options_take_the_preset_only_where_not_given():
    given = SweepOptions(
        attacks=("gmla",),
        eps=(0.02,),
        tau=(-0.5,),
        sizes=(2, 1, 2),
        images_per_combination=3,
        combos="sampled",
        combinations_per_size=7,
        iterations=9,
        steps={"mla-lp": 2},
    )
    for preset, dataset in ((PAPER, "nus"), (PAPER, "voc"), (FAST, "stamps")):
        defaults = SweepOptions().filled(preset, dataset)
        expected_images = 10 if (preset, dataset) == (PAPER, "nus") else preset.images_per_combination
        assert (defaults.eps, defaults.tau, defaults.sizes, defaults.iterations) == (
            preset.eps,
            preset.tau,
            preset.sizes,
            preset.iterations,
        ), f"{preset.name}: the preset's grid"
        assert defaults.images_per_combination == expected_images, f"{preset.name} on {dataset}: images"
        assert defaults.combinations_per_size == preset.combinations_per_size, f"{preset.name}: combinations"
        for field in fields(SweepOptions):
            one = replace(SweepOptions(), **{field.name: getattr(given, field.name)})
            filled = one.filled(preset, dataset)
            for other in fields(SweepOptions):
                want = getattr(one if other.name == field.name else defaults, other.name)
                assert getattr(filled, other.name) == want, f"given {field.name}: {other.name} is {want!r}"
    assert given.sizes == (1, 2), "sizes are sorted and unique"
    steps = dict(toy_config(attacks=("mla-lp", "ml-dp", "gmla"), steps={"mla-lp": 1}, iterations=7).protocol.steps)
    assert steps == {"mla-lp": 1, "ml-dp": TOY.attack_steps["ml-dp"], "gmla": 7}, "steps over the preset's"
    for bad, message in (
        ({"tau": (1.5,)}, r"`tau` 1.5: outside \[-1, 1\]"),
        ({"sizes": (0,)}, r"`sizes` 0: sizes start at 1"),
        ({"iterations": 0}, r"`iterations` 0: must be a positive number"),
        ({"attacks": ("gmal",)}, r"unknown attack 'gmal'"),
        ({"eps": ()}, r"`eps` is empty"),
        ({"closure": "mine"}, r"unknown closure 'mine'"),
        ({"steps": {"ml-dp": 0}}, r"`steps` 0: ml-dp's iterations must be a positive number"),
        ({"steps": {"mla-lpp": 2}}, r"unknown attack 'mla-lpp'"),
    ):
        with pytest.raises(BenchError, match=message):
            SweepOptions(**bad)


def test_the_graph_store_file_can_be_chosen(tmp_path):
    graph = toy_graph()
    config = toy_config(attacks=("mla-u",), sizes=(1,), iterations=2)
    mine = tmp_path / "mine.lbug"
    outcome = run_sweep(
        config,
        ToyNet(graph.n).eval(),
        ToyDataset("test", graph),
        graph,
        ResultStore(tmp_path / "r.duckdb"),
        batch_size=8,
        graph_db=mine,
    )
    assert outcome.written > 0 and mine.exists(), "the closures came from the Ladybug file that was named"
    with open_store("ladybug", path=mine) as store:
        assert stored_graph_name(graph) in store.graphs(), "the toy graph was loaded into that file"


@pytest.mark.neo4j
def test_neo4j_closures_give_the_rows_of_ladybug(reference, tmp_path):
    """The graph store only answers the closures: a sweep through Neo4j writes bitwise the rows
    of the reference sweep through Ladybug."""
    path, _ = reference
    sweep(tmp_path / "neo4j.duckdb", toy_config(), graph_store="neo4j")
    assert fetch(tmp_path / "neo4j.duckdb", ROW_SQL) == fetch(path, ROW_SQL), "Neo4j's rows differ from Ladybug's"
