"""``bench report``: one self-contained HTML page per run (no CDN, no server, nothing fetched).

Sections: the run's provenance (configuration, model card, graph and its hash, versions, git
commit, device, the numerics fingerprint of each machine that computed rows, wall time); the
paper's table and the ablation table per |Ω| and ε (the same numbers as ``bench table``: the
same layouts and rounding; the paper's table ends with the worst case over the run's attacks,
``worst_case`` in results/views.sql, when the run has two or more); plots (FR_S and NT_R
against |Ω|, ε and τ where they vary, success rate against iterations, the ML-DP RMSD
histogram) embedded as PNG; a gallery of saved adversarial examples (``bench run
--save-images N``: clean, adversarial, perturbation magnified, labels before → after with Ω
and Ψ marked); and a drill-down of the combinations
where GMLA gains or loses most against each baseline. Every value from data is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import io
import json
import platform
import subprocess
from collections import defaultdict

import duckdb
from matplotlib.figure import Figure

from bench import numerics
from bench.errors import BenchError
from bench.names import ATTACK_NAMES, attack_display
from results.records import run_machines
from results.tables import WORST_CASE_NOTE, Layout, ablation_layout, format_cell, paper_layout, transfer_layout
from results.views import Selection, fetch_dicts, run_protocol, scalar

GALLERY_PER_ATTACK = 3  # successes and as many failures, per attack
DRILL_DOWN = 5  # combinations shown at each end

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 1em 0; font-size: .9em; }
th, td { padding: .25em .6em; border-bottom: 1px solid #e4e4e4; text-align: right; white-space: nowrap; }
th { background: #f4f4f4; } td.l, th.l { text-align: left; }
table.prov td { white-space: normal; word-break: break-word; max-width: 900px; }
caption { font-weight: bold; text-align: left; padding: .3em 0; }
.note { color: #555; } .warn { color: #a15c00; font-weight: bold; }
.gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(330px, 1fr)); gap: 1em; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: .6em; }
.card img { width: 100px; height: 100px; image-rendering: pixelated; border: 1px solid #ccc; }
.ok { color: #1a7f37; } .bad { color: #b42318; } .tag { font-family: monospace; font-size: .85em; }
.omega { font-weight: bold; text-decoration: underline; } .psi { background: #fff1c2; }
"""


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def png_data(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def figure_png(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return png_data(buffer.getvalue())


def layout_html(layout: Layout, digits: int = 1) -> str:
    """A table layout as HTML, cell by cell as ``bench table`` formats it."""
    head = [f'<th class="l">{esc(h)}</th>' for h in layout.row_headers]
    head += [f"<th>{esc(g.label)} {esc(label)}</th>" for g in layout.groups for _, label in g.columns]
    body = []
    for row in layout.rows:
        cells = [f'<td class="l">{esc(x)}</td>' for x in row.labels] + [
            f"<td>{esc(format_cell(c, digits))}</td>" for c in row.cells
        ]
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f'<table class="results"><caption>{esc(layout.title)}</caption><tr>{"".join(head)}</tr>{"".join(body)}</table>'
    )


def _git_commit() -> str:
    from bench.paths import PROJECT_ROOT

    try:
        done = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip() or "unknown (not a git checkout)"


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for name in ("semattack-bench", "torch", "timm", "duckdb", "numpy"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _machines(con: duckdb.DuckDBPyConnection, run_id: str) -> list[tuple[str, str]]:
    """One provenance line per machine that computed the run's rows (its numerics fingerprint)."""
    return [
        (
            f"machine {m.machine}",
            f"{numerics.describe(m.fingerprint)}; {m.rows} rows" + (f"; {m.accepted}" if m.accepted else ""),
        )
        for m in run_machines(con, run_id)
    ]


def _provenance(run: dict, config: dict, machines: list[tuple[str, str]]) -> str:
    card = config.get("model_card") or {}
    wall = ""
    if run["finished"] is not None:
        wall = (
            f"{(run['finished'] - run['created']).total_seconds() / 60:.1f} min (created → finished, resumes included)"
        )
    items = [
        ("run", run["run_id"]),
        (
            "status",
            "finished" if run["finished"] is not None else "unfinished: the tables cover the rows stored so far",
        ),
        ("dataset / split", f"{run['dataset']} / {config.get('extra', {}).get('split', '?')}"),
        ("model", f"{run['model_name']} ({run['model_path']})"),
        (
            "model card",
            ", ".join(
                f"{k} {card[k]:.3g}" if isinstance(card[k], float) else f"{k} {card[k]}"
                for k in ("model", "dataset", "image_size", "test_map", "consistency_share", "epochs")
                if k in card
            )
            or "published checkpoint",
        ),
        ("graph", f"{run['graph_name']} (sha256 {run['graph_sha256']})"),
        ("attacks", ", ".join(run["attacks"])),
        (
            "ε / τ / |Ω|",
            f"{', '.join(f'{e:g}' for e in run['eps'])} / {', '.join(f'{t:g}' for t in run['tau'])} / "
            f"{', '.join(map(str, run['sizes']))}",
        ),
        (
            "preset, iterations, images per combination",
            f"{run['preset']}, {run['iterations']}, {run['images_per_combination']}",
        ),
        ("protocol settings", json.dumps(config.get("extra", {}), sort_keys=True, separators=(", ", ": "))),
        ("device", run["device"] or "?"),
        *(machines or [("machine", "not recorded (rows stored before schema version 3)")]),
        ("created / finished", f"{run['created']} / {run['finished'] or '–'}"),
        ("wall time", wall or "–"),
        ("code version", run["code_version"]),
        ("git commit", _git_commit()),
        ("package versions", ", ".join(f"{k} {v}" for k, v in _versions().items())),
    ]
    rows = "".join(f'<tr><th class="l">{esc(k)}</th><td class="l">{esc(v)}</td></tr>' for k, v in items)
    return f'<table class="prov">{rows}</table>'


def _tables(
    con: duckdb.DuckDBPyConnection, run_id: str, sizes: list[int], eps: list[float], tau: float, attacks: list[str]
) -> str:
    parts: list[str] = []
    notes: set[str] = set()
    for e in eps:
        for k in sizes:
            layout = paper_layout(con, [run_id], Selection(k, e, tau))
            notes.update(layout.notes)
            parts.append(layout_html(layout))
        if {"gmla", "gmla-alpha", "gmla-beta"} & set(attacks):
            try:
                parts.append(layout_html(ablation_layout(con, [run_id], Selection(None, e, tau))))
            except BenchError as exc:
                parts.append(f'<p class="note">ablation table: {esc(exc)}</p>')
    if "ml-dp" in attacks:
        parts.append('<p class="note">ML-DP is not held to ε (its perturbation is measured by RMSD, below).</p>')
    if WORST_CASE_NOTE in notes:
        parts.append(f'<p class="note">{esc(WORST_CASE_NOTE)}</p>')
    return "".join(parts)


def _plots(con: duckdb.DuckDBPyConnection, run_id: str, run: dict) -> str:
    from results.plots import _iterations_figure, _rmsd_figure, _sweep_figure

    shown: list[tuple[str, Figure | None]] = []
    fixed = Selection(None, run["eps"][0], run["tau"][0])
    wanted = [
        ("size", len(run["sizes"]) > 1, Selection(None, run["eps"][0], run["tau"][0])),
        ("eps", len(run["eps"]) > 1, Selection(run["sizes"][-1], None, run["tau"][0])),
        ("tau", len(run["tau"]) > 1, Selection(run["sizes"][-1], run["eps"][0], None)),
    ]
    for axis, varies, selection in wanted:
        if varies:
            shown.append(
                (f"FR_S and NT_R against {axis}", _sweep_figure(con, run_id, axis, selection, ["fr_s", "nt_r"], []))
            )
    for size in run["sizes"]:
        selection = Selection(size, fixed.eps, fixed.tau)
        shown.append((f"success rate against iterations, |Ω| = {size}", _iterations_figure(con, run_id, selection, [])))
    if "ml-dp" in run["attacks"]:
        try:
            for size in run["sizes"]:
                shown.append(
                    (
                        f"ML-DP perturbation size (RMSD), |Ω| = {size}",
                        _rmsd_figure(con, run_id, Selection(size, fixed.eps, fixed.tau), []),
                    )
                )
        except BenchError as exc:
            shown.append((f"RMSD: {exc}", None))
    out = []
    for title, fig in shown:
        body = f'<img alt="{esc(title)}" src="{figure_png(fig)}">' if fig is not None else ""
        out.append(f"<figure><figcaption>{esc(title)}</figcaption>{body}</figure>")
    return "".join(out)


def _label_list(example, on, before=None) -> str:
    """The positive labels (Ω underlined, Ψ highlighted); with ``before``, the labels it had
    that are now off, struck through."""
    shown = set(on.nonzero()[0]) | (set(before.nonzero()[0]) if before is not None else set())
    parts = []
    for i in sorted(shown):
        classes = " ".join(c for c, m in (("omega", example.omega), ("psi", example.psi)) if m[i])
        text = esc(example.names[i])
        text = f'<span class="{classes}">{text}</span>' if classes else text
        parts.append(text if on[i] else f"<s>{text}</s>")
    return ", ".join(parts) or "–"


def _gallery(con: duckdb.DuckDBPyConnection, run_id: str, artifacts: dict) -> str:
    from bench.examples import load_example

    if not artifacts:
        return (
            '<p class="note">No adversarial examples were saved for this run: run it with '
            "<code>bench run … --save-images 2</code> (the same command resumes and saves them for the pairs "
            "still to attack).</p>"
        )
    rows = fetch_dicts(
        con,
        "SELECT r.combo_id, r.image_id, r.attack, r.eps, r.tau, r.success, r.consistent, c.labels "
        "FROM results AS r JOIN combinations AS c USING (run_id, combo_id) WHERE r.run_id = $run",
        {"run": run_id},
    )
    by_attack: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        key = (r["combo_id"], r["image_id"], r["attack"], r["eps"], r["tau"])
        match = next((path for k, path in artifacts.items() if tuple(k) == key), None)
        if match is not None and match.exists():
            by_attack[r["attack"]].append({**r, "path": match})
    cards = []
    for attack in [a for a in ATTACK_NAMES if a in by_attack] + sorted(set(by_attack) - set(ATTACK_NAMES)):
        group = by_attack[attack]
        chosen = [r for r in group if r["success"]][:GALLERY_PER_ATTACK] + [r for r in group if not r["success"]][
            :GALLERY_PER_ATTACK
        ]
        for r in chosen:
            ex = load_example(r["path"])
            pictures = "".join(
                f'<figure style="display:inline-block;margin:0 .3em"><img alt="{kind}" '
                f'src="{png_data(ex.png(kind).read_bytes())}"><figcaption class="note">{caption}</figcaption></figure>'
                for kind, caption in (("clean", "clean"), ("adv", "adversarial"), ("delta", "perturbation, ±ε"))
            )
            verdict = (
                ("consistent success", "ok")
                if r["consistent"]
                else ("inconsistent success", "bad")
                if r["success"]
                else ("failed", "bad")
            )
            cards.append(
                f'<div class="card"><div><b>{esc(attack_display(attack))}</b> on Ω = '
                f"{{{esc(', '.join(r['labels']))}}}, "
                f'<span class="tag">{esc(r["image_id"])}</span>, ε = {r["eps"]:g}: <span '
                f'class="{verdict[1]}">{verdict[0]}</span></div>'
                f"{pictures}<div>before: {_label_list(ex, ex.clean_on)}</div>"
                f"<div>after: {_label_list(ex, ex.adv_on, ex.clean_on)}</div></div>"
            )
    legend = (
        '<p class="note"><span class="omega">underlined</span>: Ω; <span class="psi">highlighted</span>: '
        "Ψ = h(Ω, G); <s>struck</s>: switched off by the attack.</p>"
    )
    return legend + f'<div class="gallery">{"".join(cards)}</div>'


def _drill_down(con: duckdb.DuckDBPyConnection, run_id: str, attacks: list[str]) -> str:
    if "gmla" not in attacks:
        return '<p class="note">GMLA was not run: no comparison.</p>'
    parts = []
    for baseline in [a for a in attacks if a != "gmla"]:
        rows = fetch_dicts(
            con,
            """SELECT g.size, array_to_string(g.labels, ', ') AS labels, g.eps, 100 * (g.fr_s - b.fr_s) AS gain,
                      100 * g.fr_s AS gmla, 100 * b.fr_s AS other
               FROM combination_rates AS g JOIN combination_rates AS b USING (run_id, combo_id, eps)
               WHERE g.run_id = $run AND g.attack = 'gmla' AND b.attack = $baseline
               ORDER BY gain DESC, g.size, labels""",
            {"run": run_id, "baseline": baseline},
        )
        if not rows:
            continue
        picked = rows[:DRILL_DOWN] + [r for r in rows[-DRILL_DOWN:] if r not in rows[:DRILL_DOWN]]
        name = attack_display(baseline)
        lines = "".join(
            f'<tr><td>{r["size"]}</td><td class="l">{esc(r["labels"])}</td><td>{r["eps"]:g}</td>'
            f"<td>{r['gmla']:.1f}</td><td>{r['other']:.1f}</td><td>{r['gain']:+.1f}</td></tr>"
            for r in picked
        )
        parts.append(
            f"<table><caption>GMLA against {esc(name)}: FR_S per combination, largest gains first, then the largest "
            "losses</caption>"
            "<tr><th>|Ω|</th><th "
            f'class="l">Ω</th><th>ε</th><th>GMLA</th><th>{esc(name)}</th><th>gain</th></tr>{lines}</table>'
        )
    return "".join(parts)


def _clean(con: duckdb.DuckDBPyConnection, run_id: str) -> str:
    """What the model does on the clean images (``clean_stats``) and the defense it runs under."""
    protocol = run_protocol(con, run_id)
    defense = protocol.defense
    said = (
        "The model is attacked under the defense <code>"
        + esc(", ".join(f"{k}={v}" for k, v in defense.items()))
        + "</code>"
        + (f", the attacks averaging {protocol.eot} draws of its randomness (EOT)" if protocol.eot > 1 else "")
        + " (docs/defenses.md): a pair counts as fooled after detection only if it succeeds and the detector "
        "lets it through; the tables show the detection rate (Det.) and FR_N after detection.</p>"
        if defense
        else "The model is attacked undefended.</p>"
    )
    found = con.execute(
        "SELECT images, map, consistent, rejected FROM clean_stats WHERE run_id = ?", [run_id]
    ).fetchone()
    if found is None:
        return f'<p class="note">{said}'
    images, map_, consistent, rejected = found
    cells = [
        ("images", str(images)),
        ("mAP", "–" if map_ is None else f"{100 * map_:.1f}%"),
        ("consistent with the graph", f"{100 * consistent:.1f}%"),
        ("rejected by the detector", "–" if rejected is None else f"{100 * rejected:.1f}%"),
    ]
    rows = "".join(f'<tr><th class="l">{esc(k)}</th><td>{esc(v)}</td></tr>' for k, v in cells)
    return f'<p class="note">{said}<table class="prov">{rows}</table>'


def _checks(con: duckdb.DuckDBPyConnection, run_id: str) -> str:
    """The run's reliability checks (``bench.sweep.checks``): each one's outcome and what it means."""
    found = con.execute(
        "SELECT name, status, value, detail FROM checks WHERE run_id = ? ORDER BY status = 'flag' DESC, name", [run_id]
    ).fetchall()
    if not found:
        return '<p class="note">No checks stored (a run made before schema version 5, or one without pairs).</p>'
    lines = "".join(
        f'<tr><td class="l">{esc(name)}</td><td class="l{" warn" if status == "flag" else ""}">'
        f"{'⚠ flagged' if status == 'flag' else esc(status)}</td>"
        f'<td>{"" if value is None else f"{value:.3g}"}</td><td class="l">{esc(detail)}</td></tr>'
        for name, status, value, detail in found
    )
    return (
        "<table><caption>Signs that a number cannot be trusted (AutoAttack-style checks; docs/attacks.md)</caption>"
        f'<tr><th class="l">check</th><th class="l">status</th><th>value</th><th class="l">what was measured</th></tr>'
        f"{lines}</table>"
    )


def _transfer(con: duckdb.DuckDBPyConnection, run_id: str, eps: list[float], tau: float) -> list[str]:
    """The section "Transfer" (``bench run --transfer-to``): one table per ε, as ``bench table
    --layout transfer`` prints it; nothing when the run has no transfer rows."""
    if not scalar(con, "SELECT count(*) FROM transfer WHERE run_id = ?", [run_id]):
        return []
    parts = ["<h2>Transfer</h2>"]
    for e in eps:
        layout = transfer_layout(con, [run_id], Selection(None, e, tau))
        parts.append(layout_html(layout))
        parts += [f'<p class="note">{esc(note)}</p>' for note in layout.notes]
    return parts


def build_report(con: duckdb.DuckDBPyConnection, run_id: str, artifacts: dict) -> str:
    """The whole page for one run (see the module docstring)."""
    runs = fetch_dicts(con, "SELECT * FROM runs WHERE run_id = $run", {"run": run_id})
    if not runs:
        raise BenchError(f"no run {run_id!r} in this database")
    run = runs[0]
    config = json.loads(run["config"])
    n_rows = scalar(con, "SELECT count(*) FROM results WHERE run_id = ?", [run_id])
    title = f"semattack-bench report: {run_id}"
    sections = [f"<h1>{esc(title)}</h1>", "<h2>Provenance</h2>", _provenance(run, config, _machines(con, run_id))]
    sections += ["<h2>Reliability checks</h2>", _checks(con, run_id)]
    sections += ["<h2>Clean images and defense</h2>", _clean(con, run_id)]
    if n_rows == 0:
        sections.append(
            '<p class="warn">This run has no result rows yet: nothing to tabulate or plot. Run (or resume) it with '
            "the same command.</p>"
        )
    else:
        if run["finished"] is None:
            sections.append(
                '<p class="warn">This run is unfinished: the numbers below cover the rows stored so far.</p>'
            )
        attacks = sorted(
            {r[0] for r in con.execute("SELECT DISTINCT attack FROM results WHERE run_id = ?", [run_id]).fetchall()}
        )
        sizes = sorted(
            {
                r[0]
                for r in con.execute(
                    "SELECT DISTINCT size FROM combination_rates WHERE run_id = ?", [run_id]
                ).fetchall()
            }
        )
        eps = sorted(
            {r[0] for r in con.execute("SELECT DISTINCT eps FROM results WHERE run_id = ?", [run_id]).fetchall()}
        )
        run = {**run, "sizes": sizes, "eps": eps}
        sections += [
            "<h2>Tables</h2>",
            '<p class="note">Mean ± std over target combinations, in % (SSIM pooled over the successful images), as '
            "<code>bench table</code> prints them.</p>",
            _tables(con, run_id, sizes, eps, run["tau"][0], attacks),
            *_transfer(con, run_id, eps, run["tau"][0]),
            "<h2>Plots</h2>",
            _plots(con, run_id, run),
            "<h2>Adversarial examples</h2>",
            _gallery(con, run_id, artifacts),
            "<h2>Where GMLA gains or loses most</h2>",
            _drill_down(con, run_id, attacks),
        ]
    body = "\n".join(sections)
    head = f'<head><meta charset="utf-8"><title>{esc(title)}</title><style>{STYLE}</style></head>'
    return f'<!DOCTYPE html>\n<html lang="en">{head}<body>{body}</body></html>\n'
