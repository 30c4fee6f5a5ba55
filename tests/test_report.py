"""``bench report`` on a toy sweep that saved its adversarial examples: the page's tables equal
the SQL views, every image is embedded and decodes, the gallery's images reproduce the stored
success flags when fed back to the model, an empty run says so; and the results reached
through SQLAlchemy equal ``bench table``'s."""

from __future__ import annotations

import base64
import io
import re
from html.parser import HTMLParser

import numpy as np
import pytest
import torch
from PIL import Image

from bench.examples import load_example
from bench.sweep.runner import run_sweep
from results.report import build_report
from results.store import ResultStore
from results.tables import fixed
from tests.sweep_fixtures import ToyDataset, ToyNet, toy_graph
from tests.test_sweep_runner import toy_config


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    graph = toy_graph()
    path = tmp_path_factory.mktemp("report") / "r.duckdb"
    store = ResultStore(path)
    config = toy_config(attacks=("gmla", "mla-u", "ml-dp"), sizes=(1, 2))
    run_sweep(config, ToyNet(graph.n).eval(), ToyDataset("test", graph), graph, store, batch_size=8, save_images=1)
    with store.reader() as con:
        page = build_report(con, config.run_id, store.artifacts(config.run_id))
    return store, config, page


class Cells(HTMLParser):
    """The report's result tables: caption → rows of cell texts."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._table = self._caption = self._cell = None

    def handle_starttag(self, tag, attrs):
        if tag == "table" and ("class", "results") in attrs:
            self._table = []
        elif self._table is not None and tag == "tr":
            self._table.append([])
        elif self._table is not None and tag in ("td", "caption"):
            self._cell = ""

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data

    def handle_endtag(self, tag):
        if self._table is None:
            return
        if tag == "caption":
            self._caption, self._cell = self._cell, None
        elif tag == "td":
            self._table[-1].append(self._cell)
            self._cell = None
        elif tag == "table":
            self.tables[self._caption] = [r for r in self._table if r]
            self._table = None


def test_tables_equal_the_views(saved):
    store, config, page = saved
    parser = Cells()
    parser.feed(page)
    assert parser.tables, "the report has result tables"
    with store.reader() as con:
        summary = con.execute(
            "SELECT size, attack, fr_n_mean, fr_n_std, fr_s_mean, fr_s_std, nt_r_mean, nt_r_std FROM rate_summary"
        ).fetchall()
    names = {"gmla": "GMLA", "mla-u": "MLA-U", "ml-dp": "ML-DP", "worst-case": "Worst case"}  # the report's rows
    checked = 0
    for size, attack, *values in summary:
        caption = next(c for c in parser.tables if c.startswith(f"|Ω| = {size};"))
        row = next(r for r in parser.tables[caption] if names[attack] in r)
        expected = [f"{fixed(m, 1)} ± {fixed(s, 1)}" for m, s in zip(values[::2], values[1::2])]
        assert row[2:5] == expected, f"|Ω| = {size} {attack}: page {row[2:5]} != views {expected}"
        checked += 1
    assert checked == 8, "three attacks and the worst case over them, at two |Ω|"


def test_every_image_is_embedded_and_decodes(saved):
    _, _, page = saved
    sources = re.findall(r'src="([^"]*)"', page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources), "only embedded images"
    for source in sources:
        Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1]))).load()
    assert not re.search(r'(href|src)="(https?:)?//', page), "nothing fetched from the network"
    assert "Adversarial examples" in page and 'class="card"' in page, "the gallery is there"


def test_saved_examples_reproduce_the_stored_success(saved):
    store, config, _ = saved
    graph = toy_graph()
    model = ToyNet(graph.n).eval()
    artifacts = store.artifacts(config.run_id)
    with store.reader() as con:
        rows = {
            tuple(r[:5]): r[5]
            for r in con.execute(
                "SELECT combo_id, image_id, attack, eps, tau, success FROM results WHERE run_id = ?", [config.run_id]
            ).fetchall()
        }
    assert len(artifacts) >= 6, f"{len(artifacts)} examples saved"
    for key, path in artifacts.items():
        example = load_example(path)
        with np.load(path) as z:
            adv = torch.from_numpy(z["adv_float"])[None]
        with torch.no_grad():
            on = (model(adv) > 0)[0].numpy()
        success = not bool((on & example.omega).any())  # every label of Ω switched off
        assert success == rows[tuple(key)], f"{key}: the saved image gives success {success}, stored {rows[tuple(key)]}"
        for kind in ("clean", "adv", "delta"):
            assert example.png(kind).exists(), f"{key}: {kind} PNG"


def test_an_empty_run_says_so(tmp_path):
    store = ResultStore(tmp_path / "empty.duckdb")
    config = toy_config()
    store.begin_run(config)
    with store.reader() as con:
        page = build_report(con, config.run_id, {})
    assert "has no result rows yet" in page and "unfinished" in page


def test_sqlalchemy_reads_the_same_numbers(saved):
    from sqlalchemy import text

    store, _, _ = saved
    engine = store.engine()
    with engine.connect() as con:
        via_sqlalchemy = con.execute(
            text("SELECT size, attack, fr_s_mean, nt_r_mean FROM rate_summary ORDER BY size, attack")
        ).fetchall()
    engine.dispose()  # DuckDB opens a file with one configuration per process at a time
    with store.reader() as con:
        direct = con.execute(
            "SELECT size, attack, fr_s_mean, nt_r_mean FROM rate_summary ORDER BY size, attack"
        ).fetchall()
    assert [tuple(r) for r in via_sqlalchemy] == direct and direct, "the same rows through SQLAlchemy"
    assert store.url.startswith("duckdb:///") and store.url.endswith("?access_mode=read_only")


def test_bench_attack_saves_its_examples(tmp_path, monkeypatch):
    import sys

    import bench.cli
    from tests.sweep_fixtures import NAME, save_toy_model

    monkeypatch.setenv("BENCH_DATA", str(tmp_path / "data"))
    run_dir = save_toy_model()
    out = tmp_path / "examples"
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "bench",
            "attack",
            "-d",
            NAME,
            "-m",
            run_dir,
            "-t",
            "cat",
            "-a",
            "mla-u",
            "-n",
            "2",
            "--eps",
            "0.06",
            "--iterations",
            "5",
            "--save",
            str(out),
        ],
    )
    with pytest.raises(SystemExit) as done:
        bench.cli.main()
    assert done.value.code in (0, None)
    saved = sorted(out.glob("*.npz"))
    assert len(saved) == 2 and all(load_example(p).omega.any() for p in saved), "one example per pair, with Ω"
    assert all(load_example(p).png("delta").exists() for p in saved)
