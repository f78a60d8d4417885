"""KARMMA's losses and modality dropout, as plain functions of tensors.

Choices the paper leaves open (also in the README's Deviations section):
- CE and KL are *averaged* over label heads (not summed), so a loss weight means the same for
  EPIC's two heads (verb, noun) and SSv2's one (action). Labels of -1 (unlabelled) are ignored.
- InfoNCE only pairs samples whose video and modality m are both present (after modality
  dropout): a missing modality's output token describes learned placeholders, not the sample.
  A modality with fewer than two such pairs in the batch is skipped, and the mean runs over the
  modalities that contributed (0 when none did).
- Modality dropout draws the kept subset from exactly the distribution of "drop each available
  modality with probability p, redraw while none is left", in one step by inverse CDF over the
  ≤ 2^M subsets, from one uniform number per sample (so a sample's draw depends only on its
  (seed, epoch, index): the same with 1 or N processes, and after a resume).
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F


def cross_entropy(logits: dict[str, torch.Tensor], labels: dict[str, torch.Tensor]) -> torch.Tensor:
    """L_CE: mean over heads of the batch-mean cross-entropy (Eq. 1)."""
    losses = [F.cross_entropy(logits[h].float(), labels[h], ignore_index=-1) for h in logits]
    return torch.stack(losses).mean()


def info_nce(z: dict[str, torch.Tensor], valid: dict[str, torch.Tensor], tau: float,
             anchor: str = "video") -> torch.Tensor:
    """L_InfoNCE (Eq. 2): 1/(M-1) Σ_{m≠video} CE(cos(z_video, z_m)/τ, arange(b))."""
    others = [m for m in z if m != anchor]
    zero = sum(t.float().sum() for t in z.values()) * 0.0  # keeps the graph when nothing counts
    if anchor not in z or not others:
        return zero
    losses = []
    for m in others:
        rows_B = valid[anchor] & valid[m]
        b = int(rows_B.sum())
        if b < 2:
            continue
        zv_bd = F.normalize(z[anchor][rows_B].float(), dim=-1)
        zm_bd = F.normalize(z[m][rows_B].float(), dim=-1)
        sim_bb = zv_bd @ zm_bd.T / tau
        losses.append(F.cross_entropy(sim_bb, torch.arange(b, device=sim_bb.device)))
    return torch.stack(losses).mean() if losses else zero


def kl_distill(student: dict[str, torch.Tensor], teacher: dict[str, torch.Tensor]) -> torch.Tensor:
    """L_KL (Eq. 4): mean over samples of Σ_c p_T (log p_T - log p_S), averaged over heads."""
    losses = [F.kl_div(F.log_softmax(student[h].float(), -1), F.log_softmax(teacher[h].float(), -1),
                       reduction="batchmean", log_target=True) for h in student]
    return torch.stack(losses).mean()


def modality_dropout(present: dict[str, torch.Tensor], p: float, u_B: torch.Tensor
                     ) -> dict[str, torch.Tensor]:
    """Drop each *available* modality with probability p, keeping at least one.

    `u_B` holds one uniform number in [0, 1) per sample. The kept subset S ⊆ A (A = available,
    S ≠ ∅) is chosen with probability ∝ (1-p)^|S| p^|A\\S|, i.e. the law of independent drops
    conditioned on at least one survivor. Already-missing modalities stay missing; a sample with
    none available keeps none (there is nothing to keep).
    """
    if p <= 0:
        return present
    names = list(present)
    avail_BM = torch.stack([present[m].bool() for m in names], 1)
    subsets_SM = torch.tensor(list(itertools.product([False, True], repeat=len(names)))[1:],
                              device=avail_BM.device)  # every non-empty subset, fixed order
    inside_BSM = subsets_SM.unsqueeze(0) & avail_BM.unsqueeze(1)
    allowed_BS = (subsets_SM.unsqueeze(0) <= avail_BM.unsqueeze(1)).all(-1)  # S ⊆ A
    n_kept_BS = inside_BSM.sum(-1)
    n_dropped_BS = avail_BM.sum(-1, keepdim=True) - n_kept_BS
    w_BS = allowed_BS * (1 - p) ** n_kept_BS.double() * p ** n_dropped_BS.double()
    cdf_BS = w_BS.cumsum(-1) / w_BS.sum(-1, keepdim=True).clamp(min=1e-300)
    pick_B = (cdf_BS <= u_B.double().unsqueeze(-1)).sum(-1).clamp(max=len(subsets_SM) - 1)
    keep_BM = subsets_SM[pick_B] & avail_BM
    return {m: keep_BM[:, i] for i, m in enumerate(names)}
