"""Stage 2: losses, training methods as tasks (`mmkd.train.methods`, one file each), the run
builder (`mmkd.train.runs`), the one training loop and evaluator (`mmkd.train.loop`),
checkpoints, and the teacher/distill entry points (`mmkd.train.stage2`).

Importing the package registers the methods in `mmkd.registry.methods` and the model builders
in `mmkd.registry.models`.
"""

import mmkd.models  # noqa: F401  (registers the teacher/student builders)
from mmkd.train import methods  # noqa: F401  (registers the methods)
