"""A small stage-3 student's inputs for tests: tiny extractors and one batch of raw inputs."""

import numpy as np
import torch

from mmkd.extract.extractors import create_extractor, get_spec
from mmkd.extract.readers.detection import VOCABULARIES, random_layout
from mmkd.train.finetune_data import RawInputs

T, THETA, B = 4, 3, 5


def extractor(name: str, **arch):
    spec = get_spec(name)
    return create_extractor(name, random_init=True, arch={**spec.arch, **arch}) \
        .requires_grad_(True)


def batch(seed: int = 0) -> tuple[dict, dict]:
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    clips = [random_layout(rng, T, VOCABULARIES["something_else"], 4) for _ in range(B)]
    layout = {k: torch.from_numpy(np.stack([c[k] for c in clips])) for k in clips[0]}
    layout["categories"][:, :, 1:][torch.rand(B, T + 1, 4, generator=g) < 0.3] = 0  # padding
    tokens = {"video": RawInputs(frames=torch.randn(B, 3, T, 32, 32, generator=g)),
              "audio": RawInputs(fbank=torch.randn(B, 48, 32, generator=g)),
              "detection": RawInputs(layout),
              "flow": torch.randn(B, THETA, 8, generator=g)}
    present = {m: torch.ones(B, dtype=torch.bool) for m in tokens}
    present["audio"][1] = False
    return tokens, present
