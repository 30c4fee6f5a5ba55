"""A self-contained HTML view of a ``LabelGraph``: an inline SVG drawing, no external files.

The hierarchy is drawn left to right (roots on the left), one row per leaf, each parent
centred on its children, dataset labels in green and abstract nodes in blue (as in the
paper's Supp. Fig. 3). A DAG is laid out along one spanning tree (each node under its
lowest-index parent) and its other parent links are drawn dashed. Hovering or clicking a
node highlights its ancestors and descendants; the search box highlights matching names.
Everything (SVG, style, a few lines of script, the data) is inline: the file opens
offline and refers to no URL.

With a run's outcomes (``bench kg view --run``, ``results.annotate``) each node is coloured by its
band as a target (FR_N: fragile red, contested orange, robust teal, never a target grey), its
name followed by its FR_N, and ringed in purple as strongly as attacks on other targets
dragged it along (its nt_rate against the graph's largest); the tooltip holds every number.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from typing import Any

from kg.graph import LabelGraph

ROW = 22  # px per leaf row
CHAR = 7.2  # px per character of a node name (12 px sans-serif, roughly)
GAP = 46  # px between a column's longest name and the next column
PAD = 16
TEXT_DX = 11  # px from a node's dot to its name (clear of a run's ring)

BAND_COLOURS = {"Fragile": "#d62728", "Contested": "#ff7f0e", "Robust": "#17becf", "Untargeted": "#9e9e9e"}

STYLE = """
body{font:13px system-ui,sans-serif;margin:16px;color:#222}
h1{font-size:18px;margin:0 0 4px} .sub{color:#666;margin-bottom:8px}
#q{padding:3px 6px;width:220px} .legend span{display:inline-block;margin-right:14px}
.dot{display:inline-block;width:10px;height:10px;border-radius:5px;margin-right:4px;vertical-align:middle}
#box{overflow:auto;border:1px solid #ddd;max-height:85vh}
svg text{font:12px system-ui,sans-serif;dominant-baseline:middle;cursor:pointer}
.e{fill:none;stroke:#aaa;stroke-width:1.2} .e.x{stroke-dasharray:4 3;stroke:#c9a}
.n circle{stroke:#fff;stroke-width:1.5} .n.l circle{fill:#2e9d46} .n.a circle{fill:#2f6fd0}
svg.focus .n,svg.focus .e{opacity:.15} svg.focus .on,svg.focus .hit{opacity:1} .n.hit text{font-weight:bold;fill:#c00}
"""
STYLE += "".join(f".n.{band} circle{{fill:{colour}}}" for band, colour in BAND_COLOURS.items())
STYLE += ".n circle.ring{fill:none;stroke:#8e24aa;stroke-width:3}"  # after the bands: a ring stays unfilled

SCRIPT = """
const D=JSON.parse(document.getElementById('data').textContent);
const svg=document.querySelector('svg');let pinned=null;
function show(i){svg.querySelectorAll('.on').forEach(e=>e.classList.remove('on'));
 if(i===null){svg.classList.remove('focus');return}
 const keep=new Set([i,...D.up[i],...D.down[i]]);svg.classList.add('focus');
 keep.forEach(k=>document.getElementById('n'+k).classList.add('on'));
 svg.querySelectorAll('.e').forEach(e=>{if(keep.has(+e.dataset.p)&&keep.has(+e.dataset.c))e.classList.add('on')})}
svg.querySelectorAll('.n').forEach(g=>{const i=+g.id.slice(1);
 g.addEventListener('mouseenter',()=>{if(pinned===null)show(i)});
 g.addEventListener('mouseleave',()=>{if(pinned===null)show(null)});
 g.addEventListener('click',()=>{pinned=pinned===i?null:i;show(pinned)})});
document.getElementById('q').addEventListener('input',ev=>{const q=ev.target.value.trim().toLowerCase();
 D.names.forEach((n,i)=>document.getElementById('n'+i).classList.toggle('hit',q!==''&&n.toLowerCase().includes(q)))});
"""


def layout(graph: LabelGraph) -> tuple[list[float], list[float], list[int | None]]:
    """``(x, y, tree_parent)`` per node: a tidy left-to-right drawing of a spanning forest.

    ``tree_parent`` is each node's lowest-index parent (``None`` for roots); leaves get
    one row each in depth-first order (children by name), parents sit at the middle of
    their first and last child; x is the column of the node's spanning-tree depth.
    """
    tree_parent: list[int | None] = [min(graph.parents(v), default=None) for v in range(graph.n)]
    kids: list[list[int]] = [[] for _ in range(graph.n)]
    for v, p in enumerate(tree_parent):
        if p is not None:
            kids[p].append(v)
    for k in kids:
        k.sort(key=lambda v: graph.nodes[v].lower())
    depth, y = [0] * graph.n, [0.0] * graph.n
    row = 0
    roots = sorted((v for v in range(graph.n) if tree_parent[v] is None), key=lambda v: graph.nodes[v].lower())
    for root in roots:
        stack: list[tuple[int, bool]] = [(root, False)]
        while stack:  # iterative post-order: children placed before their parent
            v, done = stack.pop()
            if done:
                y[v] = (y[kids[v][0]] + y[kids[v][-1]]) / 2 if kids[v] else row * ROW
                row += 0 if kids[v] else 1
                continue
            stack.append((v, True))
            for c in reversed(kids[v]):
                depth[c] = depth[v] + 1
                stack.append((c, False))
    width = [0.0] * (max(depth, default=0) + 1)
    for v in range(graph.n):
        width[depth[v]] = max(width[depth[v]], len(graph.nodes[v]) * CHAR)
    column = [0.0]
    for w in width[:-1]:
        column.append(column[-1] + w + GAP)
    x = [column[depth[v]] + PAD for v in range(graph.n)]
    return x, [v + PAD + ROW / 2 for v in y], tree_parent


BAND_MEANING = {
    "Fragile": "FR_N ≥ 67%",
    "Contested": "33% ≤ FR_N < 67%",
    "Robust": "FR_N < 33%",
    "Untargeted": "never a target",
}


def _pct(value: float | None, digits: int = 0) -> str:
    return "–" if value is None else f"{100 * value:.{digits}f}%"


def _outcome_tip(o: Mapping[str, Any]) -> str:
    target = (
        f"target of {o['pairs']} pairs: FR_N {_pct(o['fr_n'])}, FR_S {_pct(o['fr_s'])}"
        if o["pairs"]
        else "never a target"
    )
    bystander = (
        f"flipped in {o['nt_flips']} of {o['nt_pairs']} other pairs ({_pct(o['nt_rate'], 1)}), "
        f"{_pct(o['nt_share'], 1)} of all flips"
        if o["nt_flips"] is not None
        else "flips not recorded"
    )
    return f"; {target}; {bystander}"


def render_html(graph: LabelGraph, outcomes: Mapping[int, Mapping[str, Any]] | None = None, caption: str = "") -> str:
    """The graph as one self-contained HTML page (see the module docstring); ``outcomes``: a
    run's numbers by node index at one (attack, ε, τ), ``caption`` says which."""
    outcomes = outcomes or {}
    x, y, tree_parent = layout(graph)
    dragged = max((o["nt_rate"] or 0.0 for o in outcomes.values()), default=0.0)
    esc = html.escape
    width = max((x[v] + len(graph.nodes[v]) * CHAR for v in range(graph.n)), default=0) + 3 * PAD
    height = max(y, default=0) + ROW
    parts = []
    for p, c in graph.edges:
        start = x[p] + TEXT_DX + len(graph.nodes[p]) * CHAR + 4  # after the parent's name
        start = min(start, x[c] - 12)  # a further parent link (DAG) may come from a deeper column
        mid = (start + x[c]) / 2
        extra = " x" if tree_parent[c] != p else ""
        parts.append(
            f'<path class="e{extra}" data-p="{p}" data-c="{c}" '
            f'd="M{start:.1f},{y[p]:.1f} C{mid:.1f},{y[p]:.1f} {mid:.1f},{y[c]:.1f} {x[c]:.1f},{y[c]:.1f}"/>'
        )
    for v, name in enumerate(graph.nodes):
        kind = "l" if v < graph.n_labels else "a"
        what = "dataset label" if kind == "l" else "abstract node"
        tip = f"{name} ({graph.ids[v] or 'no id'}), {what}; parents: " + (
            ", ".join(graph.nodes[p] for p in graph.parents(v)) or "none"
        )
        o, ring, shown = outcomes.get(v), "", name
        if o is not None:
            kind += " " + o["band"]
            tip += _outcome_tip(o)
            shown += f" {_pct(o['fr_n'])}" if o["pairs"] else ""
            if dragged > 0 and o["nt_rate"]:
                ring = (
                    f'<circle class="ring" cx="{x[v]:.1f}" cy="{y[v]:.1f}" r="8" '
                    f'stroke-opacity="{0.15 + 0.85 * o["nt_rate"] / dragged:.2f}"/>'
                )
        parts.append(
            f'<g class="n {kind}" id="n{v}"><title>{esc(tip)}</title>{ring}'
            f'<circle cx="{x[v]:.1f}" cy="{y[v]:.1f}" r="5"/>'
            f'<text x="{x[v] + TEXT_DX:.1f}" y="{y[v]:.1f}">{esc(shown)}</text></g>'
        )
    data = {
        "names": list(graph.nodes),
        "up": [sorted(graph.ancestors(v)) for v in range(graph.n)],
        "down": [sorted(graph.descendants(v)) for v in range(graph.n)],
    }
    data_json = json.dumps(data, separators=(",", ":")).replace("<", "\\u003c")
    kind = "tree" if graph.is_tree else "DAG (dashed: links to further parents)"
    if outcomes:
        legend = "".join(
            f'<span><i class="dot" style="background:{colour}"></i>{band}: {BAND_MEANING[band]}</span>'
            for band, colour in BAND_COLOURS.items()
        )
        legend += (
            '<span><i class="dot" style="border:3px solid #8e24aa;width:6px;height:6px"></i>'
            f"dragged along (ring: nt_rate, darkest {_pct(dragged, 1)})</span>"
        )
    else:
        legend = (
            '<span><i class="dot" style="background:#2e9d46"></i>dataset label</span>'
            '<span><i class="dot" style="background:#2f6fd0"></i>abstract node</span>'
        )
    caption = f'<div class="sub">{esc(caption)}</div>' if caption else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{esc(graph.name)} label graph</title>
<style>{STYLE}</style></head><body>
<h1>Label graph {esc(graph.name)}</h1>
<div class="sub">{esc(graph.source or "unknown source")} · {graph.n_labels} dataset labels
+ {graph.n - graph.n_labels} abstract nodes · {len(graph.edges)} edges · depth {graph.depth} · {kind}
· sha256 {graph.sha256[:16]}</div>
{caption}<div class="legend">{legend}
<input id="q" placeholder="find a node" aria-label="find a node">
<span style="color:#666">hover or click a node: its ancestors and descendants</span></div>
<div id="box"><svg width="{width:.0f}" height="{height:.0f}" role="img" aria-label="{esc(graph.name)} hierarchy">
{chr(10).join(parts)}
</svg></div>
<script type="application/json" id="data">{data_json}</script>
<script>{SCRIPT}</script>
</body></html>
"""
