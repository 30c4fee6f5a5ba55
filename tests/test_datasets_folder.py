"""Your own images as a dataset: ``folder`` (an image folder with an optional labels CSV), its
identity in the run's configuration (checked against coreutils' ``sha256sum``), and ``bench run
-d folder`` against ``bench.benchmark`` on the same pixels read independently with PIL."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import bench
from bench.cli import error_message
from bench.datasets import create_dataset
from bench.errors import BenchError
from tests.sweep_fixtures import LABELS, ToyDataset, toy_graph
from tests.test_api import ROWS, LabelsOnly
from tests.test_sweep_runner import fetch

ROOT = Path(__file__).resolve().parents[1]
N = 12


def make_folder(folder: Path, header: tuple[str, ...] = LABELS) -> tuple[list[str], np.ndarray]:
    """The toy test split's first N images as PNGs (in a subfolder too) and a labels.csv whose
    columns follow ``header``; returns the file names and the own-label targets in LABELS order."""
    data = ToyDataset("test", toy_graph())
    (folder / "more").mkdir(parents=True)
    files, own = [], []
    for i in range(N):
        name = f"more/img{i:02d}.png" if i % 3 == 0 else f"img{i:02d}.png"
        pixels = (data[i][0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(pixels).save(folder / name)
        files.append(name)
        own.append(data[i][1][: len(LABELS)].numpy())
    targets = np.stack(own)
    columns = [LABELS.index(h) for h in header]
    lines = ["image," + ",".join(header)]
    lines += [f"{f}," + ",".join(str(int(targets[i, c])) for c in columns) for i, f in enumerate(files)]
    (folder / "labels.csv").write_text("\n".join(lines) + "\n")
    return files, targets


def edges_csv(path: Path) -> Path:
    graph = toy_graph()
    path.write_text("parent,child\n" + "".join(f"{graph.nodes[p]},{graph.nodes[c]}\n" for p, c in graph.edges))
    return path


def pil_images(folder: Path, files: list[str]) -> torch.Tensor:
    return torch.stack(
        [
            torch.from_numpy(np.array(Image.open(folder / f).convert("RGB"))).permute(2, 0, 1).float() / 255
            for f in files
        ]
    )


def test_the_folder_reads_its_csv_in_the_graphs_order_and_hashes_like_sha256sum(tmp_path):
    graph = toy_graph()
    graph.save(tmp_path / "toy.json")
    shuffled = tuple(reversed(LABELS))
    files, targets = make_folder(tmp_path / "photos", header=shuffled)
    data = create_dataset("folder", root=tmp_path / "photos", image_size=8, graph=str(tmp_path / "toy.json"))
    assert [data.image_id(i) for i in range(len(data))] == files, "the CSV's images, in its order"
    assert torch.equal(data.targets(), torch.from_numpy(graph.extend_labels(targets))), "columns by name"
    assert torch.equal(torch.stack([data[i][0] for i in range(N)]), pil_images(tmp_path / "photos", files))
    printed = subprocess.run(
        ["sha256sum", *files], cwd=tmp_path / "photos", capture_output=True, text=True, check=True
    ).stdout
    labels_sha = hashlib.sha256((tmp_path / "photos" / "labels.csv").read_bytes()).hexdigest()
    assert data.fingerprint() == {
        "images": N,
        "manifest_sha256": hashlib.sha256(printed.encode()).hexdigest(),
        "labels_sha256": labels_sha,
    }
    (tmp_path / "photos" / "labels.csv").unlink()
    unlabelled = create_dataset("folder", root=tmp_path / "photos", image_size=8, graph="stamps")
    assert [unlabelled.image_id(i) for i in range(N)] == sorted(files), "every image file, in path order"
    assert unlabelled.targets().sum() == 0 and unlabelled.fingerprint()["labels_sha256"] is None


def test_bad_folders_are_one_line(tmp_path):
    edges = str(edges_csv(tmp_path / "edges.csv"))
    photos = tmp_path / "photos"
    make_folder(photos)

    def refused(message, graph=edges, **options):
        with pytest.raises(BenchError) as raised:
            create_dataset("folder", root=photos, image_size=8, graph=graph, **options)
        assert error_message(raised.value).startswith(message), error_message(raised.value)
        assert "\n" not in error_message(raised.value)

    refused("dataset folder needs a label graph", graph=None)
    refused("dataset folder has one split, test", split="train")
    text = (photos / "labels.csv").read_text()
    (photos / "labels.csv").write_text(text.replace("image,cat,", "image,catt,"))
    refused(f"unknown label (of graph 'stamps') in {photos / 'labels.csv'}: 'catt' (did you mean 'cat'", graph="stamps")
    lines = text.splitlines()
    (photos / "labels.csv").write_text("\n".join([*lines[:2], lines[2].rsplit(",", 1)[0] + ",2", *lines[3:]]))
    refused(f"{photos / 'labels.csv'} line 3: a label's value must be 0 or 1")
    (photos / "labels.csv").write_text(text + "gone.png,1,0,0,0,0,0\n")
    refused(f"{photos / 'labels.csv'}'s image list is incomplete: {photos / 'gone.png'} is missing")
    (photos / "labels.csv").write_text("file,cat\nimg01.png,1\n")
    refused(f"{photos / 'labels.csv'}: the first line must be the header image,<label>,<label>,...")


def bench_run(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "from bench.cli import main; main()", "run", "-d", "folder", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_bench_run_on_a_folder_gives_the_calls_rows_and_records_the_files(tmp_path):
    files, _ = make_folder(tmp_path / "photos")
    edges_csv(tmp_path / "edges.csv")
    (tmp_path / "mine.py").write_text("from tests.test_api import LabelsOnly\ndef make():\n    return LabelsOnly()\n")
    sweep = ["--attack", "gmla,mla-u", "--size", "1", "--eps", "0.06", "--iterations", "5", "--images-per-combo", "2"]
    sweep += ["--preset", "fast", "-m", "mine:make", "--image-size", "8", "--graph", "edges.csv"]
    done = bench_run(tmp_path, "--data-root", "photos", *sweep, "--db", "r.duckdb")
    assert done.returncode == 0, done.stderr
    (config,) = fetch(tmp_path / "r.duckdb", "SELECT config FROM runs")
    recorded = json.loads(config[0])["extra"]["data"]
    assert (
        recorded
        == create_dataset(
            "folder", root=tmp_path / "photos", image_size=8, graph=str(tmp_path / "edges.csv")
        ).fingerprint()
    )
    # the same pixels, read with PIL, through the one call: the same rows, image by image
    torch.manual_seed(0)
    result = bench.benchmark(
        LabelsOnly(), pil_images(tmp_path / "photos", files), labels=list(LABELS), graph=tmp_path / "edges.csv",
        attacks="gmla,mla-u", sizes=1, eps=0.06, iterations=5, images_per_combination=2, preset="fast",
        db=tmp_path / "call.duckdb", progress=False, device="cpu",
    )  # fmt: skip
    by_index = {f"images/{i:05d}": f for i, f in enumerate(files)}
    called = sorted((r[0], by_index[r[1]], *r[2:]) for r in fetch(result.db, ROWS))
    ran = sorted(fetch(tmp_path / "r.duckdb", ROWS))
    assert ran and called == ran, "bench run -d folder and bench.benchmark give the same rows"
    # one image's bytes change: a new run beside the old one, whose rows are untouched
    image = Image.open(tmp_path / "photos" / files[1])
    image.putpixel((0, 0), (0, 0, 0))
    image.save(tmp_path / "photos" / files[1])
    again = bench_run(tmp_path, "--data-root", "photos", *sweep, "--db", "r.duckdb")
    assert again.returncode == 0, again.stderr
    assert fetch(tmp_path / "r.duckdb", "SELECT count(*) FROM runs")[0][0] == 2, "a changed image is another run"
    (old,) = [r for r in fetch(tmp_path / "r.duckdb", "SELECT run_id FROM runs") if r[0] in done.stdout]
    assert (
        sorted(fetch(tmp_path / "r.duckdb", ROWS.replace("FROM results", f"FROM results WHERE run_id = '{old[0]}'")))
        == ran
    )
    # a model whose outputs the graph does not fit: one line, exit 2
    (tmp_path / "photos" / "labels.csv").unlink()
    wrong = bench_run(tmp_path, "--data-root", "photos", *sweep[:-2], "--graph", "voc", "--db", "w.duckdb")
    assert wrong.returncode == 2 and wrong.stderr.strip().count("\n") == 0, wrong.stderr
    assert "the model has 6 outputs, but graph 'voc' has" in wrong.stderr, wrong.stderr
