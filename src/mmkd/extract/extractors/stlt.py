"""STLT, the Spatial-Temporal Layout Transformer (Radevski et al. 2021), as its official backbone.

Per frame, each box slot is embedded as Embedding(category) + Linear(x1, y1, x2, y2) (+
Linear(score) with the Action Genome vocabulary), LayerNorm (eps 1e-12); slot 0 is the frame's
[CLS] box (0, 0, 1, 1) of category `cls`, so there is no learned frame token. A spatial
transformer encoder (padding slots masked) runs over each frame's slots and its slot-0 output is
the frame. Frames get learned position embeddings (256 rows) and frame-type embeddings (pad /
start / regular / empty / extract), LayerNorm (eps 1e-12), and go through a temporal
transformer encoder with a causal mask. The inputs (`mmkd.extract.readers.detection`) end with
an "extract" frame whose output is the official video summary; there is no learned video token.

Tokens: the temporal encoder's outputs at the T sampled frames (positions 0..T-1; under the
causal mask frame t has seen frames 0..t); the extract frame's output is not a token.

Weights: the released checkpoints of gorjanradevski/revisiting-spatial-temporal-layouts load
through `convert_state_dict` (full `Stlt` state dicts with `backbone.` keys, backbone-only
files, and the earlier `stlt_backbone.` prefix); the classification head is dropped. Encoder
layers are PyTorch's post-norm GELU layers (LayerNorm eps 1e-5, as the official code builds them).
Depth: the released configuration has 4 spatial + 8 temporal layers (12 in all), our `stlt_l12`
teacher; the 9-layer student `stlt_l9` keeps that 1:2 ratio (3 + 6).
"""

from __future__ import annotations

import torch
from torch import nn

from mmkd.errors import MmkdError
from mmkd.extract.extractors.base import (
    Extractor,
    ExtractorSpec,
    register_family,
    register_spec,
    tokens_per_frame,
)
from mmkd.extract.readers.detection import PAD, VOCABULARIES

LAYER_NORM_EPS = 1e-12
N_FRAME_TYPES = 5  # the official embedding has 5 rows for every vocabulary
# official key prefix -> ours, most specific first
_OFFICIAL = (("frames_embeddings.layout_embedding.category_box_embeddings.", "object_embed."),
             ("frames_embeddings.layout_embedding.transformer.", "spatial."),
             ("frames_embeddings.", "frame_embed."),
             ("transformer.", "temporal."))
_DROP = ("prediction_head.", "frames_embeddings.layout_embedding.encoder_layer.",
         "frames_embeddings.position_ids")


def _encoder(dim: int, layers: int, heads: int, dropout: float) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=4 * dim, dropout=dropout,
                                       activation="gelu", batch_first=True, norm_first=False)
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


class ObjectEmbedding(nn.Module):
    """One box slot: category + box (+ score) embeddings, normalised (official names)."""

    def __init__(self, dim: int, n_categories: int, scores: bool, dropout: float):
        super().__init__()
        self.category_embeddings = nn.Embedding(n_categories, dim, padding_idx=PAD)
        self.box_embedding = nn.Linear(4, dim)
        self.score_embeddings = nn.Linear(1, dim) if scores else None
        self.layer_norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.dropout = nn.Dropout(dropout)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        x = self.category_embeddings(inputs["categories"]) + self.box_embedding(inputs["boxes"])
        if self.score_embeddings is not None:
            x = x + self.score_embeddings(inputs["scores"].unsqueeze(-1))
        return self.dropout(self.layer_norm(x))


class FrameEmbedding(nn.Module):
    """A frame's spatial output + position + frame type, normalised (official names)."""

    def __init__(self, dim: int, positions: int, dropout: float):
        super().__init__()
        self.position_embeddings = nn.Embedding(positions, dim)
        self.frame_type_embedding = nn.Embedding(N_FRAME_TYPES, dim, padding_idx=PAD)
        self.layer_norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.dropout = nn.Dropout(dropout)

    def forward(self, frames_BFD: torch.Tensor, types_BF: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(frames_BFD.shape[1], device=frames_BFD.device)
        x = frames_BFD + self.position_embeddings(pos) + self.frame_type_embedding(types_BF)
        return self.dropout(self.layer_norm(x))


def _bert_init(m: nn.Module) -> None:
    """BERT's init (weights N(0, 0.02), biases 0), whose configuration STLT's is: with PyTorch's
    N(0, 1) embeddings the position rows dwarf what the boxes add, every clip's tokens are
    nearly the same, and training from scratch on a small dataset never starts."""
    if isinstance(m, (nn.Linear, nn.Embedding)):
        nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)
        if isinstance(m, nn.Embedding) and m.padding_idx is not None:
            nn.init.zeros_(m.weight[m.padding_idx])


