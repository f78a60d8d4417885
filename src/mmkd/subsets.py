"""Modality subsets and the paper's notation for them (V+F+A, ...), used wherever accuracy is
reported per subset: stage-3 fine-tuning, `mmkd eval`, the ablations and the efficiency table.
"""

from __future__ import annotations

import itertools

LETTERS = {"video": "V", "flow": "F", "audio": "A", "detection": "D"}


def subset_label(subset: tuple[str, ...] | list[str]) -> str:
    """The paper's notation: ("video", "flow", "audio") -> "V+F+A"."""
    return "+".join(LETTERS.get(m, m) for m in subset)


def modality_subsets(modalities: list[str]) -> list[tuple[str, ...]]:
    """Every non-empty subset, largest first, each in the given modality order (Table 1's rows:
    V+F+A, V+F, V+A, F+A, V, F, A)."""
    mods = list(modalities)
    return [c for k in range(len(mods), 0, -1) for c in itertools.combinations(mods, k)]


def parse_subset(text: str, modalities: list[str]) -> tuple[str, ...]:
    """"F+A" (the paper's letters) or "flow+audio" -> the subset of `modalities` it names."""
    for s in modality_subsets(modalities):
        if text.strip() in (subset_label(s), "+".join(s)):
            return s
    from mmkd.errors import MmkdError

    raise MmkdError(f"--subset {text}: use one of "
                    f"{', '.join(subset_label(s) for s in modality_subsets(modalities))}")
