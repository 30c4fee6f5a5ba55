"""Loaders for the published checkpoint files (local paths only; nothing is downloaded).

* **ASL** (``MS_COCO_TRresNet_M_224_81.8.pth``, ``Open_ImagesV6_TRresNet_L_448.pth``, ...):
  ``{"model": state, "num_classes", "idx_to_class"}``; TResNet leaves ``convN.0`` (conv) /
  ``convN.1`` (in-place ABN) are renamed to timm's ``convN.conv`` / ``convN.bn`` and the ABN
  weights become ``|w| + 1e-5`` (timm's ``checkpoint_filter_fn``); the Open Images model's
  ``head.fc.embedding_generator.0`` / ``head.fc.FC`` bottleneck head maps one to one.
* **ML-Decoder** (``tresnet_m_COCO_224_84_2.pth``, ...): ASL-style TResNet body (its L/XL use
  Bottleneck blocks in stages 1-2) and ``head.decoder.*``.
* **ML-GCN** (``voc_checkpoint.pth.tar``): ``{"state_dict": {features.*, gc1.weight,
  gc2.weight, A}, ...}``; ``features.{0,1,4..7}`` are ResNet's conv1, bn1, layer1..4. The
  label word embeddings are not in the file: pass the ``*_glove_word2vec.pkl`` it was trained with.

Every loader sniffs the architecture from the keys, builds our module, loads strictly and
refuses a file that does not fit with one line naming what differs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from bench.errors import BenchError, one_line, unknown
from bench.models.net import MultiLabelNet
from bench.untrusted import torch_load

_NAMES = {"asl": "ASL (TResNet)", "ml-decoder": "ML-Decoder", "ml-gcn": "ML-GCN"}

# (stem width, Bottleneck in stages 1-2, blocks per stage) → TResNet variant
TRESNET_LAYOUTS: dict[tuple[int, bool, tuple[int, ...]], str] = {
    (64, False, (3, 4, 11, 3)): "tresnet_m",
    (76, False, (4, 5, 18, 3)): "tresnet_l",
    (83, False, (4, 5, 24, 3)): "tresnet_xl",
    (64, True, (3, 4, 23, 3)): "tresnet_v2_l",
    (64, True, (3, 8, 34, 5)): "tresnet_v2_xl",
}
# (Bottleneck blocks, blocks per stage) → ResNet depth
RESNET_LAYOUTS = {
    (False, (2, 2, 2, 2)): "resnet18",
    (False, (3, 4, 6, 3)): "resnet34",
    (True, (3, 4, 6, 3)): "resnet50",
    (True, (3, 4, 23, 3)): "resnet101",
    (True, (3, 8, 36, 3)): "resnet152",
}


@dataclass
class Checkpoint:
    """A published model, rebuilt. ``class_names``: the file's output names (``idx_to_class``) if any."""

    model: MultiLabelNet
    arch: str
    class_names: list[str] | None
    path: Path
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return int(self.model.config["num_classes"])


