"""Rendering one demo video: a textured counter, clutter, the object, hands, camera and light.

Each frame is a stack of rigid 2-D layers (secondary object < object < hand < passing hand) over a
background, every layer a premultiplied RGBA sprite placed by one affine map that already includes
the camera shake. Keeping the maps makes the two other visual modalities exact by construction:

- flow is the analytic motion field of those maps (per pixel, the layer on top moves it by
  `M_b @ inv(M_a)`; the background moves with the camera), plus smooth noise, like a flow method
  that is right about the motion but not perfect at the edges;
- boxes are the placed sprites' content boxes, jittered like a detector's, with rare misses.

Verbs also leave context in the picture, as in real kitchens where the sink, the board or the
spoon tell much of what is done: washing happens in a sink under running water, cutting on a
board, mixing with a spoon, pouring with a visible stream. These context layers are static in
the scene (or ride on the hand), so flow sees them only through the camera and the hand, and
boxes ignore them: the picture is the richest modality, as video is in EPIC.

Nuisances: sensor noise (a bank of noise frames), motion blur (blending with the previous frame
in proportion to the object's speed), occlusion (the grasping hand and a hand passing over the
object), camera shake with occasional head turns, slow lighting drift and a per-participant
look (background, white balance, object tint, skin).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from mmkd.demo.plan import Segment, Style, VideoPlan, stream
from mmkd.demo.spec import HEIGHT, NOUNS, VERBS, WIDTH, Noun

_YY, _XX = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
FLOW_NOISE_PX = 0.25  # std of the smooth error added to the exact flow (TV-L1 is not exact)


def _smooth_noise(rng: np.random.Generator, std: float) -> np.ndarray:
    """(H, W, 2) spatially correlated noise with the given std: flow errors come in blobs."""
    n = cv2.GaussianBlur(rng.normal(0, 1, (HEIGHT, WIDTH, 2)).astype(np.float32), (0, 0), 2.0)
    return n * np.float32(std / n.std())


@dataclass
class Sprite:
    rgba: np.ndarray  # (h, w, 4) float32, colour premultiplied by alpha
    corners: np.ndarray  # (4, 2) the content's box in sprite pixels (for detections)
    centre: tuple[float, float]


@dataclass
class Layer:
    key: str  # "object" | "second" | "hand" | "passer": identity across frames, for flow
    category: str  # box category: a noun key or "hand"
    sprite: Sprite
    M: np.ndarray  # (2, 3) sprite pixels -> frame pixels, camera included
    rect: tuple[int, int, int, int] | None = None  # (x0, y0, x1, y1) frame window it covers
    alpha: np.ndarray | None = None  # (y1-y0, x1-x0) its placed alpha there, 0..255 (rendering)

    def window(self) -> tuple[int, int, int, int] | None:
        """The frame pixels the placed sprite can touch (None when out of view)."""
        h, w = self.sprite.rgba.shape[:2]
        (a, b, c), (d, e, f) = self.M.tolist()
        xs = (c, a * w + c, a * w + b * h + c, b * h + c)
        ys = (f, d * w + f, d * w + e * h + f, e * h + f)
        x0, y0 = max(0, math.floor(min(xs))), max(0, math.floor(min(ys)))
        x1, y1 = min(WIDTH, math.ceil(max(xs)) + 1), min(HEIGHT, math.ceil(max(ys)) + 1)
        return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


@dataclass
class FrameState:
    index: int  # 1-based RGB frame number
    rgb: np.ndarray  # (H, W, 3) uint8
    cam: np.ndarray  # (2,) camera offset in px
    layers: list[Layer]
    nouns: list[str]  # the segment's placeholders (empty between actions)


# ----------------------------------------------------------------------------- sprites
def _finish(canvas2x: np.ndarray) -> Sprite:
    """Downsample a 2x RGBA uint8 drawing (antialiasing) into a premultiplied float sprite."""
    h, w = canvas2x.shape[0] // 2, canvas2x.shape[1] // 2
    small = cv2.resize(canvas2x, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    small[..., :3] *= small[..., 3:4]
    ys, xs = np.nonzero(small[..., 3] > 0.3)
    x1, x2, y1, y2 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    corners = np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], dtype=np.float64)
    return Sprite(small * 255, corners, ((w - 1) / 2, (h - 1) / 2))


def _c(colour: np.ndarray, factor: float = 1.0) -> tuple[int, int, int, int]:
    r, g, b = np.clip(colour * factor, 0, 255).astype(int).tolist()
    return (r, g, b, 255)


def noun_sprite(noun: Noun, colour: np.ndarray, size_px: tuple[float, float]) -> Sprite:
    """The object: its shape, colour and texture, drawn at 2x then antialiased down."""
    w, h = (2 * s for s in size_px)
    cw, ch = int(w * 1.7) // 2 * 2 + 4, int(h * 1.7) // 2 * 2 + 4
    cv = np.zeros((ch, cw, 4), np.uint8)
    cx, cy = cw // 2, ch // 2
    x1, y1, x2, y2 = int(cx - w / 2), int(cy - h / 2), int(cx + w / 2), int(cy + h / 2)
    body, dark = _c(colour), _c(colour, 0.6)
    if noun.shape in ("ellipse", "circle"):
        cv2.ellipse(cv, (cx, cy), (int(w / 2), int(h / 2)), 0, 0, 360, body, -1, cv2.LINE_AA)
    elif noun.texture == "neck":  # a bottle: body, narrower neck, cap
        cv2.rectangle(cv, (x1, int(y1 + 0.3 * h)), (x2, y2), body, -1)
        cv2.rectangle(
            cv, (int(cx - 0.2 * w), y1 + 4), (int(cx + 0.2 * w), int(y1 + 0.3 * h)), body, -1
        )
        cv2.rectangle(
            cv, (int(cx - 0.22 * w), y1), (int(cx + 0.22 * w), y1 + 6), (30, 30, 30, 255), -1
        )
    else:
        r = max(2, int(min(w, h) * (0.5 if noun.shape == "bar" else 0.15)))
        cv2.rectangle(cv, (x1 + r, y1), (x2 - r, y2), body, -1)
        cv2.rectangle(cv, (x1, y1 + r), (x2, y2 - r), body, -1)
        for px, py in ((x1 + r, y1 + r), (x2 - r, y1 + r), (x1 + r, y2 - r), (x2 - r, y2 - r)):
            cv2.circle(cv, (px, py), r, body, -1, cv2.LINE_AA)
    _texture(cv, noun, colour, (x1, y1, x2, y2), dark)
    return _finish(cv)


def _texture(
    cv: np.ndarray,
    noun: Noun,
    colour: np.ndarray,
    box: tuple[int, int, int, int],
    dark: tuple[int, int, int, int],
) -> None:
    x1, y1, x2, y2 = box
    w, h, cx, cy = x2 - x1, y2 - y1, (x1 + x2) // 2, (y1 + y2) // 2
    t = noun.texture
    if t == "rim":
        factor = 0.88 if w > 1.4 * h else 0.7  # a plate's flat rim vs a bowl's deep inside
        cv2.ellipse(
            cv,
            (cx, cy),
            (int(w * 0.33), int(h * 0.33)),
            0,
            0,
            360,
            _c(colour, factor),
            -1,
            cv2.LINE_AA,
        )
    elif t == "handle" and noun.shape == "rect":  # cup: a ring handle on the right
        cv2.ellipse(
            cv,
            (x2, cy),
            (int(w * 0.3), int(h * 0.25)),
            0,
            -90,
            90,
            _c(colour),
            max(3, w // 8),
            cv2.LINE_AA,
        )
    elif t == "handle" and noun.shape == "bar":  # knife: a dark handle on one half
        cv2.rectangle(cv, (x1, y1), (x1 + int(w * 0.4), y2), (35, 30, 28, 255), -1)
    elif t == "handle":  # pan: a long stick handle to the right
        cv2.rectangle(
            cv,
            (x2 - 4, cy - h // 12),
            (min(cv.shape[1] - 1, x2 + w // 3), cy + h // 12),
            (25, 25, 25, 255),
            -1,
        )
    elif t == "knob" and noun.shape == "circle":
        cv2.circle(cv, (cx, cy), max(3, w // 8), dark, -1, cv2.LINE_AA)
    elif t == "knob":  # jar: a lid band on top
        cv2.rectangle(cv, (x1, y1), (x2, y1 + h // 5), dark, -1)
    elif t == "leaf":
        lx, ly = (cx, y1 + 3) if noun.shape == "circle" else (x2 - 3, cy)
        cv2.ellipse(
            cv,
            (lx, ly),
            (max(3, w // 6), max(2, h // 8)),
            0,
            0,
            360,
            (40, 150, 40, 255),
            -1,
            cv2.LINE_AA,
        )
    elif t == "stripes":
        for k in (-2, -1, 1, 2):
            cv2.ellipse(
                cv,
                (cx, cy),
                (int(abs(k) * w / 7), h // 2 - 2),
                0,
                0,
                360,
                _c(colour, 1.35),
                2,
                cv2.LINE_AA,
            )
    elif t == "dots":
        cv2.rectangle(cv, (x1, y1), (x2, y1 + h // 3), (40, 110, 50, 255), -1)
        for yy in range(y1 + h // 3 + 4, y2 - 2, 7):
            for xx in range(x1 + 4, x2 - 2, 7):
                cv2.circle(cv, (xx, yy), 2, dark, -1)
    elif t == "grain":
        for yy in range(y1 + 6, y2, 9):
            cv2.line(cv, (x1 + 2, yy), (x2 - 2, yy), _c(colour, 0.8), 1)
        cv2.circle(cv, (x2 - w // 8, cy), max(3, w // 16), (200, 200, 205, 255), -1, cv2.LINE_AA)


def hand_sprite(skin: np.ndarray, tool: str = "") -> Sprite:
    """A palm with a wrist, holding a tool: a knife blade below it, or a spoon reaching left."""
    cv = np.zeros((96, 80, 4), np.uint8)
    if tool == "spoon":
        cv2.line(cv, (2, 50), (40, 38), (200, 200, 208, 255), 5, cv2.LINE_AA)
        cv2.ellipse(cv, (9, 52), (10, 7), 10, 0, 360, (215, 215, 222, 255), -1, cv2.LINE_AA)
    cv2.ellipse(cv, (40, 40), (17, 22), 0, 0, 360, _c(skin), -1, cv2.LINE_AA)
    cv2.rectangle(cv, (29, 50), (51, 95), _c(skin, 0.9), -1)
    if tool == "knife":
        cv2.rectangle(cv, (8, 14), (34, 22), (205, 205, 212, 255), -1)
    return _finish(cv)


HAND_TOOL = {"strokes": "knife", "circle": "spoon"}  # cut holds a knife, mix a spoon


def context_sprite(motion: str, rng: np.random.Generator) -> Sprite | None:
    """The static scene a verb happens in (drawn under the object), or None.

    wash: a steel sink with a stream of water from the tap; cut: a wooden chopping board;
    pour: the poured liquid falling to the right of the object."""
    if motion == "shake_x":
        cv = np.zeros((2 * 70, 2 * 84, 4), np.uint8)
        steel = tuple(int(c) for c in rng.uniform(150, 185) * np.array([1.0, 1.02, 1.06])) + (255,)
        cv2.rectangle(cv, (4, 30), (163, 136), steel, -1)
        cv2.rectangle(cv, (18, 44), (149, 122), _c(np.asarray(steel[:3]), 0.72), -1)
        cv2.rectangle(cv, (76, 0), (92, 30), (120, 120, 128, 255), -1)  # the tap
        cv2.rectangle(cv, (78, 30), (90, 100), (150, 200, 240, 200), -1)  # running water
        return _finish(cv)
    if motion == "strokes":
        cv = np.zeros((2 * 44, 2 * 80, 4), np.uint8)
        wood = np.array([196.0, 150.0, 98.0]) * rng.uniform(0.9, 1.1)
        cv2.rectangle(cv, (4, 4), (155, 83), _c(wood), -1)
        for y in range(16, 80, 14):
            cv2.line(cv, (8, y), (150, y), _c(wood, 0.85), 2)
        return _finish(cv)
    if motion == "tilt_right":
        cv = np.zeros((2 * 50, 2 * 16, 4), np.uint8)
        colour = (90, 150, 230, 210) if rng.random() < 0.5 else (230, 170, 60, 210)
        cv2.rectangle(cv, (10, 0), (22, 99), colour, -1)
        return _finish(cv)
    return None


def place(
    sprite: Sprite, x: float, y: float, scale: float, angle_deg: float, cam: np.ndarray
) -> np.ndarray:
    """Affine map putting the sprite's centre at (x, y) + camera, rotated (ccw) and scaled."""
    M = cv2.getRotationMatrix2D(sprite.centre, angle_deg, scale)
    M[:, 2] += np.array([x, y]) + cam - np.array(sprite.centre)
    return M


