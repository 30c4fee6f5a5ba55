"""Training, evaluation and the trained-model store on a tiny synthetic dataset."""

from __future__ import annotations

import hashlib
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import bench.cli  # noqa: F401  (registers every command)
from bench.cli import error_message
from bench.cli.apps import app
from bench.datasets.base import DATASETS, MultiLabelDataset, register_dataset
from bench.errors import BenchError
from bench.evaluate import report_from_logits
from bench.metrics import average_precision, mean_ap
from bench.models import latest_model, list_trained, load_trained
from bench.models.trained import WEIGHTS, models_dir, resolve_run
from bench.train import STATE, TrainConfig, train
from kg.graph import LabelGraph

# a, b, c are labels; "ab" is the abstract parent of a and b
GRAPH = LabelGraph("synthetic", ("a", "b", "c", "ab"), ((3, 0), (3, 1)), 3)


class Synthetic(MultiLabelDataset):
    """Each label lights a fixed region of one channel; "ab" is on when a or b is."""

    name = "synthetic"

    def __init__(self, split: str = "train", n: int = 96, size: int = 32, fail_after: int | None = None) -> None:
        self.split, self.image_size, self.graph, self.fail_after, self.served = split, size, GRAPH, fail_after, 0
        g = torch.Generator().manual_seed(0 if split == "train" else 1)
        own = (torch.rand(n, 3, generator=g) < 0.45).float()
        self.y = torch.from_numpy(GRAPH.extend_labels(own.numpy())).float()
        x = 0.3 * torch.rand(n, 3, size, size, generator=g)
        for k in range(3):
            x[:, k, k * size // 3 : (k + 1) * size // 3] += 0.6 * own[:, k, None, None]
        self.x = x.clamp(0, 1)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        self.served += 1
        if self.fail_after is not None and self.served > self.fail_after:
            raise KeyboardInterrupt("simulated interruption")
        return self.x[i], self.y[i]

    def image_id(self, i: int) -> str:
        return f"{self.split}/{i}"

    def targets(self) -> torch.Tensor:
        return self.y.clone()


if "synthetic-test" not in DATASETS:

    @register_dataset("synthetic-test")
    def _synthetic(split="test", root=None, image_size=None, **_):
        return Synthetic(split, size=image_size or 32)


# timm's 0.4 M-parameter ``test_resnet`` keeps steps and checkpoints cheap
TINY = TrainConfig(
    model="timm",
    model_kwargs={"arch": "test_resnet"},
    dataset="synthetic-test",
    image_size=32,
    epochs=3,
    batch_size=16,
    lr=3e-3,
    loss="bce",
)


# ------------------------------------------------------------------------------ metrics
def ap_brute_force(scores: np.ndarray, targets: np.ndarray) -> float:
    """Mean over positives i of precision among images scored ≥ score_i."""
    pos = np.flatnonzero(targets)
    if len(pos) == 0:
        return math.nan
    return float(np.mean([targets[scores >= scores[i]].sum() / (scores >= scores[i]).sum() for i in pos]))


@pytest.mark.parametrize("seed", range(5))
def test_average_precision_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 6, size=(40, 7)).astype(np.float32)  # many ties
    targets = (rng.random((40, 7)) < 0.3).astype(np.float32)
    targets[:, 0] = 0  # a label without positives
    got = average_precision(torch.from_numpy(scores), torch.from_numpy(targets)).numpy()
    for c in range(7):
        want = ap_brute_force(scores[:, c], targets[:, c])
        if math.isnan(want):
            assert math.isnan(got[c]), f"label {c} has no positive: AP must be NaN, got {got[c]}"
        else:
            assert got[c] == pytest.approx(want, abs=1e-6), f"label {c}: AP {got[c]} vs brute force {want}"
    assert mean_ap(torch.from_numpy(got)) == pytest.approx(np.nanmean(got), abs=1e-6), "mAP must skip NaN labels"


