"""STLT, the Spatial-Temporal Layout Transformer (Radevski et al. 2021) over object boxes.

Per frame, each box is embedded as Linear(x1, y1, x2, y2) + Embedding(category: pad/hand/object),
a learned frame [CLS] token is prepended and a spatial transformer encoder (padding masked) runs
over the frame's boxes; the frame [CLS] outputs, plus learned frame-position embeddings and a
learned video [CLS] token, go through a temporal transformer encoder. Tokens out are the T
per-frame outputs of the temporal encoder (the video [CLS] is not a token of the clip).

Depth: STLT's reference configuration has 4 spatial + 8 temporal layers (12 in all), our
`stlt_l12` teacher; the 9-layer student `stlt_l9` keeps that 1:2 ratio (3 + 6). Weights load
from checkpoints of this module (there is no official format to convert).
"""

from __future__ import annotations

import torch
from torch import nn

from mmkd.extract.extractors.base import Extractor, ExtractorSpec, register_family, register_spec

N_CATEGORIES = 3  # 0 pad, 1 hand, 2 object


def _encoder(dim: int, layers: int, heads: int, dropout: float) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=4 * dim, dropout=dropout,
                                       activation="gelu", batch_first=True, norm_first=False)
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


class STLTExtractor(Extractor):
    def __init__(self, spec: ExtractorSpec):
        super().__init__()
        a, d = spec.arch, spec.dim
        self.box_embed = nn.Linear(4, d)
        self.category_embed = nn.Embedding(N_CATEGORIES, d, padding_idx=0)
        self.frame_cls = nn.Parameter(torch.zeros(1, 1, d))
        self.object_norm = nn.LayerNorm(d)
        self.spatial = _encoder(d, a["spatial_layers"], a["num_heads"], a["dropout"])
        self.frame_pos = nn.Embedding(a["max_frames"], d)
        self.video_cls = nn.Parameter(torch.zeros(1, 1, d))
        self.frame_norm = nn.LayerNorm(d)
        self.temporal = _encoder(d, a["temporal_layers"], a["num_heads"], a["dropout"])
        nn.init.trunc_normal_(self.frame_cls, std=0.02)
        nn.init.trunc_normal_(self.video_cls, std=0.02)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        boxes_BTO4, cats_BTO = inputs["boxes"], inputs["categories"]
        B, T, n_obj, _ = boxes_BTO4.shape
        obj = self.box_embed(boxes_BTO4) + self.category_embed(cats_BTO)  # (B, T, O, D)
        obj = obj.reshape(B * T, n_obj, -1)
        x = torch.cat([self.frame_cls.expand(B * T, -1, -1).to(obj.dtype), obj], dim=1)
        pad = torch.cat([torch.zeros(B * T, 1, dtype=torch.bool, device=obj.device),
                         cats_BTO.reshape(B * T, n_obj) == 0], dim=1)
        frames_BTD = self.spatial(self.object_norm(x), src_key_padding_mask=pad)[:, 0]
        frames_BTD = frames_BTD.reshape(B, T, -1)
        pos = self.frame_pos(torch.arange(T, device=obj.device))[None]
        y = torch.cat([self.video_cls.expand(B, -1, -1).to(obj.dtype), frames_BTD + pos], dim=1)
        return self.temporal(self.frame_norm(y))[:, 1:]


@register_family("stlt")
def _build(spec: ExtractorSpec) -> Extractor:
    return STLTExtractor(spec)


def stlt_arch(spatial: int, temporal: int, heads: int = 12, max_frames: int = 64) -> dict:
    return {"spatial_layers": spatial, "temporal_layers": temporal, "num_heads": heads,
            "max_frames": max_frames, "dropout": 0.1}


register_spec(ExtractorSpec("stlt_l12", "stlt", 768, stlt_arch(4, 8),
                            "STLT Action Genome pretraining, saved as this module's state dict",
                            max_objects=8))
register_spec(ExtractorSpec("stlt_l9", "stlt", 768, stlt_arch(3, 6),
                            "random init (paper: STLT student from scratch)", max_objects=8))
register_spec(ExtractorSpec("test_stlt", "stlt", 32, stlt_arch(1, 1, heads=2),
                            "random init (tests only)", max_objects=4))
