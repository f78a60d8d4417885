"""Stage 3's model: the student's fusion block with trainable extractors inside its forward
(`EndToEndStudent`), gradient checkpointing over the extractors' blocks, and the split of its
state into the fusion block's and each extractor's weights.
"""

from __future__ import annotations

import functools
import types
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from mmkd.errors import MmkdError
from mmkd.extract.extractors import Extractor
from mmkd.extract.theta import theta_average
from mmkd.models import FusionModel, ModelSpec
from mmkd.train.finetune_cmpt import proxy_key
from mmkd.train.finetune_data import RawInputs


def extractor_no_weight_decay(extractor: Extractor, prefix: str) -> set[str]:
    """Names (under `prefix`) of the parameters its family trains without weight decay."""
    suffixes = extractor.spec.family_record.no_weight_decay
    return {n for n, _ in extractor.named_parameters(prefix=prefix) if n.endswith(suffixes)}


def enable_grad_checkpointing(extractor: Extractor) -> int:
    """Recompute each transformer block of `extractor` in backward; returns the block count.

    The block's `forward` is replaced on the instance by a bound method (not the module by a
    wrapper), so parameter names and checkpoints stay those of `create_extractor`, and a
    deep copy binds to the copied block."""
    from timm.models.vision_transformer import Block
    from torchvision.models.swin_transformer import SwinTransformerBlock

    if not extractor.spec.family_record.grad_checkpointing:
        raise MmkdError(f"extractor {extractor.spec.name}: no transformer blocks to checkpoint; "
                        "run without --grad-checkpointing")
    n = 0
    for module in extractor.modules():
        if isinstance(module, SwinTransformerBlock | Block | nn.TransformerEncoderLayer):
            module.forward = types.MethodType(_checkpointed_forward, module)
            n += 1
    return n


def _checkpointed_forward(self: nn.Module, *args, **kwargs):
    forward = functools.partial(type(self).forward, self)
    if self.training and torch.is_grad_enabled():
        return checkpoint(forward, *args, use_reentrant=False, **kwargs)
    return forward(*args, **kwargs)


class EndToEndStudent(FusionModel):
    """A student FusionModel that owns trainable extractors for some modalities.

    In `forward(tokens, present)` a modality with an extractor may come as `RawInputs`: the
    extractor runs on the samples where it is present, its k tokens are Θ-averaged exactly as in
    stage 1 (`theta[m]`), and the fusion block sees the token layout it was trained on.
    `encoder_proxies` (CMPT, `finetune_cmpt`): proxy tokens that run inside those extractors;
    `encode` leaves their outputs under `proxy_key(m)` and they replace the fusion block's
    proxies of their pairs."""

    def __init__(self, spec: ModelSpec, extractors: dict[str, Extractor], theta: dict[str, int],
                 accum_steps: int = 1, encoder_proxies: nn.ModuleDict | None = None):
        super().__init__(spec)
        if accum_steps < 1:
            raise MmkdError(f"--accum-steps {accum_steps}: must be >= 1")
        self.extractors = nn.ModuleDict(extractors)
        self.theta, self.accum_steps = dict(theta), accum_steps
        self.encoder_proxies = encoder_proxies if encoder_proxies is not None else nn.ModuleDict()

    def no_weight_decay(self) -> set[str]:
        return super().no_weight_decay().union(*(
            extractor_no_weight_decay(e, f"extractors.{m}") for m, e in self.extractors.items()))

    def encode(self, tokens: dict[str, Any], present: dict[str, torch.Tensor]
               ) -> dict[str, torch.Tensor]:
        """`tokens` with every RawInputs replaced by the Θ-averaged extractor tokens."""
        out = dict(tokens)
        for m in self.extractors:
            if isinstance(tokens.get(m), RawInputs):
                x_BKD = self._encode(m, tokens[m], present[m].bool())
                if m in self.encoder_proxies:  # the proxies lead (`_tokens`), unless none ran
                    P, k = len(self.encoder_proxies[m].targets), self.spec.modalities[m][0]
                    ran = x_BKD.shape[1] == P + k
                    out[proxy_key(m)] = x_BKD[:, :P] if ran else x_BKD.new_zeros(
                        x_BKD.shape[0], P, x_BKD.shape[2])
                    x_BKD = x_BKD[:, P:] if ran else x_BKD
                out[m] = x_BKD
        return out

    def forward(self, tokens: dict[str, Any], present: dict[str, torch.Tensor]):
        enc = self.encode(tokens, present)
        proxies = {}
        for s, ep in self.encoder_proxies.items():
            if proxy_key(s) in enc:
                proxies.update(ep.project(s, enc[proxy_key(s)]))
        return super().forward({m: enc[m] for m in self.modalities}, present, proxies or None)

    def _encode(self, m: str, raw: RawInputs, present_B: torch.Tensor) -> torch.Tensor:
        B, (k, dim) = present_B.shape[0], self.spec.modalities[m]
        rows = present_B.nonzero().squeeze(1)
        if rows.numel() == 0 or not raw:
            return self.cls_token.new_zeros(B, k, dim)
        split = self.training and torch.is_grad_enabled() and self.accum_steps > 1
        parts = []
        for r in rows.tensor_split(self.accum_steps) if split else (rows,):
            if r.numel():
                x = raw.select(r)
                parts.append(checkpoint(self._tokens, m, x, use_reentrant=False) if split
                             else self._tokens(m, x))
        sub_bKD = torch.cat(parts)
        return sub_bKD.new_zeros(B, *sub_bKD.shape[1:]).index_copy(0, rows, sub_bKD)

    def _tokens(self, m: str, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        if m in self.encoder_proxies:
            b = next(iter(inputs.values())).shape[0]
            prefix_BPD = self.encoder_proxies[m].tokens_PD.expand(b, -1, -1)
            tokens_BKD, proxies_BPD = self.extractors[m].forward_with_prefix(inputs, prefix_BPD)
            return torch.cat([proxies_BPD, theta_average(tokens_BKD, self.theta[m])], 1)
        tokens_BKD = self.extractors[m](inputs)
        return theta_average(tokens_BKD, self.theta[m])

    def split_state(self) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, torch.Tensor]]]:
        """(fusion block state, {modality: extractor state}) in their stand-alone key layouts."""
        return split_state(self.state_dict(), list(self.extractors))


def split_state(sd: dict[str, torch.Tensor], modalities: list[str]
                ) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, torch.Tensor]]]:
    fusion = {k: v for k, v in sd.items() if not k.startswith("extractors.")}
    ext = {m: {k[len(f"extractors.{m}."):]: v for k, v in sd.items()
               if k.startswith(f"extractors.{m}.")} for m in modalities}
    return fusion, ext
