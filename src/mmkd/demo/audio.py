"""The demo soundtrack of one video: a kitchen's room tone plus the sound of each action.

Evidence in the audio is partial by design: the noun sets the timbre (resonant partials and a
noise band; materials overlap: ceramic, metal, soft vegetables), the verb sets the temporal
envelope (an impact early for take, late for put; rhythmic chops for cut at the same rate the
knife moves in the video; water for wash; a rising or falling creak for open/close; a scraping
cycle for mix; a gurgle for pour). Random loudness (distance), a per-participant pitch and room
noise, mains hum and unrelated clatter make it weaker evidence than the picture, and many
actions are barely audible at all (`QUIET_SHARE`), as in EPIC, where audio alone is the weakest
modality.
"""

from __future__ import annotations

import numpy as np

from mmkd.demo.plan import Segment, Style, VideoPlan, stream
from mmkd.demo.spec import NOUNS, SAMPLE_RATE, VERBS, Noun

SR = SAMPLE_RATE
QUIET_SHARE = 0.4  # actions whose sound is below the room noise
LOUDNESS = {"quiet": (0.005, 0.03), "audible": (0.05, 0.3)}  # gain of the action's sound


def fast_len(n: int) -> int:
    """The smallest 2^a * 3^b * 5^c >= n: FFTs of lengths with large prime factors are slow."""
    best = 1 << max(0, (n - 1).bit_length())  # a power of two always works
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def shaped_noise(rng: np.random.Generator, n: int, gain) -> np.ndarray:
    """White noise of length n whose spectrum is multiplied by `gain(freqs_hz)` (unit RMS)."""
    m = fast_len(n)
    spec = np.fft.rfft(rng.standard_normal(m))
    spec *= gain(np.fft.rfftfreq(m, 1 / SR))
    x = np.fft.irfft(spec, m)[:n]
    return x / (np.sqrt(np.mean(x**2)) + 1e-9)


def band_noise(rng: np.random.Generator, n: int, centre: float, width: float) -> np.ndarray:
    """White noise filtered to a Gaussian band (unit RMS)."""
    return shaped_noise(rng, n, lambda f: np.exp(-0.5 * ((f - centre) / max(width / 2, 1.0)) ** 2))


def _partials(noun: Noun, pitch: float, rng: np.random.Generator) -> np.ndarray:
    return np.asarray(noun.partials) * pitch * (1 + rng.normal(0, 0.02))


def knock(
    rng: np.random.Generator,
    noun: Noun,
    freqs: np.ndarray,
    x: np.ndarray,
    at: int,
    strength: float,
    decay_s: float,
) -> np.ndarray:
    """Add a knock on the object at sample `at` of `x` (in place): its damped partials plus a
    short burst of its noise band. Returns `x`."""
    m = min(len(x) - at, int(decay_s * 6 * SR))
    if m <= 0:
        return x
    t = np.arange(m) / SR
    ring = tone(rng, freqs, m)
    burst = band_noise(rng, m, *noun.noise_band) * 0.5
    x[at : at + m] += strength * (ring + burst * np.exp(-t / (decay_s / 3))) * np.exp(-t / decay_s)
    return x


def tone(rng: np.random.Generator, freqs: np.ndarray, n: int) -> np.ndarray:
    t = np.arange(n) / SR
    return (
        sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6.3)) / (k + 1) for k, f in enumerate(freqs))
        if len(freqs)
        else np.zeros(n)
    )


def chirp(rng: np.random.Generator, f0: float, f1: float, n: int) -> np.ndarray:
    """A creaking hinge: a gliding tone with harmonics and a rough amplitude."""
    f = np.linspace(f0, f1, n)
    phase = 2 * np.pi * np.cumsum(f) / SR
    rough = 0.6 + 0.4 * np.abs(band_noise(rng, n, 30.0, 40.0)).clip(0, 2.5) / 2.5
    return (np.sin(phase) + 0.5 * np.sin(2 * phase) + 0.25 * np.sin(3 * phase)) * rough


