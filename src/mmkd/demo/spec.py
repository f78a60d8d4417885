"""What the demo dataset contains: classes, how each one looks, moves and sounds, and the scales.

The content is designed so that every modality carries partial, overlapping evidence, as in
egocentric kitchens:

- a verb is a motion pattern of the object and the hand (`Verb.motion`): it is visible in the
  video, dominates the flow field, and shapes the box trajectories; it also sets the temporal
  envelope of the sound (impacts, rhythm, continuous scraping);
- a noun is an object with a shape, colour and texture (video), a box aspect ratio and size
  (boxes), a flow outline when it moves (flow, weak), and a resonant timbre (audio) that is
  shared in part by similar materials (ceramic, metal, soft vegetables), so audio alone
  separates noun *groups* better than nouns;
- nouns come in confusable pairs (plate/bowl: similar colour, different shape; pan/lid: same
  shape, different colour; tomato/onion: round, red vs purple), so no single cheap cue is
  perfect.

The class keys, categories and instance spellings are real EPIC-KITCHENS-100 ones; ids are
0..n-1 in this dataset's own order, the validation-only nouns last.
"""

from __future__ import annotations

from dataclasses import dataclass

WIDTH, HEIGHT = 128, 96  # small frames keep generation and CPU extraction fast
FPS_MAIN, FPS_EXT = 60, 50  # EPIC rates: PXX_YY videos at 60 fps, PXX_1YY at 50 fps
FLOW_STRIDE = {FPS_MAIN: 2, FPS_EXT: 1}  # EPIC: flow of PXX_YY at stride 2, PXX_1YY at stride 1
SAMPLE_RATE = 24_000  # EPIC audio as commonly packed: mono 24 kHz
BOX_STRIDE = 5  # boxes on every 5th RGB frame: 12 fps at 60 fps, 10 fps at 50 fps
RGB_JPEG_QUALITY = 90
FLOW_JPEG_QUALITY = 95  # what dense_flow (EPIC's flow tool) writes


@dataclass(frozen=True)
class Verb:
    key: str
    category: str
    instances: tuple[str, ...]  # narrated spellings (first = the class key)
    motion: str  # how scene.py moves object and hand
    weight: float  # relative frequency (EPIC's verbs are long-tailed)


@dataclass(frozen=True)
class Noun:
    key: str
    category: str
    instances: tuple[str, ...]
    shape: str  # ellipse | rect | circle | bar
    size: tuple[float, float]  # (width, height) as a fraction of the frame height
    colour: tuple[int, int, int]  # RGB
    texture: str  # plain | rim | stripes | dots | knob | handle | neck | grain | leaf
    partials: tuple[float, ...]  # resonant frequencies in Hz: the audio timbre
    noise_band: tuple[float, float]  # (centre Hz, width Hz) of the noisy part of its sound
    validation_only: bool = False  # rare nouns that only occur in validation (pruned later)


VERBS: tuple[Verb, ...] = (
    Verb("take", "retrieve", ("take", "pick-up", "grab", "get"), "up", 0.22),
    Verb("put", "leave", ("put", "put-down", "place", "put-on"), "down", 0.20),
    Verb("wash", "clean", ("wash", "rinse", "clean", "wipe"), "shake_x", 0.13),
    Verb("open", "access", ("open", "open-up"), "rotate_ccw", 0.10),
    Verb("close", "block", ("close", "shut", "close-off"), "rotate_cw", 0.08),
    Verb("cut", "split", ("cut", "chop", "slice", "dice"), "strokes", 0.10),
    Verb("mix", "merge", ("mix", "stir", "stir-in"), "circle", 0.09),
    Verb("pour", "merge", ("pour", "pour-into", "pour-out"), "tilt_right", 0.08),
)

_CERAMIC, _METAL = (2200.0, 3500.0, 5100.0), (820.0, 1430.0, 2650.0)
NOUNS: tuple[Noun, ...] = (
    Noun(
        "plate",
        "crockery",
        ("plate", "dish", "saucer"),
        "ellipse",
        (0.46, 0.26),
        (226, 226, 220),
        "rim",
        _CERAMIC,
        (2500.0, 1500.0),
    ),
    Noun(
        "bowl",
        "crockery",
        ("bowl", "bowl:salad"),
        "ellipse",
        (0.34, 0.30),
        (222, 208, 182),
        "rim",
        (1900.0, 3000.0, 4700.0),
        (2300.0, 1500.0),
    ),
    Noun(
        "cup",
        "crockery",
        ("cup", "mug"),
        "rect",
        (0.18, 0.22),
        (60, 92, 200),
        "handle",
        (2000.0, 3300.0, 4900.0),
        (2400.0, 1200.0),
    ),
    Noun(
        "knife",
        "cutlery",
        ("knife", "blade"),
        "bar",
        (0.52, 0.07),
        (168, 168, 176),
        "handle",
        (3600.0, 6200.0, 8100.0),
        (6000.0, 2500.0),
    ),
    Noun(
        "pan",
        "cookware",
        ("pan", "pan:frying", "saucepan"),
        "circle",
        (0.38, 0.38),
        (54, 54, 60),
        "handle",
        _METAL,
        (1200.0, 900.0),
    ),
    Noun(
        "lid",
        "containers",
        ("lid", "lid:pot"),
        "circle",
        (0.34, 0.34),
        (150, 152, 164),
        "knob",
        (900.0, 1560.0, 2890.0),
        (1300.0, 900.0),
    ),
    Noun(
        "tomato",
        "vegetables",
        ("tomato", "tomato:cherry"),
        "circle",
        (0.20, 0.20),
        (206, 44, 34),
        "leaf",
        (180.0, 410.0),
        (350.0, 300.0),
    ),
    Noun(
        "onion",
        "vegetables",
        ("onion", "onion:red"),
        "circle",
        (0.22, 0.22),
        (142, 64, 122),
        "stripes",
        (210.0, 470.0),
        (420.0, 300.0),
    ),
    Noun(
        "bottle",
        "containers",
        ("bottle", "bottle:oil", "bottle:water"),
        "rect",
        (0.14, 0.40),
        (44, 142, 64),
        "neck",
        (420.0, 840.0, 1260.0),
        (700.0, 500.0),
    ),
    Noun(
        "sponge",
        "cleaning equipment and material",
        ("sponge", "scourer"),
        "rect",
        (0.24, 0.16),
        (232, 202, 44),
        "dots",
        (),
        (4500.0, 5000.0),
    ),
    Noun(
        "cupboard",
        "storage",
        ("cupboard", "cabinet", "door:cupboard"),
        "rect",
        (0.50, 0.62),
        (150, 104, 62),
        "grain",
        (140.0, 310.0),
        (500.0, 600.0),
    ),
    Noun(
        "carrot",
        "vegetables",
        ("carrot",),
        "bar",
        (0.36, 0.09),
        (236, 122, 30),
        "leaf",
        (230.0, 520.0),
        (450.0, 300.0),
        validation_only=True,
    ),
    Noun(
        "jar",
        "containers",
        ("jar", "jar:honey"),
        "rect",
        (0.20, 0.26),
        (196, 140, 40),
        "knob",
        (1700.0, 2900.0, 4300.0),
        (2100.0, 1200.0),
        validation_only=True,
    ),
)

