"""Published ML-Decoder and ML-GCN layouts against direct computations written here."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision

from bench.errors import BenchError
from bench.models import create_model, load_checkpoint
from bench.models.checkpoints import ml_gcn_to_ours, resnet_arch
from bench.models.ml_gcn import cooccurrence_adjacency
from bench.sweep.inputs import load_sweep_model
from tests.test_models_asl import asl_layout, randomised_state


# ------------------------------------------------------------------------------ ML-Decoder
def ml_decoder_head_by_hand(state: dict, feature_map: torch.Tensor, num_classes: int, heads: int = 8) -> torch.Tensor:
    """ML-Decoder's published forward (eval mode) from its ``head.decoder.*`` weights."""
    s = {k.removeprefix("head.decoder."): v for k, v in state.items() if k.startswith("head.decoder.")}
    layer = {k.removeprefix("layers.0."): v for k, v in s.items() if k.startswith("layers.0.")}
    tokens = feature_map.flatten(2).transpose(1, 2)  # [B, L, F]
    memory = F.relu(tokens @ s["embed_standart.weight"].T + s["embed_standart.bias"])  # [B, L, E]
    b, e = memory.shape[0], memory.shape[2]
    q = s["query_embed.weight"].unsqueeze(0).expand(b, -1, -1)  # [B, K, E]
    q = F.layer_norm(q + q, (e,), layer["norm1.weight"], layer["norm1.bias"])  # tgt + dropout(tgt)
    wq, wk, wv = layer["multihead_attn.in_proj_weight"].chunk(3)
    bq, bk, bv = layer["multihead_attn.in_proj_bias"].chunk(3)

    def split(x):
        return x.view(b, -1, heads, e // heads).transpose(1, 2)

    qh, kh, vh = split(q @ wq.T + bq), split(memory @ wk.T + bk), split(memory @ wv.T + bv)
    attn = torch.softmax(qh @ kh.transpose(-1, -2) / (e // heads) ** 0.5, dim=-1) @ vh
    attn = (
        attn.transpose(1, 2).reshape(b, -1, e) @ layer["multihead_attn.out_proj.weight"].T
        + layer["multihead_attn.out_proj.bias"]
    )
    h = F.layer_norm(q + attn, (e,), layer["norm2.weight"], layer["norm2.bias"])
    ff = (
        F.relu(h @ layer["linear1.weight"].T + layer["linear1.bias"]) @ layer["linear2.weight"].T
        + layer["linear2.bias"]
    )
    h = F.layer_norm(h + ff, (e,), layer["norm3.weight"], layer["norm3.bias"])
    pooling = s["duplicate_pooling"]  # [K, E, dup]
    out = torch.zeros(b, h.shape[1], pooling.shape[2])
    for i in range(h.shape[1]):  # GroupFC, as published
        out[:, i, :] = h[:, i, :] @ pooling[i]
    return out.flatten(1)[:, :num_classes] + s["duplicate_pooling_bias"]


def test_ml_decoder_layout_loads_exactly(tmp_path):
    gen = torch.Generator().manual_seed(3)
    tiny = {"layers": [1, 1, 1, 1], "width_factor": 0.25, "v2": True}  # Bottleneck stages 1-2, as ML-Decoder's L
    ours = create_model("ml-decoder", 13, backbone="custom", **tiny, num_of_groups=5, decoder_embedding=32)
    state = randomised_state(ours, gen)
    published = asl_layout(state, gen)
    for key in (
        "head.decoder.layers.0.multihead_attn.in_proj_weight",
        "head.decoder.query_embed.weight",
        "head.decoder.duplicate_pooling",
        "head.decoder.embed_standart.weight",
        "body.conv1.0.weight",
    ):
        assert key in published, f"layout lacks published key {key}"
    assert published["head.decoder.duplicate_pooling"].shape == (5, 32, 3), (
        "13 classes in 5 groups → ⌈13/5⌉ = 3 per group"
    )
    path = tmp_path / "tresnet_m_COCO_224_84_2.pth"
    torch.save({"state_dict": published, "idx_to_class": {i: f"c{i}" for i in range(13)}}, path)
    ckpt = load_checkpoint(path, arch="ml-decoder")
    assert ckpt.options == {"backbone": "custom", **tiny, "num_of_groups": 5, "decoder_embedding": 32}, (
        f"detected {ckpt.options}"
    )
    x = torch.rand(2, 3, 64, 64, generator=gen)
    with torch.no_grad():
        got = ckpt.model(x)
        want = ml_decoder_head_by_hand(published, ckpt.model.features(x), 13)
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4), (
        f"ML-Decoder logits differ by {(got - want).abs().max():.2e}"
    )
    ours.load_state_dict(state)
    with torch.no_grad():
        assert torch.allclose(ours.eval().features(x), ckpt.model.features(x), atol=1e-5), "TResNet body mapped wrongly"


# ---------------------------------------------------------------------------------- ML-GCN
def gen_a_by_hand(adj: np.ndarray, nums: np.ndarray, t: float) -> np.ndarray:
    """ML-GCN util.gen_A on its pickle's {'adj', 'nums'}."""
    a = adj / nums[:, np.newaxis]
    a[a < t] = 0
    a[a >= t] = 1
    a = a * 0.25 / (a.sum(0, keepdims=True) + 1e-6)
    return a + np.identity(len(nums), int)


def test_cooccurrence_adjacency_is_gen_a():
    rng = np.random.default_rng(4)
    y = (rng.random((300, 9)) < rng.uniform(0.1, 0.6, 9)).astype(np.int64)
    adj = np.zeros((9, 9))
    for i in range(9):
        for j in range(9):
            if i != j:
                adj[i, j] = sum(1 for row in y if row[i] and row[j])  # ML-GCN counts pairs, zero diagonal
    nums = y.sum(0).astype(float)
    got = cooccurrence_adjacency(y, t=0.4)
    assert np.allclose(got, gen_a_by_hand(adj, nums, 0.4), atol=1e-6), (
        "gen_A from training labels differs from the pickle route"
    )
    y[:, 3] = 0  # a label never seen gets no edges, no NaN
    assert np.isfinite(cooccurrence_adjacency(y)).all(), "unseen labels must not give NaN"


@pytest.mark.parametrize("depth", ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"])
def test_ml_gcn_resnet_depth_is_recognised(depth):
    with torch.device("meta"):
        tv = getattr(torchvision.models, depth)(weights=None)
    features = torch.nn.Sequential(tv.conv1, tv.bn1, tv.relu, tv.maxpool, tv.layer1, tv.layer2, tv.layer3, tv.layer4)
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    assert resnet_arch(ml_gcn_to_ours(state), depth) == depth, f"{depth} layout not recognised"


def test_ml_gcn_layout_loads_exactly(tmp_path, depth="resnet18"):
    gen = torch.Generator().manual_seed(5)
    torch.manual_seed(5)
    tv = getattr(torchvision.models, depth)(weights=None)
    features = torch.nn.Sequential(tv.conv1, tv.bn1, tv.relu, tv.maxpool, tv.layer1, tv.layer2, tv.layer3, tv.layer4)
    for m in features.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1, generator=gen)
            m.running_var.uniform_(0.5, 1.5, generator=gen)
    c, width = 6, tv.fc.in_features
    rng = np.random.default_rng(5)
    y = (rng.random((50, c)) < 0.4).astype(np.int64)
    a = torch.from_numpy(cooccurrence_adjacency(y)).float()
    gc1, gc2 = 0.1 * torch.randn(300, 64, generator=gen), 0.1 * torch.randn(64, width, generator=gen)
    state = {
        **{f"features.{k}": v for k, v in features.state_dict().items()},
        "gc1.weight": gc1,
        "gc2.weight": gc2,
        "A": a,
    }
    path = tmp_path / "voc_checkpoint.pth.tar"
    torch.save({"epoch": 3, "arch": "resnet101", "state_dict": state, "best_score": np.float64(0.93)}, path)
    vectors = rng.normal(size=(c, 300)).astype(np.float32)
    emb = tmp_path / "voc_glove_word2vec.pkl"
    emb.write_bytes(pickle.dumps(vectors))

    with pytest.raises(BenchError, match="give the word embeddings"):
        load_checkpoint(path)
    ckpt = load_checkpoint(path, arch="ml-gcn", embeddings=emb)
    assert ckpt.options["backbone"] == depth and ckpt.options["hidden"] == 64, f"detected {ckpt.options}"

    x = torch.rand(2, 3, 64, 64, generator=gen)
    with torch.no_grad():  # GCNResnet.forward with upstream's ImageNet normalisation and gen_adj
        mean, std = (
            torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1),
            torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1),
        )
        feat = features.eval()((x - mean) / std).amax(dim=(2, 3))
        d = torch.diag(a.sum(1).pow(-0.5))
        adj = (a @ d).t() @ d
        w = adj @ (F.leaky_relu(adj @ (torch.from_numpy(vectors) @ gc1), 0.2) @ gc2)
        want = feat @ w.t()
        got = ckpt.model(x)
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4), f"ML-GCN logits differ by {(got - want).abs().max():.2e}"
    with pytest.raises(BenchError, match=r"is an ML-GCN checkpoint, not ML-Decoder"):
        load_checkpoint(path, arch="ml-decoder", embeddings=emb)
    short = tmp_path / "short.pkl"
    short.write_bytes(pickle.dumps(vectors[:4]))
    with pytest.raises(BenchError, match=r"shape \(4, 300\), expected \(6, d\)"):
        load_checkpoint(path, embeddings=short)

    # bench run / attack / eval load it the same way, with the same options
    loaded = load_sweep_model("voc", str(path), torch.device("cpu"), embeddings=emb, image_size=64)
    assert loaded.published and loaded.image_size == 64, f"published {loaded.published}, size {loaded.image_size}"
    with torch.no_grad():
        assert torch.equal(loaded.model(x), got), "the sweep's loader builds the same model"
    with pytest.raises(BenchError, match=r"`embeddings` .*applies to a published checkpoint file"):
        load_sweep_model("voc", None, torch.device("cpu"), embeddings=emb)


def test_non_checkpoint_files_are_refused(tmp_path):
    path = tmp_path / "x.pth"
    torch.save({"weights": {"conv.weight": torch.zeros(1)}}, path)
    with pytest.raises(BenchError, match="holds no state dict"):
        load_checkpoint(path)
    torch.save({"conv.weight": torch.zeros(1)}, path)
    with pytest.raises(BenchError, match="is not an ASL, ML-Decoder or ML-GCN checkpoint"):
        load_checkpoint(path)
    path.write_bytes(b"not a torch file")
    with pytest.raises(BenchError, match="does not load"):
        load_checkpoint(path)
    with pytest.raises(BenchError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pth")
