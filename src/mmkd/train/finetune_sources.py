"""Stage 3's starting points: per fine-tuned modality, the weights and preprocessing that made the
`--from` student's cached tokens (verified against the cache provenance), and the registry names
of fine-tuned extractors' cache entries (`<extractor>+ft-<out dir name>`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmkd import config as C
from mmkd import registry
from mmkd.errors import MmkdError
from mmkd.extract.extractors import Extractor, create_extractor, get_spec
from mmkd.extract.extractors.base import register_spec
from mmkd.extract.theta import n_out
from mmkd.files import sha256_file

FT_TAG = "+ft-"
EXTRACTORS_DIR = "extractors"  # in a fine-tune's output dir: <modality>.safetensors


@dataclass(frozen=True)
class Source:
    """Where one fine-tuned modality's starting point comes from."""

    modality: str
    entry: str  # cache group of the --from student's tokens = its extractor's registry name
    weights: Path | None  # None: random init (as the cached tokens were made)
    theta: int
    sampler: Any  # ClipSampler from the cache provenance


def read_source(cache, run_dir: Path, cfg: C.RunConfig, m: str, entry: str) -> Source:
    """The weights and preprocessing that made the cached tokens of (m, entry), verified."""
    prov = cache.feature_provenance(m, entry)
    base = entry.split(FT_TAG, 1)[0]
    sha = prov["weights_sha256"]
    weights: Path | None = None
    if FT_TAG in entry:  # an earlier fine-tune's entry: its weights live in its output dir
        weights = run_dir / "students" / entry.split(FT_TAG, 1)[1] / EXTRACTORS_DIR / \
            f"{m}.safetensors"
        register_entry(base, entry, weights)
    elif sha != "random-init":
        w = cfg.student.weights.get(m)
        if not w:
            raise MmkdError(f"{cache.path}: the {m}/{entry} tokens came from weights with sha256 "
                            f"{sha[:16]}…; set student.weights.{m}=FILE in mmkd.yaml so "
                            "fine-tuning starts from them")
        weights = Path(w) if Path(w).is_absolute() else run_dir / w
    if weights is not None and sha256_file(weights) != sha:
        raise MmkdError(f"{weights}: sha256 differs from the weights that made the cached {m} "
                        f"tokens ({entry}: {sha[:16]}…); use the same file, or re-extract")
    spec = get_spec(entry)
    contract = {f"pre_{k}": v for k, v in spec.contract().items()}
    stale = [k for k, v in contract.items() if json.loads(json.dumps(v)) != prov.get(k)]
    if stale or spec.family != prov.get("family"):
        raise MmkdError(f"{cache.path}: {m}/{entry} was extracted with other preprocessing than "
                        f"extractor {entry} now declares ({', '.join(stale) or 'family'}); "
                        f"re-extract it with `mmkd extract --modality {m} --extractor {entry}`")
    sampler = source_sampler(prov)
    theta = int(prov["theta_param"])
    if n_out(spec.n_tokens(sampler.num_frames), theta) != int(prov["theta"]):
        raise MmkdError(f"{cache.path}: {m}/{entry} stores {prov['theta']} tokens per clip, "
                        f"extractor {entry} with Θ={theta} would give another number")
    return Source(m, entry, weights, theta, sampler)


def load_extractor(s: Source) -> Extractor:
    ext = create_extractor(s.entry, weights=s.weights, random_init=s.weights is None)
    return ext.requires_grad_(True)


def describe_source(s: Source) -> dict[str, Any]:
    return {"entry": s.entry, "weights": str(s.weights) if s.weights else "random-init",
            "theta": s.theta, "clip_frames": s.sampler.num_frames,
            "clip_stride": s.sampler.stride, "clip_sampling": s.sampler.policy}


def register_entry(base: str, entry: str, weights: Path) -> None:
    """Register `entry` (e.g. demo_ast_student+ft-karmma-ft-audio) as the base extractor's
    architecture and input contract, so stage 1's runner can extract with it by name."""
    if entry not in registry.extractors:
        register_spec(dataclasses.replace(get_spec(base), name=entry,
                                          weights_source=f"mmkd finetune: {weights}"))


def ft_entry(entry: str, run_name: str) -> str:
    """The cache entry of a fine-tuned extractor: demo_ast_student+ft-karmma-ft-audio."""
    return f"{entry.split(FT_TAG, 1)[0]}{FT_TAG}{run_name}"


def source_sampler(src: dict[str, Any]):
    """The clip sampling recorded in a cache provenance or a fine-tune's `sources` record."""
    from mmkd.extract.sampling import ClipSampler

    return ClipSampler(int(src["clip_frames"]), int(src["clip_stride"]), str(src["clip_sampling"]))
