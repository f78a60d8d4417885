"""Training methods as tasks, one file each; importing this package registers them all in
`mmkd.registry.methods` (the one way to find a method: CLI, loop, eval and reports use it).

  teacher          KARMMA_T: α·CE + β·InfoNCE(video)
  karmma           KARMMA_S: γ·CE + λ·KL(teacher ‖ student), modality dropout + B5
  baseline         CE only, no modality dropout, strategy `none`
  baseline-delta   CE only, modality dropout + B5
  kd               Hinton KD: CE + T²·KL at temperature T from one cached teacher, no dropout
  dml              deep mutual learning: two students, each CE + KL to the other, no teacher
  mst              MST-Distill: a unimodal student routed among MaskNet-specialised teachers
  cmpt             cross-modal proxy tokens: CE + λ·alignment of each proxy to its modality's token
  dcat             D-CAT: a unimodal student, CE + λ·‖n(K_Bᵀ V_B) − n(K_Aᵀ V_A)‖ to a cached source
"""

from mmkd.train.methods import baselines, cmpt, dcat, dml, karmma, kd, mst, teacher  # noqa: F401  (register)
from mmkd.train.methods.base import (
    BatchNeeds,
    DropoutDraws,
    Method,
    StepOutput,
    student_methods,
)
from mmkd.train.methods.baselines import BaselineDeltaMethod, BaselineMethod
from mmkd.train.methods.karmma import KarmmaMethod
from mmkd.train.methods.teacher import TeacherMethod

__all__ = ["BaselineDeltaMethod", "BaselineMethod", "BatchNeeds", "DropoutDraws", "KarmmaMethod",
           "Method", "StepOutput", "TeacherMethod", "student_methods"]