def test_consistent_share_counts_globally_consistent_predictions():
    logits = torch.tensor(
        [
            [5.0, -1.0, -1.0, 2.0],  # a + ab: consistent
            [5.0, -1.0, -1.0, -2.0],  # a without its parent ab: inconsistent
            [-5.0, -1.0, 3.0, -2.0],  # c alone: consistent
            [-5.0, -1.0, -3.0, 2.0],  # ab without a child: inconsistent
        ]
    )
    report = report_from_logits(logits, (logits > 0).float(), GRAPH, ["0", "1", "2", "3"])
    assert report.consistent == [True, False, True, False], f"per-image consistency {report.consistent}"
    assert report.consistent_share == 0.5 and report.map == 1.0, f"share {report.consistent_share}, mAP {report.map}"
    with pytest.raises(BenchError, match="has 3 outputs but graph 'synthetic' has 4 nodes"):
        report_from_logits(logits[:, :3], logits[:, :3], GRAPH, ["0", "1", "2", "3"])


# ----------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "tiny"
    return train(TINY, run_dir=run, progress=False, datasets=(Synthetic("train"), Synthetic("test")))


def test_training_loss_falls_and_card_is_complete(trained):
    card = trained.card
    assert card.history[-1] < 0.7 * card.history[0], f"training loss did not fall: {card.history}"
    assert card.test_map > 0.8, f"test mAP {card.test_map} on an easy synthetic task"
    assert card.labels == list(GRAPH.nodes) and card.graph_sha256 == GRAPH.sha256, (
        "card must hold label order and graph hash"
    )
    assert card.epochs == 3 and card.loss == "bce" and card.throughput > 0 and card.code_version, f"card {card}"
    assert 0.0 <= card.consistency_share <= 1.0, f"consistency share {card.consistency_share}"
    assert not (trained.run_dir / STATE).exists(), "a finished run keeps only model.pt and card.json"


def test_train_save_load_gives_same_logits(trained):
    model, card = load_trained(trained.run_dir)
    x = Synthetic("test").x[:8]
    with torch.no_grad():
        assert torch.equal(model(x), trained.model.cpu()(x)), "reloaded model gives different logits"
    assert card.to_dict() == trained.card.to_dict(), "card changed in the round trip"


@pytest.mark.bitwise
def test_resume_equals_uninterrupted_run(tmp_path, trained):
    run = tmp_path / "resumed"
    steps_per_epoch = 96 // 16
    with pytest.raises(KeyboardInterrupt):  # dies in the second epoch
        train(
            TINY,
            run_dir=run,
            progress=False,
            datasets=(Synthetic("train", fail_after=16 * (steps_per_epoch + 2)), Synthetic("test")),
        )
    assert torch.load(run / STATE, weights_only=True)["epoch"] == 1, "the first epoch's checkpoint must be on disk"
    resumed = train(run_dir=run, resume=True, progress=False, datasets=(Synthetic("train"), Synthetic("test")))
    a, b = resumed.model.state_dict(), trained.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed training differs from the uninterrupted run"
    assert resumed.card.history == pytest.approx(trained.card.history), "loss history differs after resume"


def test_interrupted_runs_resolve_by_name():
    run = models_dir("synthetic-test") / "interrupted"
    run.mkdir(parents=True)
    (run / STATE).write_bytes(b"")
    assert resolve_run("interrupted") == run, "an interrupted run must be found by name for --resume"


def test_existing_runs_are_never_overwritten(trained):
    before = hashlib.sha256((trained.run_dir / WEIGHTS).read_bytes()).hexdigest()
    with pytest.raises(BenchError, match="already exists"):
        train(TINY, run_dir=trained.run_dir, progress=False, datasets=(Synthetic("train"), Synthetic("test")))
    with pytest.raises(BenchError, match="is finished: nothing to resume"):
        train(run_dir=trained.run_dir, resume=True, progress=False)
    assert hashlib.sha256((trained.run_dir / WEIGHTS).read_bytes()).hexdigest() == before, "model.pt was modified"


def test_load_trained_refuses_a_card_that_does_not_fit(tmp_path, trained):
    blob = torch.load(trained.run_dir / WEIGHTS, weights_only=True)
    blob["card"]["labels"] = blob["card"]["labels"] + ["extra"]
    (tmp_path / "bad").mkdir()
    torch.save(blob, tmp_path / "bad" / WEIGHTS)
    with pytest.raises(BenchError) as err:
        load_trained(tmp_path / "bad")
    width = trained.model.head.fc.in_features
    assert f"head.fc.weight is [4, {width}] in the file, [5, {width}] in the model" in str(err.value), (
        f"message: {err.value}"
    )
    torch.save({"model": {}}, tmp_path / "bad" / WEIGHTS)
    with pytest.raises(BenchError, match="is not a semattack-bench model"):
        load_trained(tmp_path / "bad")


