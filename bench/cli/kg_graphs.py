"""``bench kg build | show | view | export``: make, explore and hand out label graphs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text
from rich.tree import Tree

from bench.cli.apps import (
    GraphDbOption,
    GraphStoreOption,
    TrustOption,
    canonical_graph,
    graph_name,
    kg_app,
    output_file,
)
from bench.cli.console import console, styled
from bench.errors import BenchError
from bench.fileio import write_text
from bench.paths import subdir
from kg.catalog import (
    build_graph,
    builder_names,
    check_user_graph_name,
    load_graph,
    packaged_path,
    remove_user_graph,
    save_user_graph,
)
from kg.graph import LabelGraph

if TYPE_CHECKING:
    from kg.graph_import import Recovered

GraphOption = Annotated[
    str,
    typer.Option(
        "--graph",
        "-g",
        callback=canonical_graph,
        help="Graph name (voc, nus, openimages, openimages-tree, stamps, one you built) or a graph .json file.",
    ),
]


def _summary(graph: LabelGraph) -> str:
    roots = ", ".join(graph.nodes[r] for r in graph.roots[:6]) + (", ..." if len(graph.roots) > 6 else "")
    shape = "tree" if graph.is_tree else "DAG"
    return (
        f"{graph.n_labels} labels + {graph.n - graph.n_labels} abstract nodes, {len(graph.edges)} edges, "
        f"depth {graph.depth}, {shape}, {len(graph.roots)} roots: {roots}"
    )


@kg_app.command("build")
def build(
    dataset: Annotated[
        str | None,
        typer.Option("--dataset", "-d", help=f"Dataset to build: {', '.join(builder_names())}.", show_default=False),
    ] = None,
    labels: Annotated[
        Path | None,
        typer.Option(
            "--labels",
            help="Your own label table: a CSV 'label,synset[,note]' ('#' lines are comments).",
            show_default=False,
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            callback=graph_name,
            help="Graph name for --labels (default: the file's stem).",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            callback=output_file,
            help="Write here instead of $BENCH_DATA/graphs/NAME.json (maintainers: kg/graphs/NAME.json).",
            show_default=False,
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Let a graph that differs from the packaged one of its name take that name."),
    ] = False,
) -> None:
    """Build a label hierarchy from WordNet or the Open Images files and save it.

    WordNet graphs follow Supp. §5: label → noun synset, hypernym closure, pruning of
    one-parent/one-child nodes, one parent per node by maximum WUP similarity. The result
    goes to $BENCH_DATA/graphs/NAME.json, which every command then uses for NAME, and is
    compared with the packaged graph of the same name.

    Example: bench kg build --dataset voc
    Example: bench kg build --labels my_labels.csv --name mine
    Example: bench kg build --dataset nus --out kg/graphs/nus.json  # maintainers, in the repository
    """
    if (dataset is None) == (labels is None):
        raise BenchError("give exactly one of --dataset NAME or --labels FILE")
    if name is not None and labels is None:
        raise BenchError("--name goes with --labels FILE (a dataset's graph keeps the dataset's name)")
    if labels is not None and out is None:
        check_user_graph_name(name or labels.stem, force)  # before the build, not after
    with console.status(f"building {dataset or labels} (WordNet loads in a few seconds)"):
        if labels is not None:
            from kg.wordnet import build_wordnet_graph, read_label_table

            graph = build_wordnet_graph(name or labels.stem, read_label_table(labels))
        else:
            graph = build_graph(str(dataset))  # one of the two is given, checked above
    console.print(styled("built ", (graph.name, "bold"), f": {_summary(graph)}"))
    path = graph.save(out) if out is not None else save_user_graph(graph, force)
    console.print(f"wrote {path}")
    packaged = packaged_path(graph.name)
    if packaged.resolve() == path.resolve():
        return
    if not packaged.exists():
        console.print(f"no packaged graph named {graph.name!r} to compare with (sha256 {graph.sha256[:16]})")
        return
    shipped = LabelGraph.load(packaged)
    if shipped.sha256 == graph.sha256:
        console.print(styled(("same as the packaged graph", "green"), f" {packaged} (sha256 {graph.sha256[:16]})"))
    else:
        console.print(
            styled(
                ("differs from the packaged graph", "yellow"),
                f" {packaged} (sha256 {graph.sha256[:16]} vs {shipped.sha256[:16]})",
            )
            + ("; it now takes that name (--force; bench kg remove undoes it)" if out is None else "")
        )


def _styled(graph: LabelGraph, v: int, target: int) -> Text:
    style = "green" if v < graph.n_labels else "blue"
    text = Text(graph.nodes[v], style=f"bold reverse {style}" if v == target else style)
    if graph.ids[v]:
        text.append(f"  {graph.ids[v]}", style="dim")
    return text


def _add_descendants(graph: LabelGraph, v: int, branch: Tree, target: int, seen: set[int]) -> None:
    for c in sorted(graph.children(v), key=lambda c: graph.nodes[c].lower()):
        label = _styled(graph, c, target)
        node = branch.add(label)
        if c in seen:
            label.append("  (repeated above)", style="dim italic")
        else:
            seen.add(c)
            _add_descendants(graph, c, node, target, seen)


def _root_paths(graph: LabelGraph, v: int) -> list[list[int]]:
    """Every path from a root down to ``v``."""
    if not graph.parents(v):
        return [[v]]
    return [path + [v] for p in sorted(graph.parents(v)) for path in _root_paths(graph, p)]


def ancestry_tree(graph: LabelGraph, label: str) -> Tree:
    """A rich tree: every root-to-LABEL path above LABEL, LABEL's descendants below it."""
    v = graph.index(label)
    tree = Tree(Text(f"graph {graph.name}", style="dim"), hide_root=True, guide_style="dim")
    branches: dict[tuple[int, ...], Tree] = {}
    for path in _root_paths(graph, v):
        parent = tree
        for depth in range(len(path)):
            key = tuple(path[: depth + 1])
            if key not in branches:
                branches[key] = parent.add(_styled(graph, path[depth], v))
            parent = branches[key]
        if not parent.children:
            _add_descendants(graph, v, parent, v, set())
    return tree


