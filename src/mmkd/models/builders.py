"""Teacher and student builders (registered in `mmkd.registry.models`).

Both roles share one architecture (METHOD.md §2); they differ in the FusionConfig of their
RecipeConfig (teacher d=768, l=2, attention dropout 0.3; student d=384, l=1) and in the token
shapes of their extractors, which the caller reads from the cache (`features`: modality ->
(Θ, D)). Only the fusion-config fields are read, so this module needs nothing but torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmkd.models.fusion import FusionModel, ModelSpec
from mmkd.registry import models

if TYPE_CHECKING:
    from mmkd.config import FusionConfig


def spec_from_fusion(fusion: FusionConfig, features: dict[str, tuple[int, int]],
                     heads: dict[str, int], missing_strategy: str | None = None) -> ModelSpec:
    """A ModelSpec from a FusionConfig; `missing_strategy` overrides the config's (baselines)."""
    return ModelSpec(
        modalities={m: [int(k), int(dim)] for m, (k, dim) in features.items()},
        heads=dict(heads), width=fusion.width, layers=fusion.layers, n_heads=fusion.heads,
        attn_dropout=fusion.attn_dropout,
        missing_strategy=missing_strategy or fusion.missing_strategy,
        mlp_hidden=fusion.mlp_hidden)


@models.register("teacher")
def build_teacher(fusion: FusionConfig, features: dict[str, tuple[int, int]],
                  heads: dict[str, int], missing_strategy: str | None = None) -> FusionModel:
    """KARMMA_T's fusion block + MH-MLP over the teacher extractors' cached tokens."""
    return FusionModel(spec_from_fusion(fusion, features, heads, missing_strategy))


@models.register("student")
def build_student(fusion: FusionConfig, features: dict[str, tuple[int, int]],
                  heads: dict[str, int], missing_strategy: str | None = None) -> FusionModel:
    """KARMMA_S's (or a baseline's) fusion block + MH-MLP over the student's cached tokens."""
    return FusionModel(spec_from_fusion(fusion, features, heads, missing_strategy))
