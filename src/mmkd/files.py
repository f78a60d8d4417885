"""Files every stage writes or checks the same way: content hashes and atomic writes.

An atomic write goes to a hidden temporary file next to the target and is renamed over it, so a
reader (or a resumed run after a kill) sees either the old file or the whole new one.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _tmp_for(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def write_safetensors(path: Path, tensors: dict[str, torch.Tensor],
                      metadata: dict[str, str]) -> Path:
    """Tensors (moved to CPU, made contiguous) as safetensors, atomically. Keep `metadata` to one
    entry where the file's sha256 is recorded: safetensors writes several in hash-map order, so
    the bytes would differ between identical writes."""
    from safetensors.torch import save_file

    tmp = _tmp_for(path)
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp),
              metadata=metadata)
    os.replace(tmp, path)
    return path


def write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = _tmp_for(path)
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)
