"""Local checkpoint loading: `torch.load(weights_only=True)` or safetensors, key conversion per
family, and a strict fit check: a file that does not fit stops with the missing/unexpected keys
(never a silent partial or random init)."""

from __future__ import annotations

from pathlib import Path

import torch

from mmkd.errors import MmkdError
from mmkd.files import sha256_file

_WRAPPERS = ("state_dict", "model", "module", "model_state")
_SHOW = 8


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file, unwrapped from {"state_dict": ...}-style containers."""
    if not path.is_file():
        raise MmkdError(f"{path}: weights file not found; pass an existing --weights FILE")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj = load_file(str(path))
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle/zip/safetensors errors all mean "not a usable checkpoint"
        raise MmkdError(f"{path}: cannot read weights ({type(exc).__name__}: {exc}); give a "
                        "torch state dict (.pt/.pth) or a .safetensors file") from None
    while isinstance(obj, dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        inner = next((obj[k] for k in _WRAPPERS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, dict) or not obj:
        raise MmkdError(f"{path}: holds no state dict of tensors")
    return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def load_weights(model: torch.nn.Module, path: Path) -> str:
    """Load `path` into `model` (converting foreign layouts); return the file's sha256."""
    sd = model.convert_state_dict(read_state_dict(path))
    own = model.state_dict()
    # buffers recomputed from the architecture (relative position index) may be absent
    for key in own:
        if key.endswith("relative_position_index") and key not in sd:
            sd[key] = own[key]
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    wrong = sorted(f"{k} {tuple(sd[k].shape)} != {tuple(own[k].shape)}" for k in own
                   if k in sd and sd[k].shape != own[k].shape)
    if missing or unexpected or wrong:
        name = getattr(getattr(model, "spec", None), "name", type(model).__name__)
        parts = [f"{label} ({len(keys)}): {', '.join(keys[:_SHOW])}{' ...' if len(keys) > _SHOW else ''}"
                 for label, keys in (("missing", missing), ("unexpected", unexpected),
                                     ("shape mismatch", wrong)) if keys]
        raise MmkdError(f"{path}: does not fit extractor {name}: {'; '.join(parts)}; pass the "
                        "checkpoint of this architecture or the matching --extractor")
    model.load_state_dict(sd, strict=True)
    return sha256_file(path)
