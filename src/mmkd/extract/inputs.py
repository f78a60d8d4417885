"""From a manifest sample to an extractor's input tensors (runs in the decode workers).

`InputBuilder` pairs one modality's reader with one extractor's input contract and the run's
clip policy; it is a small picklable object so DataLoader workers (or Dask tasks) can run it.
Media keys per modality (manifest.Sample.media): video -> "rgb" (EPIC frame folder, preferred:
frame-exact) or "video" (a file); flow -> "flow"; audio -> "audio"; detection -> "detection".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmkd.datasets.manifest import ManifestMeta, Sample, resolve
from mmkd.errors import MmkdError
from mmkd.extract.extractors.base import ExtractorSpec
from mmkd.extract.readers import audio, detection, flow, video
from mmkd.extract.readers.image import resize_crop, to_tensor
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

    def _path(self, rel: str) -> Path:
        return resolve(self.meta, rel, self.manifest_dir)

    def __call__(self, sample: Sample) -> dict[str, torch.Tensor]:
        key = next((k for k in MEDIA_KEYS[self.modality] if k in sample.media), None)
        if key is None:
            raise MediaError(f"sample {sample.sample_id}: no {self.modality} media in the manifest")
        media: dict[str, Any] = sample.media[key]
        s = self.spec
        if self.modality == "video":
            if key == "rgb":
                _, frames = video.read_rgb_folder(self._path(media["dir"]), media["template"],
                                                  sample, self.sampler)
            else:
                _, frames = video.read_video_file(self._path(media["path"]), sample, self.sampler)
            frames = np.stack([resize_crop(f, s.resize, s.crop) for f in frames])
            return {"frames": to_tensor(frames, s.mean, s.std)}
        if self.modality == "flow":
            _, uv0 = flow.read_flow_folder(self._path(media["dir"]), media["template"],
                                           int(media.get("stride", 1)), sample, self.sampler,
                                           s.resize, s.crop)
            return {"frames": torch.from_numpy(uv0).permute(3, 0, 1, 2).contiguous()}
        if self.modality == "audio":
            clip, src = audio.open_clip(self._path(media["path"]), media, sample, self.sampler)
            if s.input_kind == "fbank":
                return {"fbank": audio.fbank_clip(clip, src, s.sample_rate, s.n_mels,
                                                  s.frame_shift_ms, s.target_frames)}
            win = audio.mel_windows(clip, src, s.sample_rate, s.n_mels, s.frame_shift_ms,
                                    s.window_s, s.crop)
            return {"frames": win[None].expand(3, -1, -1, -1).contiguous()}
        _, layout = detection.read_layout(self._path(media["path"]), media, sample, self.sampler,
                                          s.max_objects, detection.VOCABULARIES[s.vocabulary])
        return {k: torch.from_numpy(v) for k, v in layout.items()}
