"""Stage 2: losses, training methods (teacher, karmma, baseline, baseline-delta), the one
training loop, checkpoints, and the teacher/distill entry points (`mmkd.train.stage2`).

Importing the package registers the methods in `mmkd.registry.methods` and the model builders
in `mmkd.registry.models`.
"""

import mmkd.models  # noqa: F401  (registers the teacher/student builders)
from mmkd.train import methods  # noqa: F401  (registers the methods)
