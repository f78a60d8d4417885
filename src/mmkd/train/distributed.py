"""The few collective operations the loop needs; all are no-ops in a single process.

The loop runs under `torchrun` (NCCL on GPUs, gloo on CPU): each rank reads its share of every
global batch (`CacheBatches(rank=, world_size=)`), DDP averages gradients, and the metrics are
summed over ranks so that rank 0 logs what one process would have logged.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
import torch.nn.functional as F


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank_world() -> tuple[int, int]:
    return (dist.get_rank(), dist.get_world_size()) if is_distributed() else (0, 1)


def init_from_env() -> bool:
    """Join the process group when started by torchrun (WORLD_SIZE > 1); True if joined."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return dist.is_initialized()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend)
    return True


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if is_distributed():
        t = t.clone()
        dist.all_reduce(t)
    return t


def gather_with_grad(x_B: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's rows in rank order; gradients flow back to the local rows.

    Ranks may hold different row counts (the last batch of an epoch): rows are padded to the
    largest count for the collective and cut back afterwards.
    """
    if not is_distributed():
        return x_B
    is_bool = x_B.dtype == torch.bool
    x = x_B.to(torch.uint8) if is_bool else x_B
    counts = [torch.zeros(1, dtype=torch.long, device=x.device) for _ in range(dist.get_world_size())]
    dist.all_gather(counts, torch.tensor([x.shape[0]], device=x.device))
    sizes = [int(c) for c in counts]
    pad = max(sizes) - x.shape[0]
    if pad:
        x = F.pad(x, (0, 0) * (x.ndim - 1) + (0, pad))
    if x.requires_grad:
        parts = torch.distributed.nn.functional.all_gather(x)
    else:
        parts = [torch.empty_like(x) for _ in sizes]
        dist.all_gather(parts, x)
    out = torch.cat([p[:n] for p, n in zip(parts, sizes, strict=True)])
    return out.bool() if is_bool else out
