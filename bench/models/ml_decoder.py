"""ML-Decoder (Ridnik et al., WACV 2023): a query-based classification head with group decoding.

A single transformer-decoder layer without self-attention: K fixed (non-learnable) queries
cross-attend to the spatial features, and each query's output is expanded by its own
"group fully-connected" weights into ⌈C / K⌉ class logits (K = ``num_of_groups``, default
100, capped at C). Submodule names follow the published code, so published state dicts map
one to one (under ``head.``).
"""

from __future__ import annotations

from typing import cast

import torch
from torch import Tensor, nn

from bench.models import register_model
from bench.models.asl import TRESNETS, tresnet
from bench.models.net import MultiLabelNet, TimmBackbone, timm_backbone


class DecoderLayer(nn.Module):
    """ML-Decoder's ``TransformerDecoderLayerOptimal``: cross-attention + feed-forward, post-norm.

    As published, the queries are first added to themselves (``tgt + dropout(tgt)``) and
    normalised; there is no self-attention.
    """

    def __init__(self, d_model: int, nhead: int = 8, dim_feedforward: int = 2048, dropout: float = 0.1) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.dropout = nn.Dropout(dropout)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)

    def forward(self, tgt: Tensor, memory: Tensor) -> Tensor:
        tgt = self.norm1(tgt + self.dropout1(tgt))
        tgt = self.norm2(tgt + self.dropout2(self.multihead_attn(tgt, memory, memory)[0]))
        ff = self.linear2(self.dropout(torch.relu(self.linear1(tgt))))
        return self.norm3(tgt + self.dropout3(ff))


class GroupDecoder(nn.Module):
    """The published ``decoder`` module: layers, input projection, queries and group-FC weights."""

    def __init__(self, num_classes: int, num_features: int, groups: int, embedding: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.duplicate_factor = int(num_classes / groups + 0.999)
        self.layers = nn.ModuleList([DecoderLayer(embedding)])
        self.embed_standart = nn.Linear(num_features, embedding)
        self.query_embed = nn.Embedding(groups, embedding)
        self.query_embed.requires_grad_(False)
        self.duplicate_pooling = nn.Parameter(torch.empty(groups, embedding, self.duplicate_factor))
        self.duplicate_pooling_bias = nn.Parameter(torch.zeros(num_classes))
        nn.init.xavier_normal_(self.duplicate_pooling)


class MLDecoder(nn.Module):
    """ML-Decoder head on a feature map ``[B, C_f, h, w]`` (or tokens ``[B, L, C_f]``)."""

    def __init__(
        self, num_classes: int, num_features: int, num_of_groups: int = -1, decoder_embedding: int = 768
    ) -> None:
        super().__init__()
        groups = min(100 if num_of_groups < 0 else num_of_groups, num_classes)
        self.decoder = GroupDecoder(
            num_classes, num_features, groups, 768 if decoder_embedding < 0 else decoder_embedding
        )

    def forward(self, x: Tensor) -> Tensor:
        d = self.decoder
        tokens = x.flatten(2).transpose(1, 2) if x.dim() == 4 else x  # [B, L, C_f]
        memory = torch.relu(d.embed_standart(tokens)).transpose(0, 1)  # [L, B, E]
        h = d.query_embed.weight.unsqueeze(1).expand(-1, x.shape[0], -1)  # [K, B, E]
        for layer in d.layers:
            h = layer(h, memory)
        groups = torch.einsum("kbe,ked->bkd", h, d.duplicate_pooling)  # group fully-connected
        return groups.flatten(1)[:, : d.num_classes] + d.duplicate_pooling_bias


@register_model("ml-decoder", loss="asl", image_size=224)
def ml_decoder(
    num_classes: int,
    image_size: int,
    backbone: str = "tresnet_m",
    num_of_groups: int = -1,
    decoder_embedding: int = 768,
    layers: list[int] | None = None,
    width_factor: float = 1.0,
    v2: bool = False,
) -> MultiLabelNet:
    """ML-Decoder: group-decoding transformer head on a timm backbone (TResNet-M by default).

    ``backbone``: a TResNet variant (``custom`` with ``layers``/``width_factor``/``v2``, as for
    ``asl``) or any timm architecture whose ``forward_features`` gives a feature map.
    """
    if backbone in TRESNETS or backbone == "custom":
        net = tresnet(backbone, layers, width_factor, v2)
    else:
        net = timm_backbone(backbone, global_pool="")
    head = MLDecoder(num_classes, int(cast(TimmBackbone, net).num_features), num_of_groups, decoder_embedding)
    return MultiLabelNet(net, head, pooled=False)
