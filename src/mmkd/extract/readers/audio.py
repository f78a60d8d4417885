"""Audio of a clip: wav or any container through PyAV, or the EPIC HDF5, sliced by timestamps.

Two views of the same waveform (both Kaldi log-mel fbanks, 10 ms shift, AST normalisation
(x - (-4.27)) / (4.57 * 2) so the two audio extractors see the same scale):
  - `fbank_clip`: one spectrogram of `target_frames` frames around the clip, for AST, padded as
    the official AST pads (raw fbank, then normalisation);
  - `mel_windows`: one `window_s` spectrogram window around each sampled RGB frame, resized to an
    image, i.e. a "video" of spectrograms for the Swin-B audio teacher.
`mel_windows` pads with silence where it reads outside the file; a clip whose sampled moments
lie past the end of the audio is "too short" (MediaError).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmkd.datasets.manifest import Sample
from mmkd.extract.sampling import Clip, ClipSampler, MediaError, has_segment

AST_MEAN, AST_STD = -4.2677393, 4.5689974
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")
NOMINAL_FPS = 30.0  # clip grid for audio-only samples without a segment or an fps


class AudioSource:
    """One audio stream: its rate, duration, and `read(t0, t1)` of mono float32 samples."""

    def __init__(self, path: Path, media: dict[str, Any]):
        self.path = path
        self.key = media.get("key")
        if not path.is_file():
            raise MediaError(f"{path}: audio file not found")
        if path.suffix.lower() in HDF5_SUFFIXES:
            self.rate, self.n = self._hdf5_info(media)
        else:
            self.rate, self.n = self._av_info()
        if self.n <= 0:
            raise MediaError(f"{path}{f'[{self.key}]' if self.key else ''}: no audio samples")

    @property
    def duration_s(self) -> float:
        return self.n / self.rate

    def _hdf5_info(self, media: dict[str, Any]) -> tuple[int, int]:
        ds = _hdf5(str(self.path)).get(self.key) if self.key else None
        if ds is None:
            raise MediaError(f"{self.path}: no dataset {self.key!r} (the manifest's audio key)")
        return int(media.get("sample_rate", 24000)), int(ds.shape[0])

    def _av_info(self) -> tuple[int, int]:
        import av

        try:
            with av.open(str(self.path)) as c:
                if not c.streams.audio:
                    raise MediaError(f"{self.path}: no audio stream")
                s = c.streams.audio[0]
                if s.duration is not None:
                    dur = float(s.duration * s.time_base)
                elif c.duration is not None:
                    dur = c.duration / 1e6
                else:  # no duration in the header (a WebM muxed live): where the packets end
                    dur = max((float((p.pts + (p.duration or 0)) * p.time_base)
                               for p in c.demux(s) if p.pts is not None), default=0.0)
                return int(s.rate), int(round(dur * s.rate))
        except av.FFmpegError as exc:
            raise MediaError(f"{self.path}: cannot open audio ({exc})") from None

    def read(self, t0: float, t1: float) -> np.ndarray:
        """Mono float32 samples for [t0, t1) at `self.rate`, zero outside the file."""
        i0, i1 = round(t0 * self.rate), round(t1 * self.rate)
        out = np.zeros(max(0, i1 - i0), np.float32)
        a, b = max(i0, 0), min(i1, self.n)
        if b > a:
            out[a - i0:b - i0] = self._read_range(a, b)
        return out

    def _read_range(self, a: int, b: int) -> np.ndarray:
        if self.path.suffix.lower() in HDF5_SUFFIXES:
            data = np.asarray(_hdf5(str(self.path))[self.key][a:b], np.float32)
            return data if data.ndim == 1 else data.mean(axis=-1)
        import av

        got = np.zeros(b - a, np.float32)
        try:
            with av.open(str(self.path)) as c:
                s = c.streams.audio[0]
                if a > 0:
                    c.seek(int(a / self.rate / s.time_base), stream=s, backward=True)
                resampler = av.AudioResampler(format="flt", layout="mono", rate=self.rate)
                pos = None
                for frame in c.decode(s):
                    if pos is None or frame.time is not None:
                        pos = round((frame.time or 0.0) * self.rate)
                    for rf in resampler.resample(frame):
                        x = rf.to_ndarray().reshape(-1)
                        lo, hi = max(pos, a), min(pos + len(x), b)
                        if hi > lo:
                            got[lo - a:hi - a] = x[lo - pos:hi - pos]
                        pos += len(x)
                    if pos >= b:
                        break
        except av.FFmpegError as exc:
            raise MediaError(f"{self.path}: cannot decode audio ({exc})") from None
        return got


@lru_cache(maxsize=4)
def _hdf5(path: str):
    """One open handle per file and process (workers each open their own)."""
    import h5py

    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise MediaError(f"{path}: not a readable HDF5 file ({exc})") from None


def open_clip(path: Path, media: dict[str, Any], sample: Sample,
              sampler: ClipSampler) -> tuple[Clip, AudioSource]:
    src = AudioSource(path, media)
    fps = sample.fps or NOMINAL_FPS
    n_frames = None if has_segment(sample) else int(src.duration_s * fps)
    clip = sampler.clip(sample, fps=fps, n_frames=n_frames)
    if clip.times_s.max() > src.duration_s:
        raise MediaError(f"{path}{f'[{src.key}]' if src.key else ''}: too short: clip reaches "
                         f"{clip.times_s.max():.2f} s, the audio ends at {src.duration_s:.2f} s")
    return clip, src


def _resampled(wave: np.ndarray, rate: int, target: int) -> torch.Tensor:
    x = torch.from_numpy(wave)
    if rate != target:
        import torchaudio.functional as AF

        x = AF.resample(x, rate, target)
    return x


def kaldi_fbank(wave: torch.Tensor, rate: int, n_mels: int, shift_ms: float) -> torch.Tensor:
    """Raw Kaldi log-mel fbank (T, n_mels) as in AST (hanning window, htk mel, no dither);
    (0, n_mels) when the wave is shorter than one 25 ms window."""
    from torchaudio.compliance.kaldi import fbank

    if wave.shape[0] < round(0.025 * rate):
        return torch.zeros(0, n_mels)
    wave = wave - wave.mean()
    return fbank(wave[None], htk_compat=True, sample_frequency=rate, use_energy=False,
                 window_type="hanning", num_mel_bins=n_mels, dither=0.0, frame_shift=shift_ms)


def ast_normalise(feats: torch.Tensor) -> torch.Tensor:
    return (feats - AST_MEAN) / (AST_STD * 2)


def log_mel(wave: torch.Tensor, rate: int, n_mels: int, shift_ms: float) -> torch.Tensor:
    """AST-normalised Kaldi fbank (T, n_mels)."""
    return ast_normalise(kaldi_fbank(wave, rate, n_mels, shift_ms))


def fbank_clip(clip: Clip, src: AudioSource, rate: int, n_mels: int, shift_ms: float,
               target_frames: int) -> torch.Tensor:
    """(target_frames, n_mels): AST's input for the `target_frames × shift` s around the clip.

    The window is centred on the clip and moved inside the file where it fits; a file shorter
    than the window starts it at 0 s. As in the official AST data loader, the raw fbank is
    zero-padded to `target_frames` *before* normalisation, so a padded frame is
    (0 - mean) / (2 std), and a whole short file gives exactly the official input."""
    span = target_frames * shift_ms / 1000 + 0.015  # + the 25 ms window minus one shift
    centre = (clip.times_s.min() + clip.times_s.max()) / 2
    t0 = min(max(centre - span / 2, 0.0), max(src.duration_s - span, 0.0))
    wave = _resampled(src.read(t0, min(t0 + span, src.duration_s)), src.rate, rate)
    feats = kaldi_fbank(wave, rate, n_mels, shift_ms)[:target_frames]
    feats = torch.nn.functional.pad(feats, (0, 0, 0, target_frames - feats.shape[0]))
    return ast_normalise(feats)


def mel_windows(clip: Clip, src: AudioSource, rate: int, n_mels: int, shift_ms: float,
                window_s: float, size: int) -> torch.Tensor:
    """(T, size, size): a `window_s` log-mel window around each sampled frame, as an image
    (mel bins on the height, time on the width)."""
    times = clip.times_s
    t0 = float(times.min()) - window_s / 2
    wave = _resampled(src.read(t0, float(times.max()) + window_s / 2 + 0.025), src.rate, rate)
    feats = log_mel(wave, rate, n_mels, shift_ms)  # (F, n_mels)
    win = max(1, round(window_s * 1000 / shift_ms))
    starts = np.rint((times - times.min()) * 1000 / shift_ms).astype(np.int64)
    need = int(starts.max()) + win
    if feats.shape[0] < need:
        feats = torch.nn.functional.pad(feats, (0, 0, 0, need - feats.shape[0]))
    idx = torch.from_numpy(starts)[:, None] + torch.arange(win)[None, :]
    windows_TMW = feats[idx].transpose(1, 2)  # (T, n_mels, win)
    return torch.nn.functional.interpolate(windows_TMW[:, None], size=(size, size),
                                           mode="bilinear", align_corners=False)[:, 0]
