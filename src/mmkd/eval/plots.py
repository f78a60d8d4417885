"""PNG plots of the paper's figures: accuracy vs missing rate (Fig. 4), memory and GFLOPs (Fig. 5).

matplotlib runs headless (Agg backend, chosen before pyplot is imported) so plots work on
servers and in tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

# Colour-blind-safe (Okabe–Ito) palette, one colour per method in a stable order.
_COLOURS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]
_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]


@dataclass
class Curve:
    """One method's accuracy at each missing rate: mean and std over seeds."""

    label: str
    rates: list[float]
    mean: list[float]
    std: list[float]


def plot_missing_rate(curves: list[Curve], metric: str, out_path: str | Path,
                      chance: float | None = None, title: str | None = None,
                      chance_label: str = "majority class (train)") -> Path:
    """Fig. 4: one line per method with a ±std band; x = probability of dropping each modality.

    `chance` draws a dashed reference line (the mode's accuracy), so "above chance" is visible.
    """
    top = 0.0
    fig, ax = plt.subplots(figsize=(7.0, 4.5), dpi=120)
    for i, c in enumerate(curves):
        x = 100 * np.asarray(c.rates)
        m, s = np.asarray(c.mean), np.asarray(c.std)
        colour = _COLOURS[i % len(_COLOURS)]
        ax.plot(x, m, marker=_MARKERS[i % len(_MARKERS)], color=colour, label=c.label, lw=1.8, ms=5)
        ax.fill_between(x, m - s, m + s, color=colour, alpha=0.2, lw=0)
        top = max(top, float(np.nanmax(m + s)) if len(m) else 0.0)
    if chance is not None:
        ax.axhline(chance, color="grey", ls="--", lw=1, label=chance_label)
        top = max(top, chance)
    ax.set_xlabel("missing rate: probability of dropping each modality (%)")
    ax.set_ylabel(f"{metric} top-1 accuracy (%)")
    ax.set_title(title or f"{metric.capitalize()} accuracy vs missing rate (mean ± std over seeds)")
    ax.set_xticks(100 * np.asarray(curves[0].rates) if curves else [])
    ax.set_ylim(0, min(100.0, 1.08 * top) if top > 0 else 1.0)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=9, framealpha=0.9)
    return _save(fig, out_path)


def _save(fig, out_path: str | Path) -> Path:
    fig.tight_layout()
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def _short(v: float) -> str:
    """Bar labels without scientific notation: 3012, 45.2, 0.84."""
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"


def plot_efficiency(subsets: list[str], series: dict[str, dict[str, list[float | None]]],
                    out_path: str | Path, title: str) -> Path:
    """Fig. 5: grouped bars per modality subset, one bar per model, one panel per quantity.

    `series` maps panel label (e.g. "peak memory (MiB)") -> model label -> value per subset.
    """
    panels = list(series)
    fig, axes = plt.subplots(len(panels), 1, figsize=(max(6.0, 1.1 * len(subsets) + 2), 3.2 * len(panels)),
                             dpi=120, squeeze=False)
    for ax, panel in zip(axes[:, 0], panels, strict=True):
        models = list(series[panel])
        width = 0.8 / max(len(models), 1)
        x = np.arange(len(subsets))
        for i, model in enumerate(models):
            vals = np.asarray([np.nan if v is None else v for v in series[panel][model]], dtype=float)
            bars = ax.bar(x + (i - (len(models) - 1) / 2) * width, vals, width,
                          label=model, color=_COLOURS[i % len(_COLOURS)])
            labels = ["" if np.isnan(v) else _short(v) for v in vals]
            ax.bar_label(bars, labels=labels, fontsize=7, padding=1)
        ax.set_xticks(x, subsets)
        ax.set_ylabel(panel)
        ax.margins(y=0.15)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8, loc="upper right")
    axes[0, 0].set_title(title)
    axes[-1, 0].set_xlabel("modalities at inference")
    return _save(fig, out_path)