@kg_app.command("show")
def show(
    label: Annotated[str, typer.Argument(help="A node of the graph (dataset label or abstract node).")],
    dataset: GraphOption = "voc",
) -> None:
    """Show a label's ancestors (above it) and descendants (below it) as a tree.

    Dataset labels are green, abstract nodes blue; each node shows its synset or MID.

    Example: bench kg show cat --graph voc
    """
    graph = load_graph(dataset)
    v = graph.index(label)
    kind = "dataset label" if v < graph.n_labels else "abstract node"
    console.print(
        f"{graph.nodes[v]} ({graph.ids[v] or 'no id'}), {kind} of graph {graph.name!r}: "
        f"{len(graph.ancestors(v))} ancestors, {len(graph.descendants(v))} descendants"
    )
    console.print(ancestry_tree(graph, label))


@kg_app.command("view")
def view(
    dataset: GraphOption = None,  # type: ignore[assignment]  # the shared option's type is str; None: voc or the run's
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            callback=output_file,
            help="HTML file to write (default: $BENCH_DATA/views/NAME.html).",
            show_default=False,
        ),
    ] = None,
    run: Annotated[
        str | None,
        typer.Option(
            "--run",
            "-r",
            help="Colour the nodes by this run's results, as `bench kg annotate` stored them in the graph store.",
            show_default=False,
        ),
    ] = None,
    attack: Annotated[
        str | None, typer.Option("--attack", "-a", help="With --run: the attack (needed when it holds several).")
    ] = None,
    eps: Annotated[float | None, typer.Option("--eps", help="With --run: ε (needed when it holds several).")] = None,
    tau: Annotated[float | None, typer.Option("--tau", help="With --run: τ (needed when it holds several).")] = None,
    store: GraphStoreOption = "ladybug",
    graph_db: GraphDbOption = None,
) -> None:
    """Write a self-contained HTML drawing of a graph (opens offline, no external files).

    With --run, nodes are coloured by how often attacks broke them as targets and ringed by how
    often they were dragged along (after `bench kg annotate --run RUN`).

    Example: bench kg view --graph voc --out voc.html
    """
    from kg.stores import check_store
    from kg.view import render_html

    check_store(store, graph_db)
    if run is None:
        given = {"--attack": attack, "--eps": eps, "--tau": tau, "--graph-db": graph_db}
        given["--graph-store"] = None if store == "ladybug" else store
        stray = [flag for flag, value in given.items() if value is not None]
        if stray:
            verb = "goes" if len(stray) == 1 else "go"
            raise BenchError(f"{', '.join(stray)} {verb} with --run RUN (they pick the run's results to draw)")
        graph = load_graph(dataset or "voc")
        page, name = render_html(graph), graph.name
    else:
        graph, outcomes, caption = _run_outcomes(run, dataset, attack, eps, tau, store, graph_db)
        page, name = render_html(graph, outcomes, caption), f"{graph.name}-{run}"
    path = write_text(out if out is not None else subdir("views") / f"{name}.html", page)
    console.print(f"wrote {path} ({_summary(graph)})")


