"""What a sweep attacks: the device, the model (a trained run or a published checkpoint) and
the dataset split seen in the model's label order.

``--model`` may be a trained run (name, folder or its ``model.pt``), a registered
architecture (its newest run trained on the dataset), a published ASL / ML-Decoder /
ML-GCN checkpoint file, whose outputs are matched to the graph by name, or your own model as
``module:factory`` (an importable callable, from the current folder too, that returns an
``nn.Module`` with logits over the graph's nodes or its labels: ``fit_model``). Without it the
newest model trained on the dataset is used.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.attacks.ops import model_device
from bench.datasets import DATASETS
from bench.errors import BenchError, InvalidValue, one_line, unknown
from bench.fileio import sha256_file
from bench.models import MODELS, load_checkpoint, load_trained
from bench.models.adapters import fit_model, parameters_sha256
from bench.models.card import ModelCard
from bench.models.checkpoints import PUBLISHED_ARCHS, read_file, state_of
from bench.models.openimages_map import on_graph
from bench.models.trained import check_card_graph, latest_model, list_trained, models_dir, resolve_run
from kg.graph import LabelGraph

CHECKPOINT_SUFFIXES = {".pth", ".pt", ".tar", ".ckpt", ".bin", ".pkl"}


@dataclass
class SweepModel:
    """The model under attack and what identifies it in a run's configuration."""

    model: nn.Module
    name: str
    card: dict[str, Any]
    path: str
    image_size: int
    published: bool = False  # a published checkpoint rather than a run of ``bench train``
    class_names: list[str] | None = None  # its output names, when the file has them
    own: bool = False  # a user's ``module:factory``: fitted to the graph by its number of outputs


def train_hint(dataset: str) -> str:
    """The ``bench train`` command that makes a first model for ``dataset``."""
    return f"bench train --dataset {dataset} " + ("--preset demo" if dataset == "stamps" else "…")


def no_model_message(dataset: str) -> str:
    hint = "" if dataset == "stamps" else " (or try the offline dataset stamps)"
    return f"no trained model for {dataset}: run `{train_hint(dataset)}`{hint}"


def load_sweep_model(
    dataset: str,
    model: str | None,
    device: torch.device,
    trust: bool = False,
    *,
    image_size: int | None = None,
    arch: str | None = None,
    embeddings: str | Path | None = None,
) -> SweepModel:
    """The model ``model`` names (see the module docstring), on ``device``, in eval mode.

    ``trust`` lets a published checkpoint that holds more than tensors load by full unpickling
    (runs its code); ``arch`` (refuse other architectures) and ``embeddings`` (ML-GCN's label
    vectors) apply to published checkpoints; ``image_size`` is the input side (default: the
    model's), recorded in the model's card.
    """
    if dataset:
        DATASETS.get(dataset)  # a misspelt name: one line with the closest ones, before any model lookup
    path = Path(model).expanduser() if model is not None else None
    if model is not None and path is not None and not path.exists() and FACTORY.fullmatch(model):
        for name, value in (("arch", arch), ("embeddings", embeddings)):
            if value is not None:
                raise InvalidValue(name, str(value), "applies to a published checkpoint file, not to module:factory")
        return _factory(model, device, image_size)
    if path is not None and not path.exists() and (path.suffix in CHECKPOINT_SUFFIXES or len(path.parts) > 1):
        raise BenchError(f"{model} does not exist (give a trained run's name or folder, or a checkpoint file)")
    if path is not None and path.is_file() and _is_torchscript(path):
        return _torchscript(path, device, trust, image_size)
    if path is not None and path.is_file() and arch is not None and arch not in PUBLISHED_ARCHS:
        return _state_dict(path, arch, device, trust, image_size)
    if path is not None and path.is_file() and path.name != "model.pt":
        return _checkpoint(path, device, trust, image_size=image_size, arch=arch, embeddings=embeddings)
    for name, value in (("arch", arch), ("embeddings", embeddings)):
        if value is not None:
            raise InvalidValue(name, str(value), "applies to a published checkpoint file, not to a trained model")
    run: str | Path | None
    if model is None:
        run = latest_model(dataset)
        if run is None:
            raise BenchError(no_model_message(dataset))
    elif path is not None and not path.exists() and not _is_run_name(model) and model in MODELS:
        runs = [run for run, card in list_trained(dataset) if card.model == model.lower()]
        if not runs:
            raise BenchError(
                f"no {model} model trained on {dataset}: run `bench train --dataset {dataset} --model {model}`"
            )
        run = runs[0]
    else:
        run = model  # an unknown name raises, suggesting the closest runs
    return _trained(run, device, image_size)


def _is_run_name(name: str) -> bool:
    return any((p / "model.pt").exists() for p in models_dir().glob(f"*/{name}"))


def _trained(run, device: torch.device, image_size: int | None = None) -> SweepModel:
    net, card = load_trained(run, device)
    size = image_size or card.image_size
    return SweepModel(net, card.model, {**card.to_dict(), "image_size": size}, str(resolve_run(run)), size)