class STLTExtractor(Extractor):
    def __init__(self, spec: ExtractorSpec):
        super().__init__()
        a, d = spec.arch, spec.dim
        if spec.vocabulary not in VOCABULARIES:
            raise MmkdError(f"extractor {spec.name}: unknown vocabulary {spec.vocabulary!r}; "
                            f"use one of {', '.join(VOCABULARIES)}")
        self.vocab = VOCABULARIES[spec.vocabulary]
        self.object_embed = ObjectEmbedding(d, len(self.vocab.categories), self.vocab.uses_scores,
                                            a["dropout"])
        self.spatial = _encoder(d, a["spatial_layers"], a["num_heads"], a["dropout"])
        self.frame_embed = FrameEmbedding(d, a["positions"], a["dropout"])
        self.temporal = _encoder(d, a["temporal_layers"], a["num_heads"], a["dropout"])
        self.apply(_bert_init)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        cats_BFS = inputs["categories"]  # F = T sampled frames + the extract frame
        B, F, S = cats_BFS.shape
        if F > self.frame_embed.position_embeddings.num_embeddings:
            raise MmkdError(f"STLT: {F - 1} frames + the extract frame exceed its "
                            f"{self.frame_embed.position_embeddings.num_embeddings} positions; "
                            "sample fewer frames (clip.num_frames)")
        x = self.object_embed(inputs).reshape(B * F, S, -1)
        pad = cats_BFS.reshape(B * F, S) == PAD
        pad[:, 0] = False  # slot 0 is always the [CLS] box (keeps all-padding filler finite)
        frames_BFD = self.spatial(x, src_key_padding_mask=pad)[:, 0].reshape(B, F, -1)
        y = self.frame_embed(frames_BFD, inputs["frame_types"])
        causal = torch.ones(F, F, dtype=torch.bool, device=y.device).triu(1)
        # Padding frames (official batches pad after the extract frame) are hidden from every
        # earlier frame by the causal mask alone, so no frame padding mask is needed.
        return self.temporal(y, mask=causal)[:, :-1]

    def convert_state_dict(self, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {}
        for key, value in sd.items():
            for prefix in ("module.", "backbone.", "stlt_backbone."):
                key = key.removeprefix(prefix)
            if key.startswith(_DROP):
                continue
            if not self.vocab.uses_scores and ".score_embeddings." in f".{key}":
                continue  # trained with Something-Else: present but never used
            for official, ours in _OFFICIAL:
                if key.startswith(official):
                    key = ours + key.removeprefix(official)
                    break
            out[key] = value
        rows = out.get("object_embed.category_embeddings.weight")
        if rows is not None and rows.shape[0] != len(self.vocab.categories):
            other = [n for n, v in VOCABULARIES.items() if len(v.categories) == rows.shape[0]]
            raise MmkdError(f"STLT checkpoint has {rows.shape[0]} categories, the "
                            f"{self.vocab.name} vocabulary {len(self.vocab.categories)}; "
                            + (f"use an extractor with the {other[0]} vocabulary"
                               if other else "pass a checkpoint of this vocabulary"))
        return out


@register_family("stlt", input_kind="layout", modalities=("detection",),
                 contract=("max_objects", "vocabulary"), n_tokens=tokens_per_frame,
                 grad_checkpointing=True)
def _build(spec: ExtractorSpec) -> Extractor:
    return STLTExtractor(spec)


def stlt_arch(spatial: int, temporal: int, heads: int = 12, positions: int = 256,
              dropout: float = 0.1) -> dict:
    return {"spatial_layers": spatial, "temporal_layers": temporal, "num_heads": heads,
            "positions": positions, "dropout": dropout}


_RELEASES = "gorjanradevski/revisiting-spatial-temporal-layouts, README Model Zoo"
register_spec(ExtractorSpec("stlt_l12", "stlt", 768, stlt_arch(4, 8),
                            f"STLT Something-Else release comp_split_detect_stlt.pt ({_RELEASES})",
                            max_objects=8, vocabulary="something_else"))
register_spec(ExtractorSpec("stlt_l12_ag", "stlt", 768, stlt_arch(4, 8),
                            f"STLT Action Genome Oracle or Detections release ({_RELEASES})",
                            max_objects=16, vocabulary="action_genome"))
register_spec(ExtractorSpec("stlt_l9", "stlt", 768, stlt_arch(3, 6),
                            "random init (paper: STLT student from scratch)", max_objects=8,
                            vocabulary="something_else"))
# For small datasets trained from scratch by `mmkd pretrain` (lr_max <= 1e-3: these post-norm
# layers diverge at 3e-3): 2 + 2 layers of width 128, no dropout. A frame reaches its [CLS] slot
# only through attention; one spatial layer passes so little of the boxes that 150 steps on 320
# clips leave box motion at chance, two reach val 0.99.
register_spec(ExtractorSpec("small_stlt", "stlt", 128,
                            stlt_arch(2, 2, heads=4, positions=64, dropout=0.0),
                            "random init: `mmkd pretrain` trains it on the run's train split "
                            "(small datasets)", max_objects=4, vocabulary="something_else"))
register_spec(ExtractorSpec("test_stlt", "stlt", 32, stlt_arch(1, 1, heads=2),
                            "random init (tests only)", max_objects=4,
                            vocabulary="something_else"))
