"""``bench kg build | show | view | export`` through Typer's CliRunner, outputs checked
against the graphs themselves and against independent readers (networkx GraphML, Ladybug
running the Cypher script, an HTML parser)."""

from __future__ import annotations

import json
import re
import sys
from html.parser import HTMLParser

import networkx as nx
import pytest
from typer.testing import CliRunner

import bench.cli
from bench.cli.apps import app
from bench.errors import BenchError
from kg.catalog import PACKAGED, load_graph
from kg.graph import LabelGraph

runner = CliRunner()


@pytest.fixture(autouse=True)
def private_data(tmp_path, monkeypatch):
    """Each test gets its own data directory: graphs built here never shadow packaged ones."""
    monkeypatch.setenv("BENCH_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("COLUMNS", "200")


def invoke(*args: str):
    result = runner.invoke(app, list(args))
    if isinstance(result.exception, BenchError):
        raise result.exception
    assert result.exit_code == 0, f"bench {' '.join(args)} failed: {result.output}\n{result.exception!r}"
    return result.output


@pytest.fixture
def tricky_graph(tmp_path):
    """Names that break naive quoting: quotes, backslashes, a newline, non-ASCII, markup."""
    names = ("it's", 'say "hi"', "back\\slash", "two\nlines", "café ☕", "<b>&amp;</b>", "root")
    graph = LabelGraph("tricky", names, [(6, i) for i in range(6)], n_labels=6, ids=("x'", "", "", "", "", "", "r"))
    return graph, graph.save(tmp_path / "tricky.json")


def test_build_voc_writes_user_graph_equal_to_packaged(tmp_path):
    out = invoke("kg", "build", "--dataset", "voc")
    user = tmp_path / "data" / "graphs" / "voc.json"
    assert user.exists(), f"build must write $BENCH_DATA/graphs/voc.json: {out}"
    assert "same as the packaged graph" in out, out
    assert LabelGraph.load(user).sha256 == LabelGraph.load(PACKAGED / "voc.json").sha256
    assert "20 labels + 15 abstract nodes" in out, out


def test_build_from_a_users_label_table(tmp_path):
    table = tmp_path / "pets.csv"
    table.write_text(
        "# my pets\nlabel,synset,note\ndog,dog.n.01,\ncat,cat.n.01,\nhamster,hamster.n.01,\ncar,car.n.01,\n"
    )
    out = invoke("kg", "build", "--labels", str(table), "--name", "pets")
    assert "no packaged graph named 'pets'" in out, out
    graph = load_graph("pets")
    assert graph.labels == ("dog", "cat", "hamster", "car") and graph.is_tree, repr(graph)
    shown = invoke("kg", "show", "dog", "--graph", "pets")
    assert [graph.nodes[a] for a in graph.ancestors("dog")], "dog should have ancestors"
    for a in graph.ancestors("dog"):
        assert graph.nodes[a] in shown, f"ancestor {graph.nodes[a]} missing from show: {shown}"


def test_show_prints_ancestors_above_and_descendants_below():
    voc = load_graph("voc")
    out = invoke("kg", "show", "carnivore", "--graph", "voc")
    lines = out.splitlines()
    names = ("organism", "vertebrate", "placental", "cat", "dog")
    pos = {name: next(i for i, line in enumerate(lines) if re.search(rf"\b{name}\b", line)) for name in names}
    assert pos["organism"] < pos["vertebrate"] < pos["placental"] < pos["cat"], (
        f"ancestors must come above in order:\n{out}"
    )
    chain = [voc.nodes[a] for a in sorted(voc.ancestors("carnivore"), key=lambda a: len(voc.ancestors(a)))]
    assert chain == ["organism", "vertebrate", "placental"], chain
    assert f"{len(voc.ancestors('carnivore'))} ancestors, {len(voc.descendants('carnivore'))} descendants" in out, out
    # A DAG node shows every root-to-node path.
    oi = invoke("kg", "show", "Tomato", "--graph", "openimages")
    assert oi.count("Tomato") == 3 and "Fruit" in oi and "Vegetable" in oi, f"Tomato has two parents:\n{oi}"


def test_view_writes_self_contained_html(tmp_path, tricky_graph):
    for dataset, graph in (("voc", load_graph("voc")), (str(tricky_graph[1]), tricky_graph[0])):
        out_file = tmp_path / f"{graph.name}.html"
        invoke("kg", "view", "--graph", dataset, "--out", str(out_file))
        text = out_file.read_text(encoding="utf-8")
        assert not re.search(r"https?:|//[a-z]|\bsrc=|<link|@import", text), (
            "the view must not refer to any URL or file"
        )

        class Collect(HTMLParser):
            def __init__(self):
                super().__init__()
                self.texts, self.groups, self.paths, self.data = [], 0, 0, ""
                self._tag = None

            def handle_starttag(self, tag, attrs):
                self._tag, cls = tag, dict(attrs).get("class", "")
                self.groups += tag == "g" and cls.startswith("n ")
                self.paths += tag == "path" and cls.startswith("e")

            def handle_endtag(self, tag):
                self._tag = None

            def handle_data(self, data):
                if self._tag == "text":
                    self.texts.append(data)
                elif self._tag == "script" and data.strip().startswith("{"):
                    self.data = data

        parsed = Collect()
        parsed.feed(text)
        assert parsed.texts == list(graph.nodes), f"node names drawn {parsed.texts} != {graph.nodes}"
        assert (parsed.groups, parsed.paths) == (graph.n, len(graph.edges)), "one drawing per node and per edge"
        data = json.loads(parsed.data)
        assert data["up"] == [sorted(graph.ancestors(v)) for v in range(graph.n)], "embedded ancestors are wrong"


def test_view_default_path(tmp_path):
    out = invoke("kg", "view", "--graph", "voc")
    assert (tmp_path / "data" / "views" / "voc.html").exists(), out


def test_export_json_and_graphml(tmp_path):
    voc = load_graph("voc")
    assert LabelGraph.from_dict(json.loads(invoke("kg", "export", "--graph", "voc"))).sha256 == voc.sha256
    invoke("kg", "export", "--graph", "voc", "--format", "graphml", "--out", str(tmp_path / "voc.graphml"))
    g = nx.read_graphml(tmp_path / "voc.graphml")
    names = {v: d["name"] for v, d in g.nodes(data=True)}
    assert sorted(names.values()) == sorted(voc.nodes), "GraphML node names differ"
    assert {(names[p], names[c]) for p, c in g.edges} == {(voc.nodes[p], voc.nodes[c]) for p, c in voc.edges}
    assert {names[v] for v, d in g.nodes(data=True) if d["label"]} == set(voc.labels), "label flags differ"
    invoke("kg", "export", "--graph", "voc", "--out", str(tmp_path / "by-suffix.graphml"))
    assert nx.utils.graphs_equal(nx.read_graphml(tmp_path / "by-suffix.graphml"), g), "--out's suffix picks GraphML"


def run_cypher_in_ladybug(script: str, tmp_path):
    """Run the exported script in an embedded Cypher engine with the stores' schema."""
    import ladybug

    conn = ladybug.Connection(ladybug.Database(str(tmp_path / "ladybug")))
    conn.execute(
        "CREATE NODE TABLE Graph(name STRING, sha256 STRING, source STRING, n_nodes INT64, n_labels INT64, "
        "n_edges INT64, depth INT64, PRIMARY KEY (name))"
    )
    conn.execute(
        "CREATE NODE TABLE Label(key STRING, graph STRING, name STRING, idx INT64, source_id STRING, "
        "is_label BOOLEAN, PRIMARY KEY (key))"
    )
    conn.execute("CREATE REL TABLE IS_A(FROM Label TO Label)")
    body = "\n".join(line for line in script.splitlines() if not line.startswith("//"))
    conn.execute(body)

    def rows(query):
        result = conn.execute(query)
        out = []
        while result.has_next():
            out.append(tuple(result.get_next()))
        return out

    return rows


@pytest.mark.parametrize("which", ["voc", "tricky"])
def test_export_cypher_runs_and_round_trips_names(tmp_path, tricky_graph, which):
    graph, path = (load_graph("voc"), "voc") if which == "voc" else (tricky_graph[0], str(tricky_graph[1]))
    script = invoke("kg", "export", "--graph", path, "--format", "cypher")
    assert "$" not in script.replace("$BENCH", ""), "the script must be parameter-free"
    body = [line for line in script.splitlines() if not line.startswith("//")]
    assert sum(line.startswith("CREATE") for line in body) == 1 and body[-1].endswith(";"), "one CREATE statement"
    rows = run_cypher_in_ladybug(script, tmp_path)
    nodes = sorted(rows("MATCH (n:Label) RETURN n.idx, n.name, n.source_id, n.is_label, n.key"))
    expected = [
        (i, name, graph.ids[i], i < graph.n_labels, f"{graph.name}:{name}") for i, name in enumerate(graph.nodes)
    ]
    assert nodes == expected, f"names did not survive the Cypher round trip: {nodes} != {expected}"
    edges = set(rows("MATCH (c:Label)-[:IS_A]->(p:Label) RETURN p.idx, c.idx"))
    assert edges == set(graph.edges), "IS_A must point child -> parent"
    assert rows("MATCH (g:Graph) RETURN g.name, g.sha256") == [(graph.name, graph.sha256)]


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "args,message",
    [
        (("kg", "build", "--dataset", "vocc"), "unknown dataset 'vocc' (did you mean 'voc'"),
        (("kg", "build"), "give exactly one of --dataset NAME or --labels FILE"),
        (("kg", "show", "kat", "--graph", "voc"), "unknown label in graph 'voc': 'kat' (did you mean 'cat'"),
        (("kg", "show", "cat", "--graph", "nuss"), "unknown graph 'nuss' (did you mean 'nus'"),
        (("kg", "export", "--format", "grapml"), "unknown export format 'grapml' (did you mean 'graphml'"),
        (("kg", "view", "--graph", "missing.json"), "graph file missing.json does not exist"),
    ],
)
def test_bad_input_is_one_clear_error(args, message):
    with pytest.raises(BenchError, match=re.escape(message)):
        invoke(*args)