def _checkpoint(path: Path, device: torch.device, trust: bool = False, **options: Any) -> SweepModel:
    ckpt = load_checkpoint(path, trust=trust, **options)
    config: dict[str, Any] = ckpt.model.config
    size = int(config["image_size"])
    card = {"checkpoint": path.name, "bytes": path.stat().st_size, "arch": ckpt.arch, "config": config}
    return SweepModel(ckpt.model.to(device).eval(), ckpt.arch, card, str(path.resolve()), size, True, ckpt.class_names)


FACTORY = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")
DEFAULT_OWN_SIZE = 224  # a factory's model declares no input size: --image-size, else this


def _factory(spec: str, device: torch.device, image_size: int | None) -> SweepModel:
    """The model ``module:factory`` returns, imported with the current folder on the path."""
    module_name, attr = spec.split(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # the user's own module: any error of its import is theirs to read
        raise BenchError(f"{spec}: module {module_name} does not import: {one_line(exc)}") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise BenchError(f"{spec}: {module_name} has no callable {attr}")
    try:
        net = factory()
    except Exception as exc:
        raise BenchError(f"{spec}: {attr}() failed: {one_line(exc)}") from None
    if not isinstance(net, nn.Module):
        raise BenchError(f"{spec}: {attr}() returned a {type(net).__name__}, not a torch.nn.Module")
    source = getattr(module, "__file__", None)
    return own_model(
        net, spec, {"factory": spec, "source_sha256": sha256_file(source) if source else ""}, device, image_size
    )


def own_model(
    net: nn.Module, name: str, card: dict[str, Any], device: torch.device, image_size: int | None
) -> SweepModel:
    """A user's own model as a sweep's model: ``card`` (what identifies it) with the sha256 of
    its weights and the input side added, so that other weights are another run."""
    size = int(image_size or DEFAULT_OWN_SIZE)
    card = {**card, "parameters_sha256": parameters_sha256(net.state_dict().values()), "image_size": size}
    return SweepModel(net.to(device).eval(), name, card, name, size, own=True)


def _file_card(path: Path) -> dict[str, Any]:
    return {"file": path.name, "file_sha256": sha256_file(path)}


def _is_torchscript(path: Path) -> bool:
    """A TorchScript archive (``torch.jit.save``): a zip holding ``code/`` and ``constants.pkl``."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names)


def _torchscript(path: Path, device: torch.device, trust: bool, image_size: int | None) -> SweepModel:
    """A TorchScript model file: it runs its own code, so only with ``trust``."""
    if not trust:
        raise BenchError(
            f"{path} is a TorchScript archive, which runs its own code when loaded: pass {{trust}} if you trust it",
            options=["trust"],
        )
    try:
        net = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise BenchError(f"TorchScript file {path} does not load: {one_line(exc)}") from None
    return own_model(net, path.name, {"torchscript": True, **_file_card(path)}, device, image_size)


def _state_dict(path: Path, arch: str, device: torch.device, trust: bool, image_size: int | None) -> SweepModel:
    """A plain state dict of a timm architecture (torchvision's ResNets share timm's names):
    the classifier's size is read from the file, the weights load strictly."""
    import timm
    from timm.models import get_pretrained_cfg_value

    if not timm.is_model(arch):
        raise unknown("timm architecture", arch, timm.list_models())
    state = state_of(read_file(path, trust), str(path))
    classifier = f"{get_pretrained_cfg_value(arch, 'classifier') or 'fc'}.weight"
    if classifier not in state:
        raise BenchError(f"{path} has no {classifier}: not a state dict of {arch}")
    net = timm.create_model(arch, pretrained=False, num_classes=int(state[classifier].shape[0]))
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise BenchError(f"{path} does not fit {arch}: {one_line(exc)}") from None
    return own_model(net, f"{arch}:{path.name}", {"arch": arch, **_file_card(path)}, device, image_size)


def fit_dataset(
    loaded: SweepModel, dataset, report: Callable[[str], None] | None = None
) -> tuple[nn.Module, Any, LabelGraph]:
    """``(model, dataset, graph)`` with the model's outputs in the graph's node order.

    A trained model must have been trained on the dataset's graph (same hash and order); a
    published checkpoint is matched to the graph by output name, both restricted to the
    matched nodes (``bench.models.openimages_map.on_graph``); ``report`` gets one line saying
    how many matched.
    """
    if loaded.own:
        device = model_device(loaded.model)
        net, how = fit_model(loaded.model, dataset.graph, None, dataset[0][0].to(device))
        if report is not None:
            report(f"{loaded.name}: outputs fitted to graph {dataset.graph.name!r} as {how}")
        return net, dataset, dataset.graph
    if not loaded.published:
        check_card_graph(ModelCard.from_dict(loaded.card), dataset.graph)
        return loaded.model, dataset, dataset.graph
    net, data, match = on_graph(loaded.model, dataset, loaded.class_names)
    if match is not None and report is not None:
        report(match.summary())
    return net, data, (match.graph if match is not None else dataset.graph)