# ---------------------------------------------------------------------------------- CLI
def test_cli_train_models_eval(tmp_path):
    runner = CliRunner()
    args = [
        "train",
        "-d",
        "synthetic-test",
        "-m",
        "timm",
        "-o",
        "arch=test_resnet",
        "--epochs",
        "1",
        "--image-size",
        "32",
        "--batch-size",
        "16",
        "--name",
        "cli-run",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, f"bench train failed: {result.output} {result.exception!r}"
    assert "test mAP" in result.output, f"no summary: {result.output}"
    assert ": 1 epoch, " in result.output and "loss nan" not in result.output, result.output
    assert latest_model("synthetic-test").name == "cli-run", "latest_model must find the new run"
    assert next(p.name for p, _ in list_trained("synthetic-test")) == "cli-run", "list_trained newest first"

    result = runner.invoke(app, ["models", "--dataset", "synthetic-test"])
    assert result.exit_code == 0 and "cli-run" in result.output, f"bench models: {result.output}"
    out = tmp_path / "report.json"
    result = runner.invoke(app, ["eval", "-d", "synthetic-test", "--json", str(out)])
    assert result.exit_code == 0 and "globally consistent predictions" in result.output, f"bench eval: {result.output}"
    assert out.exists() and '"consistent_images"' in out.read_text(), "eval --json must list the consistent images"

    result = runner.invoke(app, ["eval", "--model", "cli-rnu"])
    assert isinstance(result.exception, BenchError) and "did you mean 'cli-run'" in error_message(result.exception), (
        f"{result.exception!r}"
    )
    result = runner.invoke(app, ["train", "-d", "synthetic-test", "-m", "timm", "-o", "width=3", "--epochs", "1"])
    assert isinstance(result.exception, BenchError) and "has no option width" in error_message(result.exception), (
        f"{result.exception!r}"
    )


def test_a_plugin_model_that_is_a_plain_module_trains_and_loads(tmp_path):
    """A model plugin as documented, a builder ``(num_classes, image_size) -> nn.Module`` that
    returns a plain module (no MultiLabelNet), trains, saves and loads back to the same logits."""
    from torch import nn

    from bench.models import MODELS, register_model
    from bench.models.trained import load_trained

    if "plain-test" not in MODELS:

        @register_model("plain-test", loss="bce", image_size=32)
        def _plain(num_classes: int, image_size: int) -> nn.Module:
            return nn.Sequential(nn.AvgPool2d(4), nn.Flatten(), nn.Linear(3 * (image_size // 4) ** 2, num_classes))

    config = TrainConfig(model="plain-test", dataset="synthetic-test", image_size=32, epochs=1, batch_size=16)
    result = train(config, run_dir=tmp_path / "run", progress=False, datasets=(Synthetic("train"), Synthetic("test")))
    assert result.card.model == "plain-test" and result.card.test_map is not None
    loaded, card = load_trained(tmp_path / "run", "cpu")
    x = Synthetic("test").x[:4]
    with torch.no_grad():
        assert torch.equal(loaded(x), result.model(x)), "the saved weights load back to the same logits"


def test_noise_training_resumes_bitwise_and_is_in_the_card(tmp_path, trained):
    """``--noise``: Gaussian noise on every training image (the smoothing defense's training),
    drawn from the epoch's generator, so a resumed run equals an uninterrupted one."""
    noisy = replace(TINY, noise=0.2)
    whole = train(noisy, run_dir=tmp_path / "whole", progress=False, datasets=(Synthetic("train"), Synthetic("test")))
    assert whole.card.recipe["noise"] == 0.2
    a, b = whole.model.state_dict(), trained.model.state_dict()
    assert not all(torch.equal(a[k], b[k]) for k in a), "the noise changes what the model learns"
    run = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        train(
            noisy,
            run_dir=run,
            progress=False,
            datasets=(Synthetic("train", fail_after=16 * (96 // 16 + 2)), Synthetic("test")),
        )
    resumed = train(run_dir=run, resume=True, progress=False, datasets=(Synthetic("train"), Synthetic("test")))
    r = resumed.model.state_dict()
    assert all(torch.equal(r[k], a[k]) for k in a), "a resumed noisy run equals the uninterrupted one"
    with pytest.raises(BenchError, match="noise"):
        replace(TINY, noise=1.5).resolved()