def segment_sound(rng: np.random.Generator, seg: Segment, style: Style, n: int) -> np.ndarray:
    noun, motion = NOUNS[seg.noun], VERBS[seg.verb].motion
    freqs = _partials(noun, style.pitch, rng)
    tau = np.arange(n) / SR
    p = tau / (n / SR)
    slide = band_noise(rng, n, *noun.noise_band)
    if motion == "up":  # take: the lift-off knock, then a short slide
        x = knock(
            rng,
            noun,
            freqs,
            0.15 * slide * np.sin(np.pi * p),
            int(rng.uniform(0.05, 0.35) * n),
            0.7,
            0.12,
        )
    elif motion == "down":  # put: the set-down knock at the end
        x = knock(
            rng,
            noun,
            freqs,
            0.15 * slide * np.sin(np.pi * p),
            int(rng.uniform(0.65, 0.95) * n),
            1.0,
            0.15,
        )
    elif motion == "shake_x":  # wash: running water and rubbing at the scrubbing rate
        rub = 0.5 + 0.5 * np.sin(2 * np.pi * seg.rate_hz * tau)
        x = (
            0.35 * band_noise(rng, n, 3200.0, 3500.0)
            + 0.3 * rub * (tone(rng, freqs, n) + slide) / 2
        )
    elif motion == "rotate_ccw":  # open: a click, then a rising creak
        x = knock(rng, noun, freqs, 0.25 * chirp(rng, 300, 800, n), int(0.05 * n), 0.4, 0.05)
    elif motion == "rotate_cw":  # close: a falling creak and a thud at the end
        x = knock(rng, noun, freqs, 0.25 * chirp(rng, 800, 300, n), int(0.9 * n), 0.9, 0.1)
    elif motion == "strokes":  # cut: one chop each time the knife comes down
        x = np.zeros(n)
        for m in range(1, int(seg.rate_hz * n / SR) + 1):
            at = int(m / seg.rate_hz * SR)
            knock(rng, noun, freqs, x, at, 0.6, 0.04)
            knock(rng, NOUNS[0], np.array([150.0]), x, at, 0.3, 0.03)  # the board's knock
    elif motion == "circle":  # mix: scraping that swells once per turn
        cycle = 0.3 + 0.7 * (0.5 + 0.5 * np.cos(2 * np.pi * seg.rate_hz * tau))
        x = 0.5 * slide * cycle + 0.1 * tone(rng, freqs, n)
    elif motion == "tilt_right":  # pour: a gurgle rising in pitch as the vessel fills
        chunks = np.array_split(np.arange(n), 6)
        x = np.concatenate(
            [band_noise(rng, len(c), 400 + 220 * i, 300.0) for i, c in enumerate(chunks)]
        )
        x *= 0.35 * (0.6 + 0.4 * np.sin(2 * np.pi * 8 * tau + rng.uniform(0, 6.3)))
        x += 0.1 * tone(rng, freqs, n)
    else:
        raise AssertionError(motion)
    fade = np.minimum(1, np.minimum(tau, tau[::-1]) / 0.01)
    return x * fade


def synth_audio(video: VideoPlan, style: Style, seed: int) -> np.ndarray:
    """The whole video's mono track at 24 kHz, float in [-1, 1]."""
    rng = stream(seed, "audio", video.video_id)
    n = round(video.n_frames / video.fps * SR)
    t = np.arange(n) / SR
    room = shaped_noise(rng, n, lambda f: np.sqrt(20.0 / np.maximum(f, 20.0)))  # pink-ish
    x = style.room_noise * room
    h = style.hum_hz
    x += 0.3 * style.room_noise * (np.sin(2 * np.pi * h * t) + 0.5 * np.sin(4 * np.pi * h * t))
    for at in np.sort(rng.uniform(0, n / SR, rng.poisson(1.0 * n / SR))):  # unrelated clatter
        f = rng.uniform(300, 4000, 2)
        knock(
            rng,
            NOUNS[int(rng.integers(len(NOUNS)))],
            f,
            x,
            int(at * SR),
            rng.uniform(0.02, 0.15),
            0.05,
        )
    for seg in video.segments:
        i0, i1 = seg.start_cs * SR // 100, min(n, seg.stop_cs * SR // 100)
        gain = rng.uniform(*LOUDNESS["quiet" if rng.random() < QUIET_SHARE else "audible"])
        x[i0:i1] += gain * segment_sound(rng, seg, style, i1 - i0)
    return np.clip(x, -1, 1).astype(np.float32)
