"""MST-Distill (Mixture of Specialized Teachers) on cached tokens: three tasks, one per stage.

Every member is the student's fusion model restricted to some modalities: the multimodal member
(all of them) and one unimodal member per modality.

1. `MstCollaborative`: the M + 1 members trained jointly, Σ CE + Σ over ordered pairs (a, b) of
   τ²·KL(p_b ‖ p_a) at temperature τ, neither side detached, so each pair's KL trains both.
2. `MstSpecialise`: for target modality t, the base teachers (the multimodal member and the
   unimodal members other than t) get a MaskNet at each of `mask_layers`; each (base, layer) is
   one specialised teacher. Members are frozen; each MaskNet minimises τ²·KL(P_t ‖ Q_j) against
   the stage-1 target member (summed over j: the MaskNets share no parameter, so the sum trains
   each on its own loss).
3. `MstMethod` (`mmkd distill --method mst`): the target student (from its stage-1 weights) and
   a GateNet on its logits; CE + λ1·mean_{top-k} τ²·KL(Q_j ‖ P_student) + λ2·KL(U ‖ C̄). The
   specialised teachers are frozen, so their logits come from the cache. As in the authors'
   code the top-k choice is not differentiable and the KD term is not weighted by the gate, so
   the GateNet learns only from the load-balancing term (through C̄), and that term's gradient
   also reaches the student through the logits the GateNet reads.

MaskNet points of a fusion model: "fusion" masks the M + 1 output tokens the MH-MLP reads
(the fusion block's output), "shared" masks the MH-MLP's shared hidden layer; each token is
masked with its own mask. They are applied with forward hooks for the duration of one call, so
several teachers share one frozen base model.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from mmkd.registry import methods
from mmkd.train import losses
from mmkd.train.methods.base import Method, StepOutput, loss_weight, teacher_logits
from mmkd.train.methods.kd import soft_kl

MASK_LAYERS = ("fusion", "shared")
ALL = "all"  # the multimodal member's name


@dataclass
class MstConfig:
    temperature: float = 4.0  # τ in every stage (the authors' T = 4)
    mask_layers: list[str] = field(default_factory=lambda: list(MASK_LAYERS))
    mask_heads: int = 3  # MaskNet attention heads
    mask_hidden_factor: int = 2  # d_h = d_m // (factor·heads) · heads (the authors' formula)
    top_k: int = 1
    ce_weight: float = loss_weight(1.0)
    kd_weight: float = loss_weight(1.0)  # λ1 at the start
    lb_weight: float = loss_weight(1.0)  # λ2 at the start
    kd_halve_every: int = 30  # λ1 halves every this many epochs of a 100-epoch schedule
    lb_decay_every: int = 10  # λ2 × 0.9 every this many epochs of a 100-epoch schedule
    stage1_epochs: int = 0  # 0: the student recipe's epochs
    stage2_epochs: int = 1  # the authors' default

    def problems(self) -> list[str]:
        out = []
        if self.temperature <= 0:
            out.append(f"temperature = {self.temperature!r}: must be > 0")
        bad = [x for x in self.mask_layers if x not in MASK_LAYERS]
        if bad or not self.mask_layers or len(set(self.mask_layers)) != len(self.mask_layers):
            out.append(f"mask_layers = {self.mask_layers!r}: a non-empty list of distinct "
                       f"{' / '.join(MASK_LAYERS)}")
        for name in ("mask_heads", "mask_hidden_factor", "top_k", "kd_halve_every",
                     "lb_decay_every", "stage2_epochs"):
            if getattr(self, name) < 1:
                out.append(f"{name} = {getattr(self, name)!r}: must be >= 1")
        if self.stage1_epochs < 0:
            out.append(f"stage1_epochs = {self.stage1_epochs!r}: must be >= 0")
        return out


# ------------------------------------------------------------------------------ parts
class MaskNet(nn.Module):
    """Soft feature mask (Eq. 6): Linear(d → d·d_h) → (d, d_h) → self-attention → Linear(d_h → 1)
    → sigmoid, one mask value per feature channel; applied as mask ⊗ feature."""

    def __init__(self, dim: int, heads: int = 3, hidden_factor: int = 2):
        super().__init__()
        self.dim = dim
        self.hidden = max(1, dim // (hidden_factor * heads)) * heads
        self.embed = nn.Linear(dim, dim * self.hidden)
        self.attn = nn.MultiheadAttention(self.hidden, heads, batch_first=True)
        self.fc = nn.Linear(self.hidden, 1)

    def mask(self, x: torch.Tensor) -> torch.Tensor:
        """(..., d) → (..., d) in (0, 1)."""
        x_Nd = x.reshape(-1, self.dim)
        h_Ndh = self.embed(x_Nd).view(-1, self.dim, self.hidden)
        a_Ndh, _ = self.attn(h_Ndh, h_Ndh, h_Ndh, need_weights=False)
        return torch.sigmoid(self.fc(a_Ndh).squeeze(-1)).view_as(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mask(x) * x


class GateNet(nn.Module):
    """Routing MLP on the student's logits (all heads concatenated, C in total): C → 2C → N.
    Two linear layers with nothing between them, as in the authors' code."""

    def __init__(self, n_classes: int, n_teachers: int):
        super().__init__()
        self.fc1 = nn.Linear(n_classes, 2 * n_classes)
        self.fc2 = nn.Linear(2 * n_classes, n_teachers)

    def forward(self, logits_BC: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc1(logits_BC))


