"""Fusion block, missing-modality strategies, MH-MLP and the teacher/student builders."""

from mmkd.models.builders import build_student, build_teacher, spec_from_fusion
from mmkd.models.fusion import FusionModel, FusionOutput, ModelSpec, MultiHeadMLP, PreNormBlock
from mmkd.models.missing import STRATEGIES, ModalityEmbedding

__all__ = ["STRATEGIES", "FusionModel", "FusionOutput", "ModalityEmbedding", "ModelSpec",
           "MultiHeadMLP", "PreNormBlock", "build_student", "build_teacher", "spec_from_fusion"]