# ----------------------------------------------------------------------------- motion
def _ease(p: float) -> float:
    return 0.5 - 0.5 * np.cos(np.pi * p)


def object_pose(
    motion: str, p: float, tau: float, q: dict[str, float]
) -> tuple[float, float, float, float]:
    """(dx, dy, scale, angle) of the object for a verb's motion at progress p / time tau (s)."""
    e, A, f = _ease(p), q["amp"], q["freq"]
    if motion == "up":  # take: lifted up and towards the camera
        return q["drift"] * e, A * (0.5 - e), 1 + 0.35 * e, 0.0
    if motion == "down":  # put: lowered, away from the camera
        return q["drift"] * e, A * (e - 0.5), 1.35 - 0.35 * e, 0.0
    if motion == "shake_x":  # wash: scrubbed back and forth
        s = np.sin(2 * np.pi * f * tau)
        return A * s, 0.25 * A * np.sin(4 * np.pi * f * tau), 1.0, 6 * s
    if motion == "rotate_ccw":  # open: swings open, opening up
        return 0.0, 0.0, 1 + 0.15 * e, q["turn"] * e
    if motion == "rotate_cw":  # close: swings shut
        return 0.0, 0.0, 1.15 - 0.15 * e, -q["turn"] * e
    if motion == "strokes":  # cut: the object stays; the knife hand moves
        return 0.0, 0.0, 1.0, 0.0
    if motion == "circle":  # mix: circular stirring
        ph = 2 * np.pi * f * tau * q["sign"]
        return A * np.cos(ph) - A, 0.7 * A * np.sin(ph), 1.0, 0.0
    if motion == "tilt_right":  # pour: moved right and tilted clockwise
        return A * e, -0.1 * HEIGHT * e, 1.0, -q["turn"] * e
    raise AssertionError(motion)


