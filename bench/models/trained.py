"""Trained models on disk: ``<data_dir>/models/<dataset>/<run-name>/{model.pt, card.json}``.

``model.pt`` holds ``{"format", "card", "state_dict"}``; ``card.json`` repeats the card for
people and tools that do not load torch. Both are written atomically.
"""

from __future__ import annotations

from pathlib import Path

import torch

from bench.errors import AmbiguousChoice, BenchError, one_line, unknown
from bench.fileio import torch_save
from bench.models.card import ModelCard
from bench.models.checkpoints import load_state_strict
from bench.models.net import MultiLabelNet
from bench.paths import data_dir

FORMAT = "semattack-bench/model"
WEIGHTS, CARD, TRAIN_STATE = "model.pt", "card.json", "train-state.pt"


def models_dir(dataset: str | None = None) -> Path:
    root = data_dir() / "models"
    return root / dataset if dataset else root


def save_trained(run_dir: str | Path, model: MultiLabelNet, card: ModelCard) -> Path:
    """Write ``model.pt`` then ``card.json`` into ``run_dir``; returns the weights' path."""
    run_dir = Path(run_dir)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    path = torch_save(run_dir / WEIGHTS, {"format": FORMAT, "card": card.to_dict(), "state_dict": state})
    card.save(run_dir / CARD)
    return path


def resolve_run(path_or_name: str | Path, dataset: str | None = None) -> Path:
    """A run directory (finished, or interrupted with its ``train-state.pt``) from a path or a run name."""
    path = Path(path_or_name).expanduser()
    if path.is_file():
        return path.parent
    if path.is_dir():
        return path
    candidates = (
        sorted(models_dir().glob(f"*/{path_or_name}")) if not dataset else [models_dir(dataset) / str(path_or_name)]
    )
    candidates = [c for c in candidates if (c / WEIGHTS).exists() or (c / TRAIN_STATE).exists()]
    if len(candidates) == 1:
        return candidates[0]
    if len(candidates) > 1:
        raise AmbiguousChoice(
            f"run name {path_or_name!r} exists for several datasets", "dataset", [c.parent.name for c in candidates]
        )
    runs = [p.name for p, _ in list_trained(dataset)]
    if not runs:
        where = f" for {dataset}" if dataset else ""
        raise BenchError(f"unknown trained model {str(path_or_name)!r}: none is trained{where} yet (`bench train`)")
    raise unknown("trained model", str(path_or_name), runs)


def load_trained(path_or_dir: str | Path, device: str | torch.device | None = None) -> tuple[MultiLabelNet, ModelCard]:
    """Rebuild a trained model (in eval mode) and its card from a run directory, ``model.pt`` or run name."""
    from bench.models import create_model

    weights = resolve_run(path_or_dir) / WEIGHTS
    if not weights.exists():
        raise BenchError(
            f"{weights.parent} holds no {WEIGHTS} (training not finished? resume it: `bench train --resume "
            f"{weights.parent.name}`)"
        )
    try:
        blob = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for damaged files
        raise BenchError(f"{weights} does not load: {one_line(exc)}") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise BenchError(f"{weights} is not a semattack-bench model (a published checkpoint? use load_checkpoint)")
    card = ModelCard.from_dict(blob["card"], where=f"card in {weights}")
    model = create_model(card.model, card.num_classes, card.image_size, **card.model_kwargs)
    load_state_strict(model, blob["state_dict"], f"{weights}")
    return model.to(device or "cpu").eval(), card


def check_card_graph(card: ModelCard, graph) -> None:
    """Refuse a model whose label order is not ``graph``'s (another graph or another version of it)."""
    if card.graph_sha256 != graph.sha256 or tuple(card.labels) != tuple(graph.nodes):
        raise BenchError(
            f"the model was trained on graph {card.graph!r} ({card.graph_sha256[:12]}), "
            f"the dataset uses {graph.name!r} ({graph.sha256[:12]}): retrain, or use the matching graph"
        )


def list_trained(dataset: str | None = None) -> list[tuple[Path, ModelCard]]:
    """Finished runs (with ``model.pt`` and a readable card), newest first."""
    root = models_dir(dataset)
    runs = []
    for card_path in root.glob("*/card.json" if dataset else "*/*/card.json"):
        if not (card_path.parent / WEIGHTS).exists():
            continue
        try:
            runs.append((card_path.parent, ModelCard.load(card_path)))
        except BenchError:
            continue
    return sorted(runs, key=lambda r: (r[1].created, r[0].name), reverse=True)


def latest_model(dataset: str) -> Path | None:
    """The newest finished run directory for ``dataset``, or ``None``."""
    runs = list_trained(dataset)
    return runs[0][0] if runs else None