def read_file(path: str | Path, trust: bool = False) -> dict[str, Any]:
    """A checkpoint on the CPU: tensors, containers and numpy scalars; anything else only with
    ``trust`` (``bench.untrusted``: a full unpickling runs the file's code)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise BenchError(f"checkpoint {path} does not exist")
    try:
        blob = torch_load(path, "checkpoint", trust)
    except BenchError:
        raise
    except Exception as exc:  # torch raises many types for damaged files
        raise BenchError(f"checkpoint {path} does not load: {one_line(exc)}") from None
    if not isinstance(blob, Mapping):
        raise BenchError(f"checkpoint {path} holds a {type(blob).__name__}, not a dict of weights")
    return dict(blob)


def state_of(blob: Mapping[str, Any], where: str = "checkpoint") -> dict[str, Tensor]:
    """The state dict inside a checkpoint (``model`` / ``state_dict`` / the file itself), ``module.`` stripped."""
    state = blob.get("model", blob.get("state_dict", blob))
    if not isinstance(state, Mapping) or not any(isinstance(v, Tensor) for v in state.values()):
        raise BenchError(f"{where} holds no state dict (looked under 'model', 'state_dict' and the top level)")
    return {k.removeprefix("module."): v for k, v in state.items() if isinstance(v, Tensor)}


def sniff_arch(state: Mapping[str, Tensor]) -> str | None:
    """Which published architecture a state dict belongs to, from its keys."""
    if "gc1.weight" in state and any(k.startswith("features.") for k in state):
        return "ml-gcn"
    if any(k.startswith("head.decoder.") for k in state):
        return "ml-decoder"
    if any(k.startswith("body.") for k in state) and any(k.startswith("head.fc.") for k in state):
        return "asl"
    return None


def _stage_blocks(state: Mapping[str, Tensor], prefix: str) -> tuple[int, ...]:
    counts = []
    for stage in range(1, 5):
        pattern = re.compile(rf"^{re.escape(prefix)}layer{stage}\.(\d+)\.")
        blocks = {int(m.group(1)) for k in state if (m := pattern.match(k))}
        counts.append(max(blocks) + 1 if blocks else 0)
    return tuple(counts)


def tresnet_shape(state: Mapping[str, Tensor], where: str) -> dict[str, Any]:
    """The TResNet a ``body.*`` state belongs to: ``{"variant": name}`` for the published shapes,
    else ``{"variant": "custom", "layers", "width_factor", "v2"}`` read from the keys."""
    stem = state.get("body.conv1.0.weight", state.get("body.conv1.conv.weight"))
    if stem is None:
        raise BenchError(f"{where} has no TResNet stem (body.conv1.0.weight)")
    bottleneck = any(k.startswith("body.layer1.0.conv3.") for k in state)
    blocks = _stage_blocks(state, "body.")
    if not all(blocks):
        raise BenchError(f"{where} has an incomplete TResNet body (blocks per stage {list(blocks)})")
    name = TRESNET_LAYOUTS.get((int(stem.shape[0]), bottleneck, blocks))
    if name is not None:
        return {"variant": name}
    return {"variant": "custom", "layers": list(blocks), "width_factor": int(stem.shape[0]) / 64, "v2": bottleneck}


def asl_body_to_timm(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """ASL/ML-Decoder TResNet ``body.*`` keys → our ``backbone.body.*`` (timm names, ABN weights converted)."""
    from timm.models.tresnet import checkpoint_filter_fn

    body = checkpoint_filter_fn({k: v for k, v in state.items() if k.startswith("body.")}, None)
    return {f"backbone.{k}": v for k, v in body.items()}


def load_state_strict(model: nn.Module, state: Mapping[str, Tensor], what: str) -> None:
    """``load_state_dict(strict=True)`` with a one-line ``BenchError`` naming the keys or shapes that differ."""
    own = model.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in state if k in own and tuple(state[k].shape) != tuple(own[k].shape)]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys ({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})")
    if unexpected:
        problems.append(
            f"{len(unexpected)} unexpected keys ({', '.join(unexpected[:3])}{', ...' if len(unexpected) > 3 else ''})"
        )
    for k in shapes[:2]:
        problems.append(f"{k} is {list(state[k].shape)} in the file, {list(own[k].shape)} in the model")
    if problems:
        raise BenchError(
            f"{what} does not fit {getattr(model, 'config', {}).get('name', 'the model')}: {'; '.join(problems)}"
        )
    model.load_state_dict(state, strict=False)


def _class_names(blob: Mapping[str, Any]) -> list[str] | None:
    names = blob.get("idx_to_class")
    if isinstance(names, Mapping):
        return [str(names[k]) for k in sorted(names, key=int)]
    return None


def _load_asl(blob, state, path, image_size, **_) -> Checkpoint:
    from bench.models import create_model

    bottleneck = int(state["head.fc.embedding_generator.0.weight"].shape[0]) if "head.fc.FC.weight" in state else 0
    fc = state["head.fc.FC.weight"] if bottleneck else state.get("head.fc.weight")
    if fc is None:
        raise BenchError(f"{path} has no classifier (head.fc.weight or head.fc.FC.weight)")
    options = {**tresnet_shape(state, str(path)), "bottleneck": bottleneck}
    model = create_model("asl", int(fc.shape[0]), image_size or 448, **options)
    mapped = asl_body_to_timm(state) | {k: v for k, v in state.items() if k.startswith("head.")}
    load_state_strict(model, mapped, str(path))
    return Checkpoint(model, "asl", _class_names(blob), path, options)


def _load_ml_decoder(blob, state, path, image_size, **_) -> Checkpoint:
    from bench.models import create_model

    if "head.decoder.query_embed.weight" not in state:
        raise BenchError(f"{path} is a zero-shot ML-Decoder (no query_embed), which is not supported")
    groups, embedding = state["head.decoder.query_embed.weight"].shape
    shape = tresnet_shape(state, str(path))
    options = {
        "backbone": shape.pop("variant"),
        **shape,
        "num_of_groups": int(groups),
        "decoder_embedding": int(embedding),
    }
    num_classes = int(state["head.decoder.duplicate_pooling_bias"].shape[0])
    model = create_model("ml-decoder", num_classes, image_size or 224, **options)
    mapped = asl_body_to_timm(state) | {k: v for k, v in state.items() if k.startswith("head.")}
    load_state_strict(model, mapped, str(path))
    return Checkpoint(model, "ml-decoder", _class_names(blob), path, options)


_GCN_STAGES = {
    "features.0.": "conv1.",
    "features.1.": "bn1.",
    "features.4.": "layer1.",
    "features.5.": "layer2.",
    "features.6.": "layer3.",
    "features.7.": "layer4.",
}


def ml_gcn_to_ours(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """ML-GCN keys → ours: ``features.{0,1,4..7}`` → ``backbone.{conv1,bn1,layer1..4}``, the rest under ``head.``."""
    mapped: dict[str, Tensor] = {}
    for key, value in state.items():
        old = next((o for o in _GCN_STAGES if key.startswith(o)), None)
        mapped[f"backbone.{_GCN_STAGES[old]}{key[len(old) :]}" if old else f"head.{key}"] = value
    return mapped


def resnet_arch(state: Mapping[str, Tensor], where: str) -> str:
    """Which torchvision/timm ResNet a ``backbone.*`` state is, from its block counts and types."""
    layout = (any(k.startswith("backbone.layer1.0.conv3.") for k in state), _stage_blocks(state, "backbone."))
    if layout not in RESNET_LAYOUTS:
        raise BenchError(f"{where} has an unknown ResNet layout (blocks {list(layout[1])})")
    return RESNET_LAYOUTS[layout]


def _load_ml_gcn(
    blob, state, path, image_size, embeddings=None, imagenet_norm=True, labels=None, trust=False, **_
) -> Checkpoint:
    from bench.models import create_model
    from bench.models.ml_gcn import PICKLED, read_word_vectors

    if "A" not in state and isinstance(blob.get("A"), Tensor):
        state = {**state, "A": blob["A"]}
    if "A" not in state:
        raise BenchError(f"{path} has no adjacency 'A' (not an ML-GCN checkpoint?)")
    mapped = ml_gcn_to_ours(state)
    num_classes, (in_channel, hidden) = int(state["A"].shape[0]), state["gc1.weight"].shape
    options: dict[str, Any] = {
        "backbone": resnet_arch(mapped, str(path)),
        "hidden": int(hidden),
        "in_channel": int(in_channel),
        "imagenet_norm": bool(imagenet_norm),
    }
    if embeddings is None:
        raise BenchError(
            f"{path} is ML-GCN: give the word embeddings it was trained with (e.g. voc_glove_word2vec.pkl)"
        )
    if labels is None and Path(embeddings).suffix not in PICKLED:
        raise BenchError(
            f"embeddings {embeddings} are a text file: give the label names too, or the pickled [C, d] array"
        )
    vectors = read_word_vectors(embeddings, labels or [str(i) for i in range(num_classes)], trust=trust)
    if vectors.shape[1] != in_channel:
        raise BenchError(
            f"embeddings {embeddings} are {vectors.shape[1]}-d, the checkpoint's gc1 expects {in_channel}-d"
        )
    model = create_model("ml-gcn", num_classes, image_size or 448, **options)
    mapped["head.inp"] = torch.from_numpy(vectors)
    load_state_strict(model, {k: v.float() if v.is_floating_point() else v for k, v in mapped.items()}, str(path))
    return Checkpoint(model, "ml-gcn", None, path, options)


_LOADERS = {"asl": _load_asl, "ml-decoder": _load_ml_decoder, "ml-gcn": _load_ml_gcn}
PUBLISHED_ARCHS = tuple(_LOADERS)


def load_checkpoint(
    path: str | Path,
    arch: str | None = None,
    num_classes: int | None = None,
    image_size: int | None = None,
    embeddings: str | Path | None = None,
    imagenet_norm: bool = True,
    labels: Sequence[str] | None = None,
    trust: bool = False,
) -> Checkpoint:
    """Load a published ASL / ML-Decoder / ML-GCN file into our modules (eval mode, CPU).

    Args:
        path: the ``.pth`` / ``.pth.tar`` file.
        arch: refuse the file unless it is this architecture (``asl``, ``ml-decoder``, ``ml-gcn``).
        num_classes: refuse the file unless it has this many outputs.
        image_size: input size to record (default: 448 for ASL/ML-GCN, 224 for ML-Decoder).
        embeddings: ML-GCN only: its word-embedding pickle (``[C, 300]``), or a GloVe text file with ``labels``.
        imagenet_norm: ML-GCN only: normalise inputs with ImageNet statistics inside the model
            (upstream ML-GCN does; the GMLA authors' re-trained models took raw [0, 1] pixels).
        trust: load files that hold more than tensors and arrays by full unpickling, which
            runs the file's code (``--trust-checkpoint``); refused otherwise.
    """
    path = Path(path).expanduser()
    if arch is not None and arch not in _LOADERS:
        raise unknown("checkpoint architecture", arch, _LOADERS)
    blob = read_file(path, trust)
    state = state_of(blob, str(path))
    found = sniff_arch(state)
    if found is None:
        raise BenchError(
            f"{path} is not an ASL, ML-Decoder or ML-GCN checkpoint (first keys: {', '.join(list(state)[:3])})"
        )
    if arch is not None and found != arch:
        raise BenchError(f"{path} is an {_NAMES[found]} checkpoint, not {_NAMES[arch]}")
    ckpt = _LOADERS[found](
        blob, state, path, image_size, embeddings=embeddings, imagenet_norm=imagenet_norm, labels=labels, trust=trust
    )
    if num_classes is not None and ckpt.num_classes != num_classes:
        raise BenchError(f"{path} has {ckpt.num_classes} outputs, expected {num_classes}")
    declared = blob.get("num_classes")
    if isinstance(declared, int) and declared != ckpt.num_classes:
        raise BenchError(f"{path} declares num_classes={declared} but its classifier has {ckpt.num_classes} outputs")
    ckpt.model.eval()
    return ckpt
