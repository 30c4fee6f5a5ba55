"""``bench attack`` on a saved toy model and dataset, ``bench perf attack``, batching of pairs."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import bench.cli  # noqa: F401  (registers every command)
from bench import attacks
from bench.attacks.pairs import CPU_BATCH, attack_pairs, pair_batch_size
from bench.attacks.targets import omega_masks, pair_targets
from bench.cli import error_message
from bench.cli.apps import app, flag
from bench.datasets.base import DATASETS, MultiLabelDataset, register_dataset
from bench.errors import BenchError
from kg.closure import GraphTensors
from kg.graph import LabelGraph
from tests.attacks_fixtures import TinyNet

# cat, dog, car are labels; animal → {cat, dog}, vehicle → {car}
GRAPH = LabelGraph("attack-toy", ("cat", "dog", "car", "animal", "vehicle"), ((3, 0), (3, 1), (4, 2)), 3)
runner = CliRunner()


class Toy(MultiLabelDataset):
    name = "attack-toy"

    def __init__(self, split: str = "test", size: int = 32) -> None:
        self.split, self.image_size, self.graph = split, size, GRAPH
        self.x = torch.rand(12, 3, size, size, generator=torch.Generator().manual_seed(0))

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i], torch.zeros(GRAPH.n)

    def image_id(self, i: int) -> str:
        return f"toy/{i}"


if "attack-toy" not in DATASETS:

    @register_dataset("attack-toy")
    def _toy(split="test", root=None, image_size=None, **_):
        return Toy(split, size=image_size or 32)


@pytest.fixture(scope="module")
def toy_model():
    """A tiny timm net saved as a trained run; its head makes cat, car, animal, vehicle positive."""
    from bench.models import create_model, save_trained
    from bench.models.card import ModelCard
    from bench.models.trained import models_dir

    torch.manual_seed(0)
    net = create_model("timm", num_classes=GRAPH.n, image_size=32, arch="test_resnet")
    fc = [m for m in net.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():
        fc.weight.mul_(0.1)
        fc.bias.copy_(torch.tensor([0.05, -3.0, 3.0, 3.0, 3.0]))
    card = ModelCard(
        model="timm",
        model_kwargs={"arch": "test_resnet"},
        dataset="attack-toy",
        labels=list(GRAPH.nodes),
        n_labels=GRAPH.n_labels,
        graph=GRAPH.name,
        graph_sha256=GRAPH.sha256,
        image_size=32,
        run_name="toy-run",
    )
    save_trained(models_dir("attack-toy") / "toy-run", net, card)
    return net


def test_bench_attack_prints_labels_before_and_after(toy_model):
    result = runner.invoke(
        app, ["attack", "-d", "attack-toy", "-t", "cat", "-a", "gmla", "-n", "3", "--eps", "0.5", "--iterations", "5"]
    )
    assert result.exit_code == 0, f"bench attack failed: {result.output}{result.exception!r}"
    for text in ("toy/", "before", "after", "FR_N", "FR_S", "NT_R", "GMLA"):
        assert text in result.output, f"output shows {text!r}"


def test_bench_attack_bad_input(toy_model):
    cases = [
        (["-t", "dog"], "has every target (dog) predicted positive"),
        (["-t", "catt"], "did you mean 'cat'"),
        (["-t", "cat", "-a", "gmlaa"], "unknown attack 'gmlaa'"),
        (["-t", "cat", "--eps", "0"], "--eps 0: must be in (0, 1]"),
        (["-t", "cat", "-a", "mla-u", "--tau", "0.1"], "has no parameter 'tau'"),
    ]
    for args, message in cases:
        result = runner.invoke(app, ["attack", "-d", "attack-toy", *args])
        assert isinstance(result.exception, BenchError) and message in error_message(result.exception), (
            f"{args}: {result.exception!r}"
        )
    result = runner.invoke(app, ["attack", "-d", "voc", "-t", "cat"])
    assert "no trained model for voc" in error_message(result.exception), "missing model named"
    result = runner.invoke(app, ["attack", "-d", "stamps-none", "-t", "cat"])
    assert "unknown dataset 'stamps-none'" in error_message(result.exception), "a misspelt dataset comes first"


def test_cli_error_is_one_line():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from bench.cli import main; sys.argv = ['bench', 'attack', '-t', 'cat', '-a', 'gmlaa']; "
            "main()",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2, f"exit code 2 for a user mistake, got {proc.returncode}: {proc.stderr}"
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown attack 'gmlaa'" in lines[0] and "Traceback" not in proc.stderr, (
        f"one line: {proc.stderr}"
    )


def test_bench_perf_attack_runs():
    args = [
        "perf",
        "attack",
        "--arch",
        "test_resnet",
        "--image-size",
        "32",
        "--labels",
        "5",
        "--batch-size",
        "2",
        "--iterations",
        "2",
        "--single-pairs",
        "1",
        "--repeats",
        "1",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, f"bench perf attack failed: {result.output}{result.exception!r}"
    for text in ("(b)/(a)", "(b)/(a′)", "(b)/(c)", "pair·it/s"):
        assert text in result.output, f"perf table shows {text!r}"


# ------------------------------------------------------------------- batching
def pairs_scenario():
    model = TinyNet(shape=(3, 4, 4), labels=5, seed=7)
    images = torch.rand(3, 3, 4, 4, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    image_index = torch.tensor([0, 0, 1, 2, 2, 1])
    with torch.no_grad():
        logits = model(images[image_index])
    with torch.no_grad():  # make every label positive on every image so any Ω is valid
        model.out.bias.sub_(logits.min(0).values - 0.2)
        logits = model(images[image_index])
    g = GraphTensors(LabelGraph("attack-toy", GRAPH.nodes, GRAPH.edges, 3))
    omega = omega_masks(g.graph, [["cat"], ["car"], ["cat", "car"], ["dog"], ["cat"], ["car"]])
    return model, images, image_index, pair_targets(logits, omega, g)


@pytest.mark.bitwise
def test_attack_pairs_shares_images_and_slots_without_changing_results():
    model, images, image_index, targets = pairs_scenario()
    attack = attacks.create_attack("gmla", eps=0.2, steps=40)
    chunked = attack_pairs(attack, model, images, targets, image_index=image_index, batch_size=4)
    desired, tmask, ntmask = targets.attack_inputs(semantic=True)
    direct = attack(model, images[image_index], desired, tmask, ntmask, batch_size=4)
    assert torch.equal(chunked.adv, direct.adv) and torch.equal(chunked.iterations, direct.iterations), (
        "shared images and refilled slots = the pairs given one by one, at the same B = 4"
    )
    assert bool(chunked.success.any()), "scenario has successes"


class OutOfMemoryAbove(nn.Module):
    """Wraps a model; batches larger than ``limit`` raise CUDA's out-of-memory error."""

    def __init__(self, inner: nn.Module, limit: int) -> None:
        super().__init__()
        self.inner, self.limit = inner, limit

    def forward(self, x):
        if x.shape[0] > self.limit:
            raise torch.cuda.OutOfMemoryError("simulated")
        return self.inner(x)


