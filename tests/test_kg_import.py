"""``bench kg import`` recovers a hierarchy from ML-GCN-style co-occurrence counts (files made
here in the authors' layout, none of their data shipped) and ``bench kg diff`` compares
graphs; the reference is the packaged VOC graph the counts are generated from. A file whose
rows are in another order than the one assumed is refused, and recovered exactly once
``--labels`` gives that order."""

from __future__ import annotations

import json
import pickle
import sys

import numpy as np
import pytest

import bench.cli
from bench.errors import BenchError
from kg.catalog import load_graph
from kg.cooccurrence import Cooccurrence, read_cooccurrence, recover_edges
from kg.diff import graph_diff
from kg.graph_import import import_graph, recover
from kg.label_order import authors_orders, label_order
from kg.plausibility import SHALLOW_STEPS, _nesting

# The rows of the authors' VOC file, as their code lists them (MLGCN/cooccurrence.py line 20 and
# e.g. gcnscripts/consistent_mll_gcn_voc.py line 233 of hassan-mahmood/SemanticMLLAttacks), in
# their spelling.
AUTHORS_VOC = (
    "person bird cat cow dog horse sheep aeroplane bicycle boat bus car motorbike train "
    "bottle chair dining_table pot_plant sofa tv_monitor"
).split()
OURS = {"dining_table": "diningtable", "pot_plant": "pottedplant", "tv_monitor": "tvmonitor"}


def counts_from(graph, n_images: int = 400, seed: int = 0) -> dict:
    """Co-occurrence counts of random label sets extended with their ancestors (every label also
    appears alone, so no two nodes share their images by chance)."""
    rng = np.random.default_rng(seed)
    y = np.zeros((n_images + graph.n_labels, graph.n), dtype=np.int64)
    for i in range(n_images):
        for v in rng.choice(graph.n_labels, size=int(rng.integers(1, 4)), replace=False):
            y[i, v] = 1
    for v in range(graph.n_labels):
        y[n_images + v, v] = 1
    for v in range(graph.n):
        for a in graph.ancestors(v):
            y[:, a] |= y[:, v]
    return {"adj": (y.T @ y).astype(np.float64), "nums": y.sum(0).astype(np.float64)}


def rows_in_order(graph, counts: dict, names: list[str]) -> dict:
    """The counts with the first rows in the order of ``names`` (dataset labels), abstract nodes after."""
    rows = [graph.index(OURS.get(n, n)) for n in names] + list(range(graph.n_labels, graph.n))
    index = np.asarray(rows)
    return {"adj": counts["adj"][np.ix_(index, index)], "nums": counts["nums"][index]}


def structure(graph):
    """Each node's dataset labels below it, by node kind: what a recovered graph must reproduce."""
    return sorted(
        tuple(sorted(graph.nodes[u] for u in graph.descendants(v) | {v} if u < graph.n_labels)) for v in range(graph.n)
    )


