"""Flow methods behind one interface: `method(first_NHW3, second_NHW3) -> flow_NHW2` (pixels).

TV-L1 (the algorithm behind EPIC's flow) and DIS (~40x faster, a little less accurate) run
through OpenCV on grayscale frames; RAFT runs through torchvision, batched, on the GPU when there
is one. Flow follows OpenCV's convention: first(y, x) ~ second(y + v, x + u).

A `FlowSpec` (plain, picklable) describes the method, so every worker process or Dask worker
builds its own copy instead of pickling models.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from mmkd.errors import MmkdError

METHODS = ("tvl1", "dis", "raft")
RAFT_MODELS = ("small", "large")
RAFT_PAD = 8  # RAFT works at 1/8 resolution: inputs are padded to a multiple of 8 ...
RAFT_MIN_SIDE = 128  # ... and of at least 128 px, which its 4-level correlation pyramid needs
NO_WEIGHTS = ("--method raft needs local weights: pass --weights FILE (torchvision's "
              "raft_large_C_T_SKHT_V2-ff5fadd5.pth or raft_small_C_T_V2-01064c6d.pth); "
              "--random-init exists only to test the plumbing")


@dataclass(frozen=True)
class FlowSpec:
    method: str = "tvl1"
    weights: str | None = None  # RAFT: a local torchvision state dict
    raft_model: str = "large"
    random_init: bool = False  # RAFT without weights: only for tests and speed benchmarks
    batch_size: int = 8  # frame pairs per RAFT forward pass
    device: str = "auto"  # RAFT: auto = cuda when available, else cpu
    num_flow_updates: int = 12  # RAFT refinement iterations (torchvision's default)

    def validate(self) -> None:
        problems = []
        if self.method not in METHODS:
            problems.append(f"--method {self.method!r} is unknown; use one of {', '.join(METHODS)}")
        if self.raft_model not in RAFT_MODELS:
            problems.append(f"--raft-model {self.raft_model!r} is unknown; use small or large")
        if self.batch_size < 1:
            problems.append(f"--batch-size {self.batch_size} must be at least 1")
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            problems.append(f"--device {self.device!r} must be auto, cpu or cuda[:N]")
        if self.method != "raft" and (self.weights or self.random_init):
            problems.append(f"--weights/--random-init are for --method raft, not {self.method}")
        if self.method == "raft" and self.weights and self.random_init:
            problems.append("pass either --weights FILE or --random-init, not both")
        if self.method == "raft" and not (self.weights or self.random_init):
            problems.append(NO_WEIGHTS)
        if self.weights and not Path(self.weights).is_file():
            problems.append(f"--weights {self.weights}: file not found; download torchvision's "
                            "RAFT weights on a machine with internet and pass the local file")
        if problems:
            raise MmkdError("; ".join(problems))


class FlowMethod(Protocol):
    def __call__(self, first_NHW3: np.ndarray, second_NHW3: np.ndarray) -> np.ndarray: ...


class OpenCVFlow:
    """TV-L1 or DIS on grayscale frames, one pair at a time (OpenCV threads internally)."""

    def __init__(self, method: str):
        if method == "tvl1":
            self._algo = cv2.optflow.DualTVL1OpticalFlow_create()
        else:
            self._algo = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)

    def __call__(self, first_NHW3: np.ndarray, second_NHW3: np.ndarray) -> np.ndarray:
        out = []
        for a_HW3, b_HW3 in zip(first_NHW3, second_NHW3, strict=True):
            a = cv2.cvtColor(a_HW3, cv2.COLOR_RGB2GRAY)
            b = cv2.cvtColor(b_HW3, cv2.COLOR_RGB2GRAY)
            out.append(self._algo.calc(a, b, None))
        return np.stack(out).astype(np.float32, copy=False)


class RaftFlow:
    """torchvision RAFT (small or large), batched, fp32, on `device`."""

    def __init__(self, spec: FlowSpec):
        import torch

        self._torch = torch
        device = spec.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        elif device.startswith("cuda") and not torch.cuda.is_available():
            raise MmkdError(f"--device {device}: torch sees no CUDA device here; "
                            "pass --device auto or cpu")
        self.device = torch.device(device)
        self.batch_size = spec.batch_size
        self.num_flow_updates = spec.num_flow_updates
        self.model = load_raft(spec.raft_model, spec.weights, spec.random_init).to(self.device).eval()

    def __call__(self, first_NHW3: np.ndarray, second_NHW3: np.ndarray) -> np.ndarray:
        out = [self._forward(first_NHW3[i:i + self.batch_size], second_NHW3[i:i + self.batch_size])
               for i in range(0, len(first_NHW3), self.batch_size)]
        return np.concatenate(out)

    def _forward(self, first_NHW3: np.ndarray, second_NHW3: np.ndarray) -> np.ndarray:
        torch = self._torch
        h, w = first_NHW3.shape[1:3]
        pad_h = max(RAFT_MIN_SIDE, h + -h % RAFT_PAD) - h
        pad_w = max(RAFT_MIN_SIDE, w + -w % RAFT_PAD) - w

        def prep(frames_NHW3: np.ndarray):
            x_N3HW = torch.from_numpy(np.ascontiguousarray(frames_NHW3)).to(self.device)
            x_N3HW = x_N3HW.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)  # RAFT wants [-1, 1]
            return torch.nn.functional.pad(x_N3HW, (0, pad_w, 0, pad_h), mode="replicate")

        with torch.inference_mode():
            flow_N2HW = self.model(prep(first_NHW3), prep(second_NHW3),
                                   num_flow_updates=self.num_flow_updates)[-1]
        return flow_N2HW[:, :, :h, :w].permute(0, 2, 3, 1).float().cpu().numpy()


def load_raft(model: str, weights: str | None, random_init: bool = False):
    """A torchvision RAFT with LOCAL weights (`torch.load(weights_only=True)`); random weights only
    when explicitly asked, because a random RAFT returns meaningless flow."""
    import torch
    from torchvision.models.optical_flow import raft_large, raft_small

    builders = {"small": raft_small, "large": raft_large}
    if weights is None:
        if not random_init:
            raise MmkdError(NO_WEIGHTS)
        torch.manual_seed(0)
        return builders[model](weights=None)
    path = Path(weights)
    if not path.is_file():
        raise MmkdError(f"--weights {path}: file not found; download torchvision's RAFT weights "
                        "on a machine with internet and pass the local file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise MmkdError(f"--weights {path}: not a state dict loadable with weights_only=True "
                        f"({type(exc).__name__}: {exc})") from None
    state = _unwrap_state_dict(state, path)
    net = builders[model](weights=None)
    mismatch = _describe_mismatch(net.state_dict(), state)
    if mismatch:
        other = "large" if model == "small" else "small"
        hint = (f"; it fits raft_{other}: pass --raft-model {other}"
                if not _describe_mismatch(builders[other](weights=None).state_dict(), state)
                else "; pass a torchvision RAFT state dict")
        raise MmkdError(f"--weights {path} does not fit torchvision raft_{model}: {mismatch}{hint}")
    net.load_state_dict(state)
    return net


def _unwrap_state_dict(state: Any, path: Path) -> dict:
    """Accept a bare state dict or one wrapped as {'state_dict': ...}/{'model': ...}, with or
    without DataParallel's 'module.' prefix."""
    if isinstance(state, dict):
        for key in ("state_dict", "model"):
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise MmkdError(f"--weights {path}: holds a {type(state).__name__}, not a state dict")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _describe_mismatch(expected: dict, state: dict) -> str:
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(k for k in set(expected) & set(state)
                    if tuple(getattr(state[k], "shape", ())) != tuple(expected[k].shape))
    parts = []
    for label, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                        ("shape mismatches", shapes)):
        if keys:
            more = f" and {len(keys) - 5} more" if len(keys) > 5 else ""
            parts.append(f"{len(keys)} {label} ({', '.join(keys[:5])}{more})")
    return "; ".join(parts)


def create_method(spec: FlowSpec) -> FlowMethod:
    spec.validate()
    return RaftFlow(spec) if spec.method == "raft" else OpenCVFlow(spec.method)