def _run_outcomes(
    run: str,
    dataset: str | None,
    attack: str | None,
    eps: float | None,
    tau: float | None,
    store: str,
    graph_db: Path | None,
) -> tuple[LabelGraph, dict[int, dict], str]:
    from kg.stores import open_graph_store
    from results.annotate import one_setting

    with open_graph_store(store, graph_db, existing=True) as graph_store:
        names = graph_store.annotated_graphs(run)
        if not names:
            raise BenchError(
                f"run {run!r} has no results in {graph_store.location}: run `bench kg annotate --run {run}`"
            )
        name = dataset or names[0]
        if name not in names:
            raise BenchError(f"run {run!r} is annotated on graph {names[0]!r}, not {name!r}")
        rows = one_setting(graph_store.outcomes(name, run), run, attack, eps, tau)
        graph = graph_store.read_graph(name)  # the copy the outcomes hang on, whatever the catalog holds
    first = rows[0]
    caption = f"run {run}: {first['attack']}, ε = {first['eps']:g}, τ = {first['tau']:g}"
    return graph, {int(r["idx"]): r for r in rows}, caption


@kg_app.command("export")
def export(
    dataset: GraphOption = "voc",
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            "-f",
            help="json, graphml or cypher (a CREATE script for Neo4j Browser); default: --out's suffix, else json.",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", callback=output_file, help="File to write (default: standard output).", show_default=False
        ),
    ] = None,
) -> None:
    """Export a graph as JSON, GraphML or a Cypher CREATE script.

    Example: bench kg export --graph voc --format cypher --out voc.cypher
    """
    from kg.export import export_graph

    if fmt is None:
        fmt = {".graphml": "graphml", ".cypher": "cypher"}.get(out.suffix.lower(), "json") if out else "json"
    text = export_graph(load_graph(dataset), fmt)
    if out is None:
        typer.echo(text, nl=False)
    else:
        console.print(f"wrote {write_text(out, text)}")


@kg_app.command("import")
def import_command(
    dataset: Annotated[
        str, typer.Option("--dataset", "-d", help="Dataset whose labels come first in the file (voc, nus).")
    ],
    adj: Annotated[
        Path,
        typer.Option("--adj", help="ML-GCN's co-occurrence file (voc_adj.pkl: 'adj' and 'nums'), or a .npz with them."),
    ],
    name: Annotated[
        str, typer.Option("--name", callback=graph_name, help="Name of the recovered graph (e.g. voc-authors).")
    ],
    labels: Annotated[
        str | None,
        typer.Option(
            "--labels",
            help="The order of the file's first rows: 'authors' (the GMLA authors' voc_adj.pkl / nus_adj.pkl), "
            "a file of label names (one a line) or a comma list. Default: the dataset's own order, assumed (and said).",
            show_default=False,
        ),
    ] = None,
    accept_implausible: Annotated[
        bool,
        typer.Option(
            "--accept-implausible",
            help="Save the graph even when most of its groups of labels fit WordNet as badly as random label orders'.",
        ),
    ] = False,
    trust_checkpoint: TrustOption = False,
    force: Annotated[bool, typer.Option("--force", help="Let the graph take a packaged graph's name.")] = False,
) -> None:
    """Recover the hierarchy a label co-occurrence file encodes, e.g. the authors' own graphs.

    The paper's models were trained on the authors' 35- and 116-label
    hierarchies; their repository publishes ML-GCN's co-occurrence counts over
    them (MLGCN/data/voc/voc_adj.pkl). A label always co-occurs with its
    ancestors, so the counts give the hierarchy; abstract nodes are named from
    WordNet (the lowest common hypernym of their labels). The counts carry no
    names: --labels gives the order of the file's first rows (the authors' VOC
    file starts with person, not aeroplane).

    Before saving, each abstract node's labels are checked against WordNet: how
    far their lowest common hypernym lies below the one of all the dataset's
    labels. When most lie within 2 steps of it, as with random label orders, the
    graph is refused.

    The graph is saved as $BENCH_DATA/graphs/NAME.json and works everywhere by
    name (--graph NAME, bench kg export --graph NAME, bench kg diff). The
    example runs in a clone of github.com/hassan-mahmood/SemanticMLLAttacks.

    Example: bench kg import -d voc --adj MLGCN/data/voc/voc_adj.pkl --labels authors --name voc-authors
    """
    from kg.graph_import import import_graph

    check_user_graph_name(name, force)  # before reading anything

    with console.status(f"recovering the hierarchy in {adj} (WordNet loads in a few seconds)") as status:

        def report(got: Recovered) -> None:
            status.stop()  # recovered: the report is printed, not spun under
            _show_recovered(got, dataset)

        graph = import_graph(dataset, adj, name, trust_checkpoint, labels, accept_implausible, report=report)
    console.print(styled("recovered ", (graph.name, "bold"), f": {_summary(graph)}"))
    console.print(f"wrote {save_user_graph(graph, force)}")
    console.print(f"compare: bench kg diff {dataset} {graph.name}")