def test_the_voc_hierarchy_is_recovered_from_its_counts(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BENCH_DATA", str(tmp_path / "data"))
    voc = load_graph("voc")
    path = tmp_path / "voc_adj.pkl"
    path.write_bytes(pickle.dumps(counts_from(voc)))
    got = import_graph("voc", path, "voc-authors")
    assert got.nodes[: voc.n_labels] == voc.nodes[: voc.n_labels], "the dataset's labels first, in its order"
    assert got.n == voc.n and len(got.edges) == len(voc.edges), "every node placed, one parent each"
    assert structure(got) == structure(voc), "the same label groups under the abstract nodes"
    assert all(r.in_a and r.in_b for r in graph_diff(voc, got)), "diff: every group in both"
    assert "carnivore" in got.nodes or "placental" in got.nodes, f"abstract nodes named from WordNet: {got.nodes[20:]}"
    fit = got.meta["plausibility"]
    assert fit["verdict"] == "plausible" and fit["top"] == "whole.n.02", fit
    assert fit["shallow"] * 2 <= fit["abstract_nodes"] == voc.n - voc.n_labels, "WordNet's own groups fit"
    assert got.meta["file_label_order_source"].endswith("(assumed)"), "the order it assumed is recorded"

    # through the command line, then usable by name everywhere
    capsys.readouterr()
    bench_ok(monkeypatch, "kg", "import", "--dataset", "voc", "--adj", str(path), "--name", "voc-authors")
    out = capsys.readouterr().out.replace("\n", " ")
    assert "label order assumed: the dataset's (kg/labels/voc.csv)" in out, "never assumed silently"
    assert "WordNet fit:" in out and "plausible" in out, out
    assert load_graph("voc-authors").sha256 == got.sha256, "saved under its name"
    bench_ok(monkeypatch, "kg", "diff", "voc", "voc-authors")
    out = capsys.readouterr().out.replace("\n", " ")
    assert f"{voc.n - voc.n_labels} label groups in both; 0 only in 'voc', 0 only in 'voc-authors'" in out, out
    assert "the same hierarchy" in out, out


def test_rows_in_another_order_are_refused_then_recovered_with_labels(tmp_path, monkeypatch, capsys):
    """The authors' VOC layout: person first. Assumed to be VOC's order, the groups make no sense
    (refused, one line naming --labels and --accept-implausible); with the order given they are
    VOC's own."""
    monkeypatch.setenv("BENCH_DATA", str(tmp_path / "data"))
    voc = load_graph("voc")
    path = tmp_path / "sem_voc_adj.pkl"
    path.write_bytes(pickle.dumps(rows_in_order(voc, counts_from(voc), AUTHORS_VOC)))

    reported = []
    with pytest.raises(BenchError, match="implausible hierarchy") as refused:
        import_graph("voc", path, "voc-authors", report=reported.append)
    assert "`labels`" in str(refused.value) and "`accept_implausible`" in str(refused.value)
    assert [r.plausibility.plausible for r in reported] == [False], "reported once, before it is refused"
    wrong = recover("voc", path, "wrong").plausibility
    assert not wrong.plausible and wrong.shallow * 2 > len(wrong.fits), "most groups near whole.n.02"
    assert wrong.worst(1)[0].steps <= SHALLOW_STEPS and wrong.mean_steps < 2.5, wrong.summary()

    right = import_graph("voc", path, "voc-authors", labels="authors")
    assert right.nodes[: voc.n_labels] == voc.nodes[: voc.n_labels], "saved in the dataset's label order"
    assert structure(right) == structure(voc), "the true hierarchy, with --labels authors"
    assert right.meta["plausibility"]["mean_steps"] > 2 * wrong.mean_steps
    as_list = import_graph("voc", path, "x", labels=AUTHORS_VOC)
    assert as_list.sha256 == right.sha256, "the order as a list of names (their spelling) gives the same graph"
    kept = import_graph("voc", path, "kept", accept_implausible=True)
    assert kept.meta["plausibility"]["verdict"] == "implausible", "kept anyway, and marked"

    code, out, err = bench_code(capsys, monkeypatch, "kg", "import", "-d", "voc", "--adj", str(path), "--name", "va")
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert "--labels" in lines[0] and "--accept-implausible" in lines[0] and "--labels authors" in lines[0], lines[0]
    assert not (tmp_path / "data" / "graphs" / "va.json").exists(), "nothing saved"
    assert "worst fits" in out and "whole.n.02" in out, out

    names = tmp_path / "rows.txt"
    names.write_text("# the file's rows\n" + "\n".join(AUTHORS_VOC) + "\n")
    bench_ok(monkeypatch, "kg", "import", "-d", "voc", "--adj", str(path), "--labels", str(names), "--name", "va")
    assert load_graph("va").sha256 == right.sha256
    bench_ok(monkeypatch, "kg", "diff", "voc", "va")
    assert "the same hierarchy" in capsys.readouterr().out.replace("\n", " ")


def test_a_random_row_order_is_refused_and_recovered_with_a_comma_list(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_DATA", str(tmp_path / "data"))
    voc = load_graph("voc")
    order = [voc.nodes[i] for i in np.random.default_rng(7).permutation(voc.n_labels)]
    path = tmp_path / "shuffled.npz"
    np.savez(path, **rows_in_order(voc, counts_from(voc, seed=3), order))
    with pytest.raises(BenchError, match="implausible hierarchy"):
        import_graph("voc", path, "shuffled")
    got = import_graph("voc", path, "shuffled", labels=",".join(order))
    assert structure(got) == structure(voc)


def test_label_orders_given_wrong(tmp_path):
    labels = list(load_graph("voc").labels)
    with pytest.raises(BenchError, match=r"'aeroplan' is not a voc label \(did you mean 'aeroplane'"):
        label_order("voc", labels, ["aeroplan", *labels[1:]])
    with pytest.raises(BenchError, match="'bird' is listed twice"):
        label_order("voc", labels, ["bird", *labels[1:]])
    with pytest.raises(BenchError, match="names 19 of the 20 voc labels; missing: tvmonitor"):
        label_order("voc", labels, ",".join(labels[:-1]))
    with pytest.raises(BenchError, match="`labels` 'nofile.txt': no such file"):
        label_order("voc", labels, "nofile.txt")
    with pytest.raises(BenchError, match="known for nus, voc, not 'stamps'"):
        label_order("stamps", ["a", "b"], "authors")
    assumed = label_order("voc", labels, None)
    assert assumed.assumed and assumed.names == tuple(labels)
    assert label_order("voc", labels, "Dining Table," + ",".join(labels[:10] + labels[11:])).names[0] == "diningtable"


def test_the_shipped_authors_orders_name_their_source():
    data = authors_orders()
    assert data["source"]["repository"].endswith("hassan-mahmood/SemanticMLLAttacks")
    assert len(data["source"]["commit"]) == 40
    for dataset, n_rows in (("voc", 35), ("nus", 116)):
        entry = data["datasets"][dataset]
        labels = load_graph(dataset).labels
        assert sorted(entry["order"]) == sorted(labels), f"{dataset}: every label once"
        assert entry["rows"] == n_rows and len(entry["sha256"]) == 64 and entry["evidence"]
        assert entry["file"] == f"MLGCN/data/{dataset}/{dataset}_adj.pkl"
    voc = data["datasets"]["voc"]
    assert voc["authors_spelling"] == AUTHORS_VOC
    for dataset in ("voc", "nus"):
        order = label_order(dataset, load_graph(dataset).labels, "authors")
        assert order.names == tuple(data["datasets"][dataset]["order"]) and order.kind == "authors"


def test_a_nodes_count_against_its_childrens_union():
    adj = np.array([[0, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0]], dtype=float)
    assert _nesting(0, [1, 2], Cooccurrence(adj, np.array([5.0, 3, 3, 1]))) == "exact"  # 3 + 3 - 1
    assert _nesting(0, [1, 2], Cooccurrence(adj, np.array([7.0, 3, 3, 1]))) == "+2 images"
    adj3 = adj.copy()
    adj3[1, 3] = adj3[3, 1] = 1  # no pair (2, 3), so no triple: the union is pinned at 7 - 2
    assert _nesting(0, [1, 2, 3], Cooccurrence(adj3, np.array([5.0, 3, 3, 1]))) == "exact"
    adj3[2, 3] = adj3[3, 2] = 1  # the union is 4 or 5, as the triple is 1 or 0
    assert _nesting(0, [1, 2, 3], Cooccurrence(adj3, np.array([5.0, 3, 3, 1]))) == "approximate"
    assert _nesting(0, [1, 2, 3], Cooccurrence(adj3, np.array([6.0, 3, 3, 1]))) == "+1 images"


def test_a_different_hierarchy_shows_in_the_diff(tmp_path):
    voc = load_graph("voc")
    # move 'cat' from its parent to the root: the recovered graph differs there
    cat = voc.index("cat")
    edges = tuple(e for e in voc.edges if e[1] != cat)
    moved = type(voc)("moved", voc.nodes, edges, voc.n_labels)
    path = tmp_path / "moved.npz"
    np.savez(path, **counts_from(moved))
    got = import_graph("voc", path, "moved")
    rows = graph_diff(voc, got)
    only_voc = [r.labels for r in rows if r.in_a and not r.in_b]
    assert only_voc and all("cat" in labels for labels in only_voc), f"the groups that held cat differ: {only_voc}"


def test_counts_edge_cases_and_unsafe_files(tmp_path):
    # a label and an abstract node with the same images: the abstract node goes above
    counts = read_cooccurrence_from({"adj": np.array([[2.0, 2.0], [2.0, 2.0]]), "nums": np.array([2.0, 2.0])}, tmp_path)
    assert recover_edges(counts, 1) == [(1, 0)]
    with pytest.raises(BenchError, match="never occur"):
        recover_edges(read_cooccurrence_from({"adj": np.zeros((2, 2)), "nums": np.array([1.0, 0.0])}, tmp_path), 1)
    with pytest.raises(BenchError, match="holds no 'adj' and 'nums'"):
        read_cooccurrence_from({"other": np.zeros(2)}, tmp_path)

    class Payload:
        def __reduce__(self):
            import os

            return (os.mkdir, (str(tmp_path / "ran"),))

    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"adj": Payload(), "nums": np.zeros(2)}))
    with pytest.raises(BenchError, match="pass `trust`"):
        read_cooccurrence(evil)
    assert not (tmp_path / "ran").exists(), "the payload did not run"
    with pytest.raises(BenchError, match="no label table for dataset 'mine'"):
        import_graph("mine", evil, "x")
    assert json.dumps(authors_orders()), "the shipped orders are plain JSON"


def read_cooccurrence_from(blob: dict, folder):
    path = folder / "counts.pkl"
    path.write_bytes(pickle.dumps(blob))
    return read_cooccurrence(path)


def bench_code(capsys, monkeypatch, *args: str) -> tuple[int, str, str]:
    """Exit code, standard output and standard error of ``bench ARGS`` run in this process."""
    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["bench", *args])
    with pytest.raises(SystemExit) as done:
        bench.cli.main()
    out, err = capsys.readouterr()
    return int(done.value.code or 0), out, err


def bench_ok(monkeypatch, *args: str) -> None:
    monkeypatch.setattr(sys, "argv", ["bench", *args])
    with pytest.raises(SystemExit) as done:
        bench.cli.main()
    assert done.value.code in (0, None), f"bench {' '.join(args)} exited {done.value.code}"