def test_failed_build_leaves_stored_graph_unchanged(tmp_path):
    invoke("kg", "build", "--dataset", "voc")
    stored = tmp_path / "data" / "graphs" / "voc.json"
    before = stored.read_bytes()
    table = tmp_path / "voc.csv"
    table.write_text("label,synset\ncat,cat.n.01\ndog,\n")
    with pytest.raises(BenchError, match="label 'dog' has no synset; its noun senses: dog.n.01"):
        invoke("kg", "build", "--labels", str(table), "--force")
    assert stored.read_bytes() == before, "a failed build must not touch the stored graph"


def test_broken_graph_file_exits_2_with_one_line(tmp_path, monkeypatch, capsys):
    broken = tmp_path / "broken.json"
    broken.write_text('{"format": "semattack-bench/label-graph", "nodes": [')
    monkeypatch.setattr(sys, "argv", ["bench", "kg", "show", "cat", "--graph", str(broken)])
    with pytest.raises(SystemExit) as exit_info:
        bench.cli.main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, f"exit {exit_info.value.code}: {err}"
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "does not parse" in lines[0] and "Traceback" not in err, err


def test_an_empty_name_is_refused_before_the_build(tmp_path):
    table = tmp_path / "mine.csv"
    table.write_text("label,synset\ncat,cat.n.01\n")
    with pytest.raises(BenchError, match="--name .* a graph name is lower-case letters"):
        invoke("kg", "build", "--labels", str(table), "--name", " ")
    assert not (tmp_path / "data" / "graphs").exists()


