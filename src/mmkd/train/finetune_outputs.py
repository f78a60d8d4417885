"""Stage 3's outputs: the loop's best checkpoint split into a plain student checkpoint and the
extractors' weights, the `finetune` record of meta.json, and the fine-tuned student loaded back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from mmkd.errors import MmkdError
from mmkd.extract.extractors import create_extractor
from mmkd.files import sha256_file, write_json, write_safetensors
from mmkd.models import FusionModel, ModelSpec
from mmkd.train import checkpoint as ckpt
from mmkd.train import finetune_cmpt as cmpt
from mmkd.train.finetune_model import EndToEndStudent, split_state
from mmkd.train.finetune_sources import EXTRACTORS_DIR, FT_TAG, register_entry


def finalize(out_dir: Path, modalities: list[str]) -> dict[str, Path]:
    """Split the loop's best checkpoint (fusion + extractors) into a plain student checkpoint
    and `extractors/<modality>.safetensors`; idempotent (a resumed, finished run skips it)."""
    from safetensors.torch import load_file

    best = load_file(str(out_dir / ckpt.BEST))
    paths = {m: out_dir / EXTRACTORS_DIR / f"{m}.safetensors" for m in modalities}
    if not any(k.startswith("extractors.") for k in best):
        return paths
    fusion_sd, ext_sd = split_state(best, modalities)
    proxies_sd = {m: {k[len(f"encoder_proxies.{m}."):]: v for k, v in fusion_sd.items()
                      if k.startswith(f"encoder_proxies.{m}.")} for m in modalities}
    fusion_sd = {k: v for k, v in fusion_sd.items() if not k.startswith("encoder_proxies.")}
    (out_dir / EXTRACTORS_DIR).mkdir(exist_ok=True)
    for m, path in paths.items():  # extractors first: a plain best.safetensors implies them
        write_safetensors(path, cmpt.merge_lora(ext_sd[m]),
                          {"format": "mmkd-extractor", "modality": m})
        if proxies_sd[m]:
            write_safetensors(path.with_suffix(cmpt.PROXIES_SUFFIX), proxies_sd[m],
                              {"format": "mmkd-encoder-proxies", "modality": m})
    meta = json.loads((out_dir / ckpt.META).read_text())
    fusion = FusionModel(ModelSpec(**meta["model"]))
    fusion.load_state_dict(fusion_sd)
    meta["finetune"]["extractor_weights"] = {
        m: {"path": f"{EXTRACTORS_DIR}/{m}.safetensors", "sha256": sha256_file(p),
            **({"proxies": f"{EXTRACTORS_DIR}/{m}{cmpt.PROXIES_SUFFIX}"} if proxies_sd[m] else {})}
        for m, p in paths.items()}
    ckpt.save_best(out_dir, fusion, meta)
    return paths


def update_meta(out_dir: Path, changes: dict[str, Any]) -> None:
    meta = json.loads((out_dir / ckpt.META).read_text())
    for k, v in changes.items():
        meta[k] = {**meta[k], **v} if isinstance(v, dict) and isinstance(meta.get(k), dict) else v
    write_json(out_dir / ckpt.META, meta)


def load_finetuned(out_dir: str | Path, map_location: str = "cpu"
                   ) -> tuple[EndToEndStudent, dict[str, Any]]:
    """The fine-tuned student (fusion block + its extractors) of a `mmkd finetune` output."""
    out_dir = Path(out_dir)
    fusion, meta = ckpt.load_model(out_dir, map_location=map_location)
    ft = meta.get("finetune")
    if not ft or "extractor_weights" not in ft:
        raise MmkdError(f"{out_dir}: not a finished `mmkd finetune` output (no extractor weights "
                        "in meta.json); run `mmkd finetune` (it resumes)")
    extractors, theta = {}, {}
    for m, src in ft["sources"].items():
        name = src["entry"]
        if FT_TAG in name:
            register_entry(name.split(FT_TAG, 1)[0], name, Path(src["weights"]))
        extractors[m] = create_extractor(name, weights=out_dir / ft["extractor_weights"][m]["path"])
        theta[m] = int(src["theta"])
    from safetensors.torch import load_file

    with_proxies = {m: e for m, e in extractors.items() if "proxies" in ft["extractor_weights"][m]}
    proxies = cmpt.build_encoder_proxies(fusion.spec, with_proxies)
    for m in proxies:
        proxies[m].load_state_dict(load_file(str(out_dir / ft["extractor_weights"][m]["proxies"])))
    model = EndToEndStudent(fusion.spec, extractors, theta, encoder_proxies=proxies)
    model.load_state_dict({**fusion.state_dict(),
                           **{f"extractors.{m}.{k}": v for m, e in extractors.items()
                              for k, v in e.state_dict().items()},
                           **{f"encoder_proxies.{k}": v for k, v in proxies.state_dict().items()}})
    return model.to(map_location).eval(), meta


def mean_epoch_seconds(ckpt_dir: Path) -> float | None:
    """Mean training time per epoch (the loop's `time_s`, validation excluded) of a run."""
    path = ckpt_dir / ckpt.METRICS
    if not path.exists():
        return None
    times = [json.loads(ln)["time_s"] for ln in path.read_text().splitlines() if ln.strip()]
    return float(np.mean(times)) if times else None
