"""The run directory's layout and finding it with its resolved config, so commands need no
repeated arguments: the one place that knows where a run keeps its cache and reports."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mmkd import config as C
from mmkd.errors import MmkdError

CACHE = "cache.zarr"  # the run's feature cache, next to its config


def cache_path(run_dir: Path) -> Path:
    return Path(run_dir) / CACHE


@dataclass
class Run:
    dir: Path
    cfg: C.RunConfig

    @property
    def cache_path(self) -> Path:
        return cache_path(self.dir)

    @property
    def manifest_dir(self) -> Path:
        return self.cfg.manifest_path(self.dir)

    @property
    def reports_dir(self) -> Path:
        return self.dir / "reports"


def find_run(run_dir: Path | None, overrides: list[str] | None = None,
             extractors: bool = True) -> Run:
    """`run_dir` may be the run directory or its cache.zarr; default: the current directory.
    `extractors=False`: commands that only read the cache skip the extractor-name check."""
    if run_dir is None:
        run_dir = Path.cwd()
    if run_dir.name.endswith(".zarr"):
        run_dir = run_dir.parent
    cfg_file = run_dir / C.CONFIG_FILE
    if not cfg_file.exists():
        raise MmkdError(f"{cfg_file} not found: run `mmkd init {run_dir} --dataset NAME ...` first, "
                        "or pass --cache RUN_DIR")
    cfg = C.load(cfg_file, overrides)
    cfg.validate(extractors)
    return Run(run_dir, cfg)