def test_a_packaged_name_is_taken_only_with_force_and_remove_gives_it_back(tmp_path):
    table = tmp_path / "mine.csv"
    table.write_text("label,synset\ncat,cat.n.01\ndog,dog.n.01\n")
    with pytest.raises(BenchError, match=r"'voc' is a packaged graph: pick another .*name.*, or pass .*force"):
        invoke("kg", "build", "--labels", str(table), "--name", "voc")
    assert not (tmp_path / "data" / "graphs").exists(), "a refused build wrote nothing (and built nothing)"
    assert load_graph("voc").sha256 == LabelGraph.load(PACKAGED / "voc.json").sha256
    out = invoke("kg", "build", "--labels", str(table), "--name", "voc", "--force")
    assert "now takes that name" in out and load_graph("voc").labels == ("cat", "dog"), out
    out = invoke("kg", "remove", "voc")
    assert "the packaged 'voc' is used again" in out, out
    assert load_graph("voc").sha256 == LabelGraph.load(PACKAGED / "voc.json").sha256, "the packaged graph is back"
    with pytest.raises(BenchError, match=r"no user graph 'voc' to remove \(packaged graphs stay\)"):
        invoke("kg", "remove", "voc")
    invoke("kg", "build", "--dataset", "voc")  # the packaged content under its own name needs no --force
