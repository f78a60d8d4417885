"""What mmkd knows of one dataset, in one record registered in `mmkd.registry.datasets`: its
manifest builder, its default run configuration, whether mirror images keep its labels true,
and the paper's label heads it is sized by. Callers (the config's presets, `mmkd manifest`,
train-time flips, efficiency at paper sizes) read the record instead of testing names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mmkd.config import RunConfig
from mmkd.registry import datasets


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    build: Callable[..., Any]  # (annotations, media_root, out_dir, ...) -> manifest.BuildReport
    preset: Callable[[], RunConfig]  # its default RunConfig (a preset function of mmkd.config)
    flip_safe: bool = False  # no class of its changes under a mirror image
    paper: str = "epic100"  # the paper dataset whose recipes size its efficiency at paper sizes
    paper_heads: dict[str, int] = field(default_factory=dict)  # the paper's heads: class counts


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    datasets.register(spec.name)(spec)
    return spec