def test_out_of_memory_names_a_smaller_batch_instead_of_changing_it():
    """B is part of the reproducibility contract, so it is never changed behind the user's back."""
    model, images, image_index, targets = pairs_scenario()
    attack = attacks.create_attack("mla-u", eps=0.2, steps=20)
    with pytest.raises(BenchError, match=r"out of GPU memory at batch size 6; try `batch_size` 3") as raised:
        attack_pairs(attack, OutOfMemoryAbove(model, 2), images, targets, image_index=image_index, batch_size=6)
    assert raised.value.render(flag).endswith("try --batch-size 3"), "the CLI names its flag"
    with pytest.raises(BenchError, match="out of GPU memory at batch size 1; try a smaller model"):
        attack_pairs(attack, OutOfMemoryAbove(model, 0), images, targets, image_index=image_index, batch_size=1)


def test_batch_size_and_pair_checks():
    model, images, _, targets = pairs_scenario()
    assert pair_batch_size(model, (3, 4, 4)) == CPU_BATCH, "CPU default"
    assert pair_batch_size(model, (3, 4, 4), override=5) == 5, "override wins"
    with pytest.raises(BenchError, match="`batch_size` 0: must be a positive integer"):
        pair_batch_size(model, (3, 4, 4), override=0)
    attack = attacks.create_attack("mla-u", steps=1)
    with pytest.raises(BenchError, match="pass image_index"):
        attack_pairs(attack, model, images, targets)
    with pytest.raises(BenchError, match="image_index must give one image"):
        attack_pairs(attack, model, images, targets, image_index=torch.tensor([0, 1, 2, 3, 0, 0]))