def top_k_routes(conf_BN: torch.Tensor, k: int) -> torch.Tensor:
    """(B, k) indices of the k most confident teachers per sample, most confident first."""
    return conf_BN.topk(k, dim=-1).indices


def load_balancing(conf_BN: torch.Tensor) -> torch.Tensor:
    """KL(U ‖ C̄) with C̄ the batch mean of the routing distributions (Eq. 16–17)."""
    mean_N = conf_BN.float().mean(0)
    return (math.log(1.0 / mean_N.shape[0]) - mean_N.log()).mean()


def decay_factors(epoch: int, epochs: int, cfg: MstConfig) -> tuple[float, float]:
    """(λ1, λ2) for a 0-based epoch. The periods are the paper's (30, 10 of 100 epochs) scaled
    to this run's epochs; as in the authors' code a decay step happens after every epoch e with
    e % period == 0, the first after epoch 0."""
    p1 = max(1, round(cfg.kd_halve_every * epochs / 100))
    p2 = max(1, round(cfg.lb_decay_every * epochs / 100))
    return (cfg.kd_weight * 0.5 ** math.ceil(epoch / p1),
            cfg.lb_weight * 0.9 ** math.ceil(epoch / p2))


def mask_width(model: nn.Module, layer: str) -> int:
    """The feature width at a MaskNet point of a fusion model."""
    return model.spec.width if layer == "fusion" else model.spec.mlp_hidden


@contextmanager
def masked(model: nn.Module, layer: str, masknet: MaskNet):
    """While inside, `model`'s features at `layer` are multiplied by masknet's mask."""
    if layer == "fusion":
        handle = model.mlp_head.register_forward_pre_hook(lambda _m, args: (masknet(args[0]),))
    else:
        handle = model.mlp_head.shared.register_forward_hook(lambda _m, _a, out: masknet(out))
    try:
        yield
    finally:
        handle.remove()


def teacher_id(target: str, j: int) -> str:
    """Cache id of the j-th (1-based) specialised teacher for target modality `target`."""
    return f"mst-{target}-{j}"


def _frozen(module: nn.Module) -> nn.Module:
    module.requires_grad_(False)
    return module.eval()


# ------------------------------------------------------------------------------ stage 1
class MstStage(Method):
    """What the three stage tasks share: the config and no modality dropout (as the paper)."""

    Config = MstConfig
    uses_dropout = False


class MstCollaborative(MstStage):
    """Stage 1: `model` is the multimodal member, `members` the unimodal ones (by modality)."""

    name = "mst-collaborative"
    label = "MST stage 1"

    def __init__(self, model, cfg: MstConfig, train: Any, n_samples: int,
                 unimodal: dict[str, nn.Module]):
        super().__init__(model, cfg, train, n_samples)
        self.members = nn.ModuleDict(unimodal)

    def all_members(self) -> dict[str, nn.Module]:
        return {ALL: self.model, **dict(self.members)}

    def training_step(self, batch: dict, epoch: int) -> StepOutput:
        present = self.dropped(batch, epoch)
        out = {n: m(batch["tokens"], present).logits for n, m in self.all_members().items()}
        ce = torch.stack([losses.cross_entropy(v, batch["labels"]) for v in out.values()]).sum()
        t = self.cfg.temperature
        kl = torch.stack([soft_kl(out[a], out[b], t) for a in out for b in out if a != b]).sum()
        return StepOutput(ce + kl, out[ALL], {"ce": ce.detach(), "kl": kl.detach()})


