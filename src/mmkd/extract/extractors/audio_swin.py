"""The Swin-B audio teacher: Video Swin-B (Kinetics-400) on a "video" whose frames
are log-mel spectrogram windows, one around each sampled RGB frame (see
`mmkd.extract.readers.audio.mel_windows`), replicated to 3 channels.

The paper names the backbone (Swin-B, Kinetics-400) but not the spectrogram parameters; ours:
24 kHz (EPIC's rate, no resampling), 128 mel bins, 10 ms shift, 1 s windows resized to 224×224,
normalised like AST. The module is the same torchvision Swin3d as `swin3d_b`, so the same
checkpoints load.
"""

from __future__ import annotations

from mmkd.extract.extractors.base import ExtractorSpec, register_spec
from mmkd.extract.extractors.swin3d import DEMO_TEACHER, K400_SOURCE_B, SWIN_B, swin_arch

_AUDIO = {"sample_rate": 24000, "n_mels": 128, "frame_shift_ms": 10.0, "window_s": 1.0}

register_spec(ExtractorSpec("swin3d_b_audio", "swin3d_audio", 1024, SWIN_B, K400_SOURCE_B,
                            crop=224, **_AUDIO))
register_spec(ExtractorSpec("test_swin3d_audio", "swin3d_audio", 32,
                            swin_arch(16, (1, 1), (2, 2), (2, 4, 4)), "random init (tests only)",
                            crop=32, sample_rate=16000, n_mels=32, window_s=0.5))
register_spec(ExtractorSpec("demo_swin3d_teacher_audio", "swin3d_audio", 192, DEMO_TEACHER,
                            "random init (the demo: not pretrained, as no audio Swin exists)",
                            crop=64, sample_rate=24000, n_mels=64, window_s=0.5))
