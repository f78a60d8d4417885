"""Teacher and student builders (registered in `mmkd.registry.models`).

Both roles share one architecture; they differ in the FusionConfig of their
RecipeConfig (teacher d=768, l=2, attention dropout 0.3; student d=384, l=1) and in the token
shapes of their extractors, which the caller reads from the cache (`features`: modality ->
(Θ, D)). Only the fusion-config fields named in `FusionFields` are read, so this module needs
nothing but torch (and the registry), not the config.
"""

from __future__ import annotations

from typing import Protocol

from mmkd.models.fusion import FusionModel, ModelSpec
from mmkd.registry import models


class FusionFields(Protocol):
    """What a builder reads of `mmkd.config.FusionConfig`."""

    width: int
    layers: int
    heads: int
    attn_dropout: float
    missing_strategy: str
    mlp_hidden: int


def spec_from_fusion(fusion: FusionFields, features: dict[str, tuple[int, int]],
                     heads: dict[str, int], missing_strategy: str | None = None) -> ModelSpec:
    """A ModelSpec from a FusionConfig; `missing_strategy` overrides the config's (baselines)."""
    return ModelSpec(
        modalities={m: [int(k), int(dim)] for m, (k, dim) in features.items()},
        heads=dict(heads), width=fusion.width, layers=fusion.layers, n_heads=fusion.heads,
        attn_dropout=fusion.attn_dropout,
        missing_strategy=missing_strategy or fusion.missing_strategy,
        mlp_hidden=fusion.mlp_hidden)


@models.register("teacher")
def build_teacher(fusion: FusionFields, features: dict[str, tuple[int, int]],
                  heads: dict[str, int], missing_strategy: str | None = None) -> FusionModel:
    """KARMMA_T's fusion block + MH-MLP over the teacher extractors' cached tokens."""
    return FusionModel(spec_from_fusion(fusion, features, heads, missing_strategy))


@models.register("student")
def build_student(fusion: FusionFields, features: dict[str, tuple[int, int]],
                  heads: dict[str, int], missing_strategy: str | None = None) -> FusionModel:
    """KARMMA_S's (or a baseline's) fusion block + MH-MLP over the student's cached tokens."""
    return FusionModel(spec_from_fusion(fusion, features, heads, missing_strategy))