def hand_offset(motion: str, tau: float, q: dict[str, float]) -> float:
    """Extra vertical hand travel: the knife strokes of `cut` (0 for other verbs)."""
    if motion != "strokes":
        return 0.0
    return -q["amp"] * abs(np.sin(np.pi * q["freq"] * tau))


@dataclass
class Actors:
    """Everything random about one segment, drawn once so that every frame agrees."""

    seg: Segment
    start_frame: int
    stop_frame: int
    obj: Sprite
    hand: Sprite
    base: tuple[float, float]
    q: dict[str, float]
    second: tuple[Sprite, float, float] | None
    passer: tuple[float, float, float, float] | None  # (t0 s, duration s, y, direction)
    context: Sprite | None  # the verb's static scene (sink, board, poured stream)


# ----------------------------------------------------------------------------- the video
class VideoScene:
    """Frames, flow and boxes of one planned video; deterministic in (seed, video_id)."""

    def __init__(self, video: VideoPlan, style: Style, seed: int):
        self.video, self.style = video, style
        rng = stream(seed, "render", video.video_id)
        self.background = self._background(rng)
        self.noise_bank = rng.normal(0, style.noise_sigma, (12, HEIGHT, WIDTH, 3)).astype(
            np.float32
        )
        self.flow_noise = np.stack([_smooth_noise(rng, FLOW_NOISE_PX) for _ in range(8)])
        n = video.n_frames
        t = np.arange(n + 1) / video.fps
        self.cam_xy = self._camera(rng, t)
        period, phase = rng.uniform(8, 20), rng.uniform(0, 2 * np.pi)
        self.light = (
            style.light
            * rng.uniform(0.92, 1.08)
            * (1 + 0.08 * np.sin(2 * np.pi * t / period + phase))
        )
        self.gain = np.asarray(style.white_balance, np.float32)
        self.skin = np.asarray(style.skin)
        self.actors = [self._actors(rng, s) for s in video.segments]
        self.idle = [bool(rng.random() < 0.5) for _ in range(len(video.segments) + 1)]
        self.idle_hand = hand_sprite(self.skin)

    # -- set-up
    def _background(self, rng: np.random.Generator) -> np.ndarray:
        s = self.style
        a, b = np.asarray(s.background, np.float32), np.asarray(s.background2, np.float32)
        u = _XX * np.cos(s.texture_angle) + _YY * np.sin(s.texture_angle)
        v = -_XX * np.sin(s.texture_angle) + _YY * np.cos(s.texture_angle)
        if s.texture == "stripes":
            m = 0.5 + 0.5 * np.sin(2 * np.pi * u / s.texture_period)
        elif s.texture == "tiles":
            m = ((np.mod(u, s.texture_period) < 1.5) | (np.mod(v, s.texture_period) < 1.5)) * 1.0
        elif s.texture == "waves":
            m = 0.5 + 0.5 * np.sin(
                2 * np.pi * u / s.texture_period + 3 * np.sin(v / s.texture_period)
            )
        else:  # speckle
            m = cv2.resize(
                rng.random((HEIGHT // 6, WIDTH // 6)).astype(np.float32), (WIDTH, HEIGHT)
            )
        bg = a + (b - a) * m[..., None].astype(np.float32)
        canvas = np.clip(bg, 0, 255).astype(np.uint8)
        big = cv2.resize(canvas, (2 * WIDTH, 2 * HEIGHT), interpolation=cv2.INTER_NEAREST)
        for _ in range(int(rng.integers(4, 8))):  # clutter: jars, tins, crumbs, a towel...
            col = tuple(int(c) for c in np.clip(rng.uniform(30, 230, 3) * 0.8 + a * 0.2, 0, 255))
            x, y = int(rng.integers(0, 2 * WIDTH)), int(rng.integers(0, 2 * HEIGHT))
            sx, sy = int(rng.integers(8, 40)), int(rng.integers(8, 40))
            if rng.random() < 0.5:
                cv2.rectangle(big, (x, y), (x + sx, y + sy), col, -1)
            else:
                cv2.ellipse(big, (x, y), (sx // 2, sy // 2), 0, 0, 360, col, -1, cv2.LINE_AA)
        return cv2.resize(big, (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA).astype(np.float32)

    def _camera(self, rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
        """Head motion: a few slow sinusoids plus short head turns (global flow)."""
        xy = np.zeros((len(t), 2))
        for _ in range(3):
            f, ph = rng.uniform(0.3, 2.5, 2), rng.uniform(0, 2 * np.pi, 2)
            xy += self.style.shake_px / 2 * np.sin(2 * np.pi * f * t[:, None] + ph)
        for _ in range(int(t[-1] / 6) + 1):  # about one head turn every 6 s
            t0, dur = rng.uniform(0, t[-1]), rng.uniform(0.4, 0.8)
            d = rng.uniform(4, 9, 2) * rng.choice([-1, 1], 2)
            inside = (t >= t0) & (t <= t0 + dur)
            xy[inside] += d * np.sin(np.pi * (t[inside] - t0) / dur)[:, None]
        return xy

    def _actors(self, rng: np.random.Generator, seg: Segment) -> Actors:
        noun, verb = NOUNS[seg.noun], VERBS[seg.verb]
        colour = np.asarray(noun.colour) * np.asarray(self.style.tint) * rng.uniform(0.9, 1.1, 3)
        size = rng.uniform(0.88, 1.12) * HEIGHT
        obj = noun_sprite(noun, colour, (noun.size[0] * size, noun.size[1] * size))
        hand = hand_sprite(self.skin * rng.uniform(0.95, 1.05), HAND_TOOL.get(verb.motion, ""))
        q = {
            "amp": {
                "up": 0.27 * HEIGHT,
                "down": 0.27 * HEIGHT,
                "shake_x": 0.08 * WIDTH,
                "circle": 0.06 * WIDTH,
                "tilt_right": 0.18 * WIDTH,
                "strokes": 0.12 * HEIGHT,
            }.get(verb.motion, 0.0)
            * rng.uniform(0.8, 1.2),
            "freq": seg.rate_hz,
            "turn": rng.uniform(60, 100),
            "drift": rng.uniform(-0.1, 0.1) * WIDTH,
            "sign": float(rng.choice([-1, 1])),
        }
        base = (rng.uniform(0.32, 0.62) * WIDTH, rng.uniform(0.4, 0.62) * HEIGHT)
        second = None
        if seg.second_noun is not None:
            n2 = NOUNS[seg.second_noun]
            c2 = np.asarray(n2.colour) * np.asarray(self.style.tint) * rng.uniform(0.9, 1.1, 3)
            s2 = noun_sprite(n2, c2, (n2.size[0] * size, n2.size[1] * size))
            dx = 0.3 * WIDTH if verb.motion == "tilt_right" else rng.uniform(-0.1, 0.1) * WIDTH
            second = (s2, base[0] + dx, min(0.8 * HEIGHT, base[1] + 0.2 * HEIGHT))
        passer = None
        duration = (seg.stop_cs - seg.start_cs) / 100
        if rng.random() < 0.25:
            passer = (
                rng.uniform(0, duration * 0.5),
                rng.uniform(0.5, 0.9),
                base[1] + rng.uniform(-10, 10),
                float(rng.choice([-1, 1])),
            )
        start, stop = seg.frames(self.video.fps)
        context = context_sprite(verb.motion, rng)
        return Actors(seg, start, stop, obj, hand, base, q, second, passer, context)

    # -- per frame
    def layers_at(self, k: int, actors: Actors | None, gap: int) -> list[Layer]:
        cam = self.cam_xy[k]
        if actors is None:
            if not self.idle[gap]:
                return []
            x = 0.8 * WIDTH + 4 * np.sin(k / self.video.fps * 0.7 + gap)
            return [
                Layer(
                    "hand",
                    "hand",
                    self.idle_hand,
                    place(self.idle_hand, x, 0.85 * HEIGHT, 1.0, 10.0, cam),
                )
            ]
        a = actors
        motion = VERBS[a.seg.verb].motion
        tau = (k - a.start_frame) / self.video.fps
        p = (k - a.start_frame) / max(1, a.stop_frame - a.start_frame)
        dx, dy, scale, angle = object_pose(motion, p, tau, a.q)
        ox, oy = a.base[0] + dx, a.base[1] + dy
        out = []
        if a.context is not None and motion != "tilt_right":  # sink, board: under everything
            cy = a.base[1] + (0.12 * HEIGHT if motion == "strokes" else 0.0)
            out.append(Layer("context", "context", a.context,
                             place(a.context, a.base[0], cy, 1.0, 0.0, cam)))
        if a.second is not None:
            s2, x2, y2 = a.second
            out.append(
                Layer("second", NOUNS[a.seg.second_noun].key, s2, place(s2, x2, y2, 1.0, 0.0, cam))
            )
        M = place(a.obj, ox, oy, scale, angle, cam)
        if a.context is not None and motion == "tilt_right" and p > 0.35:  # the poured stream
            lip = M @ np.array([*a.obj.corners[1], 1.0]) - cam
            out.append(Layer("context", "context", a.context,
                             place(a.context, lip[0] + 4, lip[1] + 26, 1.0, 0.0, cam)))
        out.append(Layer("object", NOUNS[a.seg.noun].key, a.obj, M))
        if motion == "strokes":  # the knife hand hovers over the object and chops
            top = a.obj.corners[0, 1] - a.obj.centre[1]
            hx, hy = ox + 6, oy + top * 0.6 - 14 + hand_offset(motion, tau, a.q)
            out.append(Layer("hand", "hand", a.hand, place(a.hand, hx, hy, 1.0, 0.0, cam)))
        else:  # the grasping hand holds the object's lower right corner
            grasp = M @ np.array([*a.obj.corners[2], 1.0]) - cam
            out.append(
                Layer(
                    "hand",
                    "hand",
                    a.hand,
                    place(a.hand, grasp[0] + 2, grasp[1] + 10, 1.0, angle * 0.5, cam),
                )
            )
        if a.passer is not None:
            t0, dur, y, direction = a.passer
            if t0 <= tau <= t0 + dur:
                x = (tau - t0) / dur * (WIDTH + 60) - 30
                x = x if direction > 0 else WIDTH - x
                out.append(
                    Layer(
                        "passer",
                        "hand",
                        self.idle_hand,
                        place(self.idle_hand, x, y, 1.0, 90 * direction, cam),
                    )
                )
        return out

    def frames(self) -> Iterator[FrameState]:
        """RGB frames 1..n with their layers (for flow and boxes)."""
        seg_i, prev = 0, None
        bg_M = np.float32([[1, 0, 0], [0, 1, 0]])
        for k in range(1, self.video.n_frames + 1):
            while seg_i < len(self.actors) and k > self.actors[seg_i].stop_frame:
                seg_i += 1
            actors = (
                self.actors[seg_i]
                if seg_i < len(self.actors) and k >= self.actors[seg_i].start_frame
                else None
            )
            layers = self.layers_at(k, actors, seg_i)
            cam = self.cam_xy[k]
            bg_M[:, 2] = cam
            canvas = cv2.warpAffine(
                self.background, bg_M, (WIDTH, HEIGHT), borderMode=cv2.BORDER_REFLECT101
            )
            for layer in layers:
                _composite(canvas, layer)
            if actors is not None and prev is not None:
                speed = _object_speed(layers, prev[1])
                if speed > 1.0:  # motion blur: fast frames smear into the previous one
                    cv2.addWeighted(
                        canvas,
                        1 - min(0.5, speed / 8),
                        prev[0],
                        min(0.5, speed / 8),
                        0.0,
                        dst=canvas,
                    )
            img = cv2.multiply(canvas, self.gain * np.float32(self.light[k]))
            rgb = cv2.add(img, self.noise_bank[k % 12], dtype=cv2.CV_8U)
            prev = (canvas, layers)
            nouns = [NOUNS[n].key for n in actors.seg.all_nouns] if actors is not None else []
            yield FrameState(k, rgb, cam, layers, nouns)


def _composite(canvas: np.ndarray, layer: Layer) -> None:
    """Alpha-blend a layer into the frame in place, touching only its window."""
    layer.rect = layer.window()
    if layer.rect is None:
        return
    x0, y0, x1, y1 = layer.rect
    M = layer.M.copy()
    M[:, 2] -= (x0, y0)
    warped = cv2.warpAffine(layer.sprite.rgba, M, (x1 - x0, y1 - y0))
    layer.alpha = warped[..., 3]
    win = canvas[y0:y1, x0:x1]  # a view: cv2 writes through it (3x faster than numpy here)
    cv2.multiply(win, cv2.merge([255 - layer.alpha] * 3), dst=win, scale=1 / 255)
    cv2.add(win, warped[..., :3], dst=win)


def _object_speed(layers: list[Layer], before: list[Layer]) -> float:
    """Largest shift of a layer that is on screen in both frames (the same sprite)."""
    old = {id(la.sprite): la.M[:, 2] for la in before}
    return max(
        (
            float(np.hypot(*(la.M[:, 2] - old[id(la.sprite)])))
            for la in layers
            if id(la.sprite) in old
        ),
        default=0.0,
    )


def flow_between(a: FrameState, b: FrameState, noise: np.ndarray) -> np.ndarray:
    """The (H, W, 2) flow in px from frame a to frame b: camera motion everywhere, and where a
    layer covers a pixel in frame a, that layer's rigid motion (the top layer wins)."""
    d = b.cam - a.cam
    flow = np.empty((HEIGHT, WIDTH, 2), np.float32)
    flow[..., 0], flow[..., 1] = d[0], d[1]
    later = {la.key: la for la in b.layers}
    for la in a.layers:
        lb = later.get(la.key)
        if la.rect is None or lb is None or lb.sprite is not la.sprite:
            continue
        x0, y0, x1, y1 = la.rect
        xx, yy = _XX[y0:y1, x0:x1], _YY[y0:y1, x0:x1]
        A = lb.M @ np.vstack([cv2.invertAffineTransform(la.M), [0, 0, 1]])
        mask = la.alpha > 127.5
        win = flow[y0:y1, x0:x1]
        win[..., 0][mask] = ((A[0, 0] - 1) * xx + A[0, 1] * yy + A[0, 2])[mask]
        win[..., 1][mask] = (A[1, 0] * xx + (A[1, 1] - 1) * yy + A[1, 2])[mask]
    return flow + noise


def boxes(state: FrameState, rng: np.random.Generator) -> list[dict]:
    """Something-Else labels for one frame: objects ("0000", "0001") and hands, in pixels."""
    out = []
    for la in state.layers:
        if la.category == "context":
            continue  # scenery, not an object a detector labels
        pts = la.M @ np.hstack([la.sprite.corners, np.ones((4, 1))]).T
        x1, y1 = np.clip(pts.min(axis=1) + rng.normal(0, 1.0, 2), 0, [WIDTH, HEIGHT])
        x2, y2 = np.clip(pts.max(axis=1) + rng.normal(0, 1.0, 2), 0, [WIDTH, HEIGHT])
        if (x2 - x1) < 3 or (y2 - y1) < 3 or (la.category != "hand" and rng.random() < 0.04):
            continue  # out of view, or a detector miss
        box = {
            "x1": round(float(x1), 2),
            "y1": round(float(y1), 2),
            "x2": round(float(x2), 2),
            "y2": round(float(y2), 2),
        }
        if la.category == "hand":
            out.append(
                {
                    "box2d": box,
                    "gt_annotation": "object hand",
                    "category": "hand",
                    "standard_category": "hand",
                }
            )
        else:
            idx = 1 if la.key == "second" else 0
            out.append(
                {
                    "box2d": box,
                    "gt_annotation": f"object {idx}",
                    "category": la.category,
                    "standard_category": f"{idx:04d}",
                }
            )
    return out