# ------------------------------------------------------------------------------ stage 2
class MstSpecialise(MstStage):
    """Stage 2: `model` is the frozen stage-1 target member; `bases` the frozen base teachers;
    `masks[j]` the MaskNet of specialised teacher j = `routes[j]` (base name, layer)."""

    name = "mst-specialise"
    label = "MST stage 2"

    def __init__(self, model, cfg: MstConfig, train: Any, n_samples: int,
                 bases: dict[str, nn.Module]):
        super().__init__(_frozen(model), cfg, train, n_samples)
        self.bases = nn.ModuleDict({n: _frozen(b) for n, b in bases.items()})
        self.routes = [(n, layer) for n in bases for layer in cfg.mask_layers]
        self.masks = nn.ModuleList(
            MaskNet(mask_width(bases[n], layer), cfg.mask_heads, cfg.mask_hidden_factor)
            for n, layer in self.routes)

    def train(self, mode: bool = True):
        super().train(mode)
        self.model.eval()
        self.bases.eval()
        return self

    def teacher_logits(self, j: int, tokens: dict, present: dict) -> dict[str, torch.Tensor]:
        base, layer = self.routes[j]
        with masked(self.bases[base], layer, self.masks[j]):
            return self.bases[base](tokens, present).logits

    def training_step(self, batch: dict, epoch: int) -> StepOutput:
        present = self.dropped(batch, epoch)
        with torch.no_grad():
            student = self.model(batch["tokens"], present).logits
        t = self.cfg.temperature
        outs = [self.teacher_logits(j, batch["tokens"], present) for j in range(len(self.masks))]
        kls = [soft_kl(q, student, t) for q in outs]  # τ²·KL(P_t ‖ Q_j)
        return StepOutput(torch.stack(kls).sum(), outs[0],
                          {f"kl_{j + 1}": v.detach() for j, v in enumerate(kls)})


# ------------------------------------------------------------------------------ stage 3
@methods.register("mst")
class MstMethod(MstStage):
    """Stage 3: `model` is the target-modality student, `gate` the GateNet; `teachers` the
    cache ids of the specialised teachers. `routed` counts how often each teacher was chosen."""

    name = "mst"
    label = "MST-Distill"

    def __init__(self, model, cfg: MstConfig, train: Any, n_samples: int,
                 make_model: Any = None, teachers: list[str] | None = None):
        super().__init__(model, cfg, train, n_samples)
        if not teachers:
            raise ValueError("mst distils from its specialised teachers: pass their cache ids")
        if cfg.top_k > len(teachers):
            raise ValueError(f"top_k = {cfg.top_k} > {len(teachers)} specialised teachers")
        self.teachers = list(teachers)
        self.epochs = train.epochs
        self.gate = GateNet(sum(model.spec.heads.values()), len(teachers))
        self.register_buffer("routed", torch.zeros(len(teachers), dtype=torch.int64))

    def training_step(self, batch: dict, epoch: int) -> StepOutput:
        logits = self.model(batch["tokens"], self.dropped(batch, epoch)).logits
        heads = list(logits)
        conf_BN = torch.softmax(self.gate(torch.cat([logits[h] for h in heads], -1).float()), -1)
        top_Bk = top_k_routes(conf_BN.detach(), self.cfg.top_k)
        q_NBC = {h: torch.stack([teacher_logits(batch, tid)[h] for tid in self.teachers])
                 for h in heads}
        rows = torch.arange(top_Bk.shape[0], device=top_Bk.device)
        t = self.cfg.temperature
        kd = torch.stack([soft_kl(logits, {h: q_NBC[h][top_Bk[:, i], rows] for h in heads}, t)
                          for i in range(top_Bk.shape[1])]).mean()
        lb = load_balancing(conf_BN)
        ce = losses.cross_entropy(logits, batch["labels"])
        l1, l2 = decay_factors(epoch, self.epochs, self.cfg)
        self.routed += torch.bincount(top_Bk.flatten(), minlength=len(self.teachers))
        loss = self.cfg.ce_weight * ce + l1 * kd + l2 * lb
        return StepOutput(loss, logits, {"ce": ce.detach(), "kd": kd.detach(),
                                         "lb": lb.detach()})
