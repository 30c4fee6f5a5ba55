"""``bench kg import`` recovers a hierarchy from ML-GCN-style co-occurrence counts (files made
here in the authors' layout, none of their data shipped) and ``bench kg diff`` compares
graphs; the reference is the packaged VOC graph the counts are generated from."""

from __future__ import annotations

import pickle
import sys

import numpy as np
import pytest

import bench.cli
from bench.errors import BenchError
from kg.catalog import load_graph
from kg.cooccurrence import graph_diff, import_graph, read_cooccurrence, recover_edges


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

    # through the command line, then usable by name everywhere
    bench_ok(monkeypatch, "kg", "import", "--dataset", "voc", "--adj", str(path), "--name", "voc-authors")
    assert load_graph("voc-authors").sha256 == got.sha256, "saved under its name"
    capsys.readouterr()
    bench_ok(monkeypatch, "kg", "diff", "voc", "voc-authors")
    out = capsys.readouterr().out
    assert f"{voc.n - voc.n_labels} label groups in both; 0 only in 'voc', 0 only in 'voc-authors'" in out.replace(
        "\n", " "
    ), out


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


def read_cooccurrence_from(blob: dict, folder):
    path = folder / "counts.pkl"
    path.write_bytes(pickle.dumps(blob))
    return read_cooccurrence(path)


def bench_ok(monkeypatch, *args: str) -> None:
    monkeypatch.setattr(sys, "argv", ["bench", *args])
    with pytest.raises(SystemExit) as done:
        bench.cli.main()
    assert done.value.code in (0, None), f"bench {' '.join(args)} exited {done.value.code}"
