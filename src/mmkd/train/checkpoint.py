"""Checkpoints as safetensors + JSON (no pickles), written atomically (tmp file + rename).

An output directory (RUN_DIR/teacher, RUN_DIR/students/<name>) holds
  best.safetensors   model weights of the best epoch on the validation split
  meta.json          what best.safetensors is: model spec, resolved config, cache provenance,
                     epoch and metrics (load_model() rebuilds the model from it alone)
  last.safetensors   the full training state after the latest epoch (or step checkpoint):
                     the task (model.* the fusion model, then the method's own parts),
                     optimizer moments and per-rank RNG states as tensors, and the loop's
                     counters (epoch, position in the epoch, best so far, running sums) as JSON
                     in the safetensors metadata, so one rename makes it all visible at once
  metrics.jsonl      one line per finished epoch
  config.yaml        the resolved RunConfig
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_file

from mmkd.errors import MmkdError
from mmkd.files import published, tmp_for, write_json, write_safetensors
from mmkd.models import FusionModel, ModelSpec

BEST, LAST, META, METRICS, CONFIG = ("best.safetensors", "last.safetensors", "meta.json",
                                     "metrics.jsonl", "config.yaml")
STATE_PREFIXES = ("optim.", "rng.")  # last.safetensors keys that are not the task's


def start_run(out_dir: Path, config: dict[str, Any] | None, fresh: bool) -> None:
    """Called once the run's first step succeeded: a fresh run (or --restart) drops the old
    metrics and training state only now, so one that fails before training (a cache error)
    leaves the folder as it was; then the resolved config is written."""
    if fresh:
        (out_dir / METRICS).unlink(missing_ok=True)
        (out_dir / LAST).unlink(missing_ok=True)
    if config is not None:
        with published(out_dir / CONFIG, tmp_for(out_dir / CONFIG)) as tmp:
            tmp.write_text(yaml.safe_dump(config, sort_keys=False))


def save_best(out_dir: Path, model: FusionModel, meta: dict[str, Any]) -> None:
    """Weights first, then meta: a meta.json always describes the weights next to it."""
    write_safetensors(out_dir / BEST, model.state_dict(), {"format": "mmkd-fusion"})
    write_json(out_dir / META, meta)


def load_model(ckpt_dir: str | Path, map_location: str = "cpu") -> tuple[FusionModel, dict]:
    """The best model of a training output directory, in eval mode, and its meta.json."""
    ckpt_dir = Path(ckpt_dir)
    meta_path, weights = ckpt_dir / META, ckpt_dir / BEST
    if not meta_path.exists() or not weights.exists():
        raise MmkdError(f"{ckpt_dir}: no {BEST} + {META} here; train it first with "
                        "`mmkd train teacher` or `mmkd distill`")
    meta = json.loads(meta_path.read_text())
    model = FusionModel(ModelSpec(**meta["model"]))
    model.load_state_dict(load_file(str(weights), device=map_location))
    return model.to(map_location).eval(), meta


def save_training_state(path: Path, task: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        state: dict[str, Any], rng_states: dict[str, torch.Tensor]) -> None:
    """`task`'s state dict keys (model.*, the method's parts) next to optim.* and rng.*."""
    tensors = dict(task.state_dict())
    assert not any(k.startswith(STATE_PREFIXES) for k in tensors), "reserved key prefix"
    opt = optimizer.state_dict()
    opt_scalars: dict[str, dict[str, Any]] = {}
    for pid, pstate in opt["state"].items():
        for key, value in pstate.items():
            if torch.is_tensor(value):
                tensors[f"optim.{pid}.{key}"] = value
            else:
                opt_scalars.setdefault(str(pid), {})[key] = value
    tensors.update({f"rng.{k}": v for k, v in rng_states.items()})
    write_safetensors(path, tensors, {"trainer_state": json.dumps(state),
                                 "param_groups": json.dumps(opt["param_groups"]),
                                 "optim_scalars": json.dumps(opt_scalars)})


def load_training_state(path: Path, task: torch.nn.Module, optimizer: torch.optim.Optimizer
                        ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Restore task and optimizer in place; return the loop state and the saved RNG states."""
    with safe_open(str(path), "pt") as fh:
        meta = fh.metadata()
    tensors = load_file(str(path))
    device = next(task.parameters()).device
    task.load_state_dict({k: v for k, v in tensors.items() if not k.startswith(STATE_PREFIXES)})
    opt_state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, pid, name = key.split(".", 2)
            opt_state.setdefault(int(pid), {})[name] = value.to(device) if name != "step" else value
    for pid, scalars in json.loads(meta["optim_scalars"]).items():
        opt_state.setdefault(int(pid), {}).update(scalars)
    optimizer.load_state_dict({"state": opt_state,
                               "param_groups": json.loads(meta["param_groups"])})
    rng = {k[4:]: v for k, v in tensors.items() if k.startswith("rng.")}
    return json.loads(meta["trainer_state"]), rng