def _show_recovered(got: Recovered, dataset: str) -> None:
    """The label order a recovered graph was read in, its worst WordNet fits and the verdict."""
    from rich.table import Table

    from kg.plausibility import SHALLOW_STEPS

    order = got.order
    shown = ", ".join(order.names[:4]) + (", ..." if len(order.names) > 4 else "")
    if order.assumed:
        hint = (
            f"; this is the authors' {got.authors_file} file, whose rows are in their order: --labels authors"
            if got.authors_file == dataset
            else "; give the file's with --labels if it differs"
        )
        console.print(styled(("label order assumed", "yellow"), f": {order.source}, {shown}{hint}"))
    else:
        console.print(f"label order: {order.source}, {shown}")
    p = got.plausibility
    if p.fits:
        table = Table(
            title=f"worst fits: steps from {p.top} to the labels' lowest common WordNet hypernym; "
            "count: the node's vs its children's union",
            title_justify="left",
        )
        for column in ("node", "steps", "hypernym (depth)", "count", "labels below"):
            table.add_column(column, overflow="fold")
        for fit in p.worst(6):
            steps = str(fit.steps) if fit.steps > SHALLOW_STEPS else styled((str(fit.steps), "yellow"))
            more = f", ... ({len(fit.labels)})" if len(fit.labels) > 6 else ""
            table.add_row(
                fit.node + (" (root)" if fit.root else ""),
                steps,
                f"{fit.hypernym} ({fit.depth})",
                fit.nesting,
                ", ".join(fit.labels[:6]) + more,
            )
        console.print(table)
    console.print(styled(("WordNet fit", "green" if p.plausible else "red"), f": {p.summary()}"))


@kg_app.command("diff")
def diff_command(
    a: Annotated[str, typer.Argument(help="A graph (name or file).")],
    b: Annotated[str, typer.Argument(help="Another graph of the same dataset.")],
) -> None:
    """Show node by node where two graphs of one dataset differ: the labels under each node.

    Nodes (abstract nodes, and labels with labels below them) are matched by the dataset
    labels below them; a group that only one graph has is marked, with the other graph's
    column empty. Graphs with the same groups and node count are the same hierarchy.

    Example: bench kg diff voc voc-authors
    """
    from rich.table import Table

    from kg.diff import graph_diff

    ga, gb = load_graph(a), load_graph(b)
    rows = graph_diff(ga, gb)
    table = Table(title=f"nodes of {ga.name!r} and {gb.name!r}, by the dataset labels below them", show_lines=False)
    for column in ("labels below", ga.name, gb.name):
        table.add_column(column, overflow="fold")
    same = renamed = 0
    for row in rows:
        both = bool(row.in_a and row.in_b)
        same += both
        renamed += both and row.in_a != row.in_b
        cell = lambda node, both=both: "–" if not node else (node if both else styled((node, "yellow")))
        table.add_row(", ".join(row.labels), cell(row.in_a), cell(row.in_b))
    console.print(table)
    only_a, only_b = sum(1 for r in rows if r.in_a and not r.in_b), sum(1 for r in rows if r.in_b and not r.in_a)
    console.print(
        f"{same} label groups in both; {only_a} only in {ga.name!r}, {only_b} only in {gb.name!r} "
        f"({ga.n - ga.n_labels} and {gb.n - gb.n_labels} abstract nodes)"
    )
    if not only_a and not only_b and ga.n == gb.n:
        names = f"{renamed} of them named differently" if renamed else "named alike"
        console.print(styled(("the same hierarchy", "green"), f": every group of labels has a node in both ({names})"))


@kg_app.command("remove")
def remove(name: Annotated[str, typer.Argument(help="A graph of yours ($BENCH_DATA/graphs/NAME.json).")]) -> None:
    """Delete a graph you built or imported; a packaged graph of that name takes over again.

    Graph stores keep their copies until `bench kg load` replaces them.

    Example: bench kg remove mine
    """
    path = remove_user_graph(name)
    back = f"; the packaged {name!r} is used again" if packaged_path(name).exists() else ""
    console.print(f"removed {path}{back}", soft_wrap=True)
