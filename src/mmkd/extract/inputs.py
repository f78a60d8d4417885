"""From a manifest sample to an extractor's input tensors (runs in the decode workers).

`InputBuilder` pairs one modality's media with one extractor's input contract (read by its input
kind's reader, `input_kinds`) and the run's clip policy; it is a small picklable object so
DataLoader workers (or Dask tasks) can run it.
Media keys per modality (manifest.Sample.media): video -> "rgb" (EPIC frame folder, preferred:
frame-exact) or "video" (a file); flow -> "flow"; audio -> "audio"; detection -> "detection".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from mmkd.datasets.manifest import ManifestMeta, Sample, resolve
from mmkd.errors import MmkdError
from mmkd.extract.extractors.base import ExtractorSpec
from mmkd.extract.input_kinds import get_input_kind
from mmkd.extract.sampling import ClipSampler, MediaError

MEDIA_KEYS = {"video": ("rgb", "video"), "flow": ("flow",), "audio": ("audio",),
              "detection": ("detection",)}


@dataclass(frozen=True)
class InputBuilder:
    modality: str
    spec: ExtractorSpec
    sampler: ClipSampler
    meta: ManifestMeta
    manifest_dir: str

    def __post_init__(self) -> None:
        if self.modality not in self.spec.modalities:
            raise MmkdError(f"extractor {self.spec.name} reads {', '.join(self.spec.modalities)}, "
                            f"not {self.modality}; pick an extractor for {self.modality}")

    def path(self, rel: str) -> Path:
        return resolve(self.meta, rel, self.manifest_dir)

    def __call__(self, sample: Sample) -> dict[str, torch.Tensor]:
        key = next((k for k in MEDIA_KEYS[self.modality] if k in sample.media), None)
        if key is None:
            raise MediaError(f"sample {sample.sample_id}: no {self.modality} media in the manifest")
        return get_input_kind(self.spec.input_kind).read(self, sample, key, sample.media[key])