# Which nouns each verb plausibly acts on (kitchens: one does not cut a cupboard).
COMPATIBLE: dict[str, tuple[str, ...]] = {
    "take": (
        "plate",
        "bowl",
        "cup",
        "knife",
        "pan",
        "lid",
        "tomato",
        "onion",
        "bottle",
        "sponge",
        "carrot",
        "jar",
    ),
    "put": (
        "plate",
        "bowl",
        "cup",
        "knife",
        "pan",
        "lid",
        "tomato",
        "onion",
        "bottle",
        "sponge",
        "jar",
    ),
    "wash": ("plate", "bowl", "cup", "knife", "pan", "lid", "tomato", "sponge", "carrot"),
    "open": ("cupboard", "bottle", "jar"),
    "close": ("cupboard", "bottle", "jar"),
    "cut": ("tomato", "onion", "carrot"),
    "mix": ("bowl", "pan", "onion"),
    "pour": ("bottle", "cup", "bowl", "pan"),
}
# Secondary nouns (`all_nouns` with two entries): the place an object is put onto/poured into.
SECOND_NOUN: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "put": ("onto", "plate", ("tomato", "onion", "knife", "cup", "bowl", "sponge")),
    "pour": ("into", "bowl", ("bottle", "cup", "pan")),
}


@dataclass(frozen=True)
class VideoLayout:
    participant: str
    number: int  # YY (< 100: 60 fps) or 1YY (>= 100: 50 fps)
    split: str  # train | validation
    segments: int

    @property
    def video_id(self) -> str:
        return f"{self.participant}_{self.number:02d}"

    @property
    def fps(self) -> int:
        return FPS_EXT if self.number >= 100 else FPS_MAIN


@dataclass(frozen=True)
class Scale:
    name: str
    videos: tuple[VideoLayout, ...]
    unseen: tuple[str, ...]  # participants with validation videos only
    rare_per_noun: int  # validation segments per validation-only noun


def _layout(rows: list[tuple[str, int, str, int]]) -> tuple[VideoLayout, ...]:
    return tuple(VideoLayout(p, n, s, k) for p, n, s, k in rows)


SCALES: dict[str, Scale] = {
    "tiny": Scale(
        "tiny",
        _layout(
            [
                ("P01", 1, "train", 36),
                ("P01", 2, "validation", 18),
                ("P02", 101, "train", 36),
                ("P03", 1, "train", 36),
                ("P18", 1, "validation", 20),
            ]
        ),
        unseen=("P18",),
        rare_per_noun=2,
    ),
    "small": Scale(
        "small",
        _layout(
            [
                ("P01", 1, "train", 92),
                ("P01", 2, "train", 92),
                ("P01", 3, "validation", 40),
                ("P02", 1, "train", 92),
                ("P02", 2, "train", 92),
                ("P02", 3, "validation", 40),
                ("P03", 1, "train", 92),
                ("P03", 2, "train", 92),
                ("P03", 3, "validation", 40),
                ("P04", 1, "train", 92),
                ("P04", 2, "train", 92),
                ("P04", 3, "validation", 40),
                ("P05", 101, "train", 92),
                ("P05", 102, "train", 92),
                ("P06", 1, "train", 92),
                ("P06", 101, "train", 92),
                ("P18", 1, "validation", 36),
                ("P18", 2, "validation", 36),
                ("P32", 1, "validation", 36),
                ("P32", 101, "validation", 36),
            ]
        ),
        unseen=("P18", "P32"),
        rare_per_noun=4,
    ),
}

SEGMENT_SECONDS = (1.0, 1.6)  # action length, uniform
GAP_SECONDS = (0.2, 0.5)  # idle time between actions, uniform
LEAD_IN_SECONDS = 0.4  # idle time before the first action
