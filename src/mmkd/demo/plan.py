"""The demo dataset's plan: participants' looks, videos, and action segments with their labels.

Planning is separate from rendering so that the annotation files (the part that must be
byte-identical for a seed) come from a few cheap random draws in one process, while the media
of each video can be rendered in any worker from `(seed, video_id)` alone.

Times are integers in centiseconds, the resolution of EPIC's `HH:MM:SS.ss` timestamps, so frame
numbers follow EPIC's rule `frame = floor(seconds * fps)` exactly (at least 1), with no float
rounding surprises.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from mmkd.demo.spec import (
    COMPATIBLE,
    FLOW_STRIDE,
    GAP_SECONDS,
    LEAD_IN_SECONDS,
    NOUNS,
    SCALES,
    SECOND_NOUN,
    SEGMENT_SECONDS,
    VERBS,
    Scale,
    VideoLayout,
)
from mmkd.errors import MmkdError

NOUN_ID = {n.key: i for i, n in enumerate(NOUNS)}
RATES_HZ = {"shake_x": (2.5, 3.5), "circle": (1.2, 1.8), "strokes": (3.0, 4.5)}
VERB_ID = {v.key: i for i, v in enumerate(VERBS)}


def stream(seed: int, *keys: str | int) -> np.random.Generator:
    """An independent, reproducible RNG per (seed, purpose, item): workers need no shared state."""
    words = [seed] + [k if isinstance(k, int) else zlib.crc32(k.encode()) for k in keys]
    return np.random.default_rng(np.random.SeedSequence(words))


@dataclass(frozen=True)
class Style:
    """A participant's kitchen and camera: the appearance shift between people.

    Unseen participants draw from wider, shifted distributions (darker, tinted, noisier, a
    texture family the seen ones never have), so they are harder, as in EPIC's P18/P32.
    """

    background: tuple[float, float, float]  # counter-top colour (RGB)
    background2: tuple[float, float, float]  # texture colour
    texture: str  # stripes | tiles | speckle | waves (waves: unseen only)
    texture_period: float  # px
    texture_angle: float  # radians
    light: float  # global gain
    white_balance: tuple[float, float, float]  # per-channel gain
    tint: tuple[float, float, float]  # per-channel gain on object colours
    skin: tuple[float, float, float]
    shake_px: float  # camera shake amplitude (head motion)
    noise_sigma: float  # sensor noise (grey levels)
    hum_hz: float  # mains hum of the kitchen (audio)
    room_noise: float  # audio background level
    pitch: float  # multiplies every noun partial: the same object sounds a bit different


def participant_style(seed: int, participant: str, unseen: bool) -> Style:
    rng = stream(seed, "style", participant)
    spread = 1.5 if unseen else 1.0
    base = rng.uniform(70, 190, 3)
    if unseen:
        base = base * 0.75
    textures = ("waves", "speckle") if unseen else ("stripes", "tiles", "speckle")
    return Style(
        background=tuple(base.tolist()),
        background2=tuple(np.clip(base + rng.uniform(-45, 45, 3), 0, 255).tolist()),
        texture=str(rng.choice(textures)),
        texture_period=float(rng.uniform(6, 18)),
        texture_angle=float(rng.uniform(0, np.pi)),
        light=float(rng.uniform(0.8, 1.1) if not unseen else rng.uniform(0.7, 0.9)),
        white_balance=tuple((1 + rng.normal(0, 0.06 * spread, 3)).tolist()),
        tint=tuple((1 + rng.normal(0, 0.07 * spread, 3)).tolist()),
        skin=tuple((np.array([214.0, 160.0, 130.0]) * rng.uniform(0.55, 1.1)).tolist()),
        shake_px=float(rng.uniform(0.5, 1.5) * spread),
        noise_sigma=float(rng.uniform(2.0, 5.0) * spread),
        hum_hz=float(rng.choice([50.0, 60.0])),
        room_noise=float(rng.uniform(0.02, 0.05) * spread),
        pitch=float(1 + rng.normal(0, 0.03 * spread)),
    )


@dataclass(frozen=True)
class Segment:
    index: int  # narration number within the video (narration_id = f"{video_id}_{index}")
    start_cs: int
    stop_cs: int
    narration_ms: int
    verb: int
    noun: int
    second_noun: int | None
    verb_form: str  # the narrated spelling (EPIC's `verb` column)
    rate_hz: float  # rhythm of repetitive verbs (wash, cut, mix), shared by picture and sound

    def frames(self, fps: int) -> tuple[int, int]:
        """EPIC rule: frame = floor(seconds * fps), 1-based so at least 1."""
        return max(1, self.start_cs * fps // 100), max(1, self.stop_cs * fps // 100)

    @property
    def narration(self) -> str:
        words = [self.verb_form.replace("-", " "), NOUNS[self.noun].key]
        if self.second_noun is not None:
            words += [SECOND_NOUN[VERBS[self.verb].key][0], NOUNS[self.second_noun].key]
        return " ".join(words)

    @property
    def all_nouns(self) -> list[int]:
        return [self.noun] + ([self.second_noun] if self.second_noun is not None else [])


@dataclass(frozen=True)
class VideoPlan:
    layout: VideoLayout
    segments: tuple[Segment, ...]
    end_cs: int  # the video's length

    @property
    def video_id(self) -> str:
        return self.layout.video_id

    @property
    def participant(self) -> str:
        return self.layout.participant

    @property
    def fps(self) -> int:
        return self.layout.fps

    @property
    def n_frames(self) -> int:
        """RGB frames 1..n; frame k shows time k / fps (EPIC's floor rule read backwards)."""
        return self.end_cs * self.fps // 100

    @property
    def flow_stride(self) -> int:
        return FLOW_STRIDE[self.fps]

    @property
    def n_flow_frames(self) -> int:
        """EPIC: (rgb_n - 1) // stride; flow frame j = motion from RGB (j-1)*stride+1 onwards."""
        return (self.n_frames - 1) // self.flow_stride


@dataclass(frozen=True)
class Plan:
    scale: Scale
    seed: int
    videos: tuple[VideoPlan, ...]

    @property
    def unseen(self) -> tuple[str, ...]:
        return self.scale.unseen

    def styles(self) -> dict[str, Style]:
        return {
            v.participant: participant_style(self.seed, v.participant, v.participant in self.unseen)
            for v in self.videos
        }


def make_plan(scale: str, seed: int) -> Plan:
    if scale not in SCALES:
        raise MmkdError(f"--scale {scale!r}: unknown demo scale; use one of {', '.join(SCALES)}")
    spec = SCALES[scale]
    rare = _rare_slots(spec, seed)
    videos = tuple(
        _plan_video(layout, seed, rare.get(layout.video_id, {})) for layout in spec.videos
    )
    return Plan(spec, seed, videos)


def _rare_slots(spec: Scale, seed: int) -> dict[str, dict[int, int]]:
    """Place `rare_per_noun` segments of each validation-only noun in validation videos."""
    rng = stream(seed, "rare", spec.name)
    val = [v for v in spec.videos if v.split == "validation"]
    slots = [(v.video_id, i) for v in val for i in range(v.segments)]
    rare_nouns = [NOUN_ID[n.key] for n in NOUNS if n.validation_only]
    picks = rng.choice(len(slots), size=len(rare_nouns) * spec.rare_per_noun, replace=False)
    out: dict[str, dict[int, int]] = {}
    for k, slot in enumerate(picks):
        video_id, i = slots[int(slot)]
        out.setdefault(video_id, {})[i] = rare_nouns[k // spec.rare_per_noun]
    return out


def _plan_video(layout: VideoLayout, seed: int, rare: dict[int, int]) -> VideoPlan:
    rng = stream(seed, "plan", layout.video_id)
    weights = np.array([v.weight for v in VERBS])
    segments = []
    t = round(LEAD_IN_SECONDS * 100)
    for i in range(layout.segments):
        if i in rare:
            noun = rare[i]
            verbs = [VERB_ID[k] for k, nouns in COMPATIBLE.items() if NOUNS[noun].key in nouns]
            verb = int(verbs[rng.integers(len(verbs))])
        else:
            verb = int(rng.choice(len(VERBS), p=weights / weights.sum()))
            nouns = [
                NOUN_ID[k]
                for k in COMPATIBLE[VERBS[verb].key]
                if not NOUNS[NOUN_ID[k]].validation_only
            ]
            noun = int(nouns[rng.integers(len(nouns))])
        second = _second_noun(rng, verb, noun)
        forms = VERBS[verb].instances
        form = forms[0] if rng.random() < 0.6 else forms[int(rng.integers(len(forms)))]
        dur = int(
            rng.integers(round(SEGMENT_SECONDS[0] * 100), round(SEGMENT_SECONDS[1] * 100) + 1)
        )
        narr = max(0, t * 10 + int(rng.integers(-300, 600)))
        rate = RATES_HZ.get(VERBS[verb].motion, (0.0, 0.0))
        segments.append(
            Segment(
                i, t, t + dur, narr, verb, noun, second, form, round(float(rng.uniform(*rate)), 3)
            )
        )
        t += dur + int(rng.integers(round(GAP_SECONDS[0] * 100), round(GAP_SECONDS[1] * 100) + 1))
    return VideoPlan(layout, tuple(segments), end_cs=t)


def _second_noun(rng: np.random.Generator, verb: int, noun: int) -> int | None:
    rule = SECOND_NOUN.get(VERBS[verb].key)
    if rule is None or NOUNS[noun].key not in rule[2] or rng.random() > 0.3:
        return None
    return NOUN_ID[rule[1]]  # never the noun itself: SECOND_NOUN's lists exclude the target
