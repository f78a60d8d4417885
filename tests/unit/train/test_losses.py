"""Each loss against a hand computation (numpy, written from the paper's equations)."""

import itertools

import numpy as np
import pytest
import torch

from mmkd.train import losses

torch.set_num_threads(1)


def _log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_cross_entropy_is_averaged_over_heads_and_ignores_unlabelled():
    rng = np.random.default_rng(0)
    verb, noun = rng.normal(size=(4, 3)), rng.normal(size=(4, 5))
    y_verb, y_noun = np.array([0, 2, 1, 1]), np.array([4, -1, 0, 3])
    lv = -_log_softmax(verb)[np.arange(4), y_verb].mean()
    keep = y_noun >= 0
    ln = -_log_softmax(noun)[np.arange(4)[keep], y_noun[keep]].mean()
    got = losses.cross_entropy({"verb": torch.tensor(verb), "noun": torch.tensor(noun)},
                               {"verb": torch.tensor(y_verb), "noun": torch.tensor(y_noun)})
    assert float(got) == pytest.approx((lv + ln) / 2, rel=1e-6)


def _nce_hand(zv, zm):
    zv = zv / np.linalg.norm(zv, axis=1, keepdims=True)
    zm = zm / np.linalg.norm(zm, axis=1, keepdims=True)
    logits = zv @ zm.T / 0.1
    return -np.mean(np.diag(_log_softmax(logits)))


def test_info_nce_aligns_each_modality_to_video_on_pairs_present_in_both():
    rng = np.random.default_rng(1)
    z = {m: rng.normal(size=(5, 4)) for m in ("video", "flow", "audio")}
    valid = {"video": np.array([1, 1, 1, 1, 0], bool), "flow": np.ones(5, bool),
             "audio": np.array([1, 0, 1, 1, 1], bool)}
    rows_f = valid["video"] & valid["flow"]
    rows_a = valid["video"] & valid["audio"]
    want = (_nce_hand(z["video"][rows_f], z["flow"][rows_f])
            + _nce_hand(z["video"][rows_a], z["audio"][rows_a])) / 2  # 1/(M-1) Σ_{m≠video}
    got = losses.info_nce({m: torch.tensor(v) for m, v in z.items()},
                          {m: torch.tensor(v) for m, v in valid.items()}, tau=0.1)
    assert float(got) == pytest.approx(want, rel=1e-6)


def test_info_nce_skips_modalities_with_fewer_than_two_pairs_and_keeps_the_graph():
    z = {m: torch.randn(3, 4, requires_grad=True) for m in ("video", "audio")}
    valid = {"video": torch.tensor([True, False, False]), "audio": torch.ones(3, dtype=bool)}
    got = losses.info_nce(z, valid, tau=0.1)
    assert got.item() == 0.0
    got.backward()  # a zero that still belongs to the graph (DDP needs every step to backward)
    only_video = losses.info_nce({"video": z["video"]}, {"video": valid["audio"]}, tau=0.1)
    assert only_video.item() == 0.0


def test_kl_distillation_matches_eq4_per_head():
    rng = np.random.default_rng(2)
    s = {"verb": rng.normal(size=(3, 4)), "noun": rng.normal(size=(3, 6))}
    t = {"verb": rng.normal(size=(3, 4)) * 2, "noun": rng.normal(size=(3, 6))}
    want = []
    for h in s:
        lp_t, lp_s = _log_softmax(t[h]), _log_softmax(s[h])
        want.append(np.mean(np.sum(np.exp(lp_t) * (lp_t - lp_s), axis=1)))
    got = losses.kl_distill({h: torch.tensor(v) for h, v in s.items()},
                            {h: torch.tensor(v) for h, v in t.items()})
    assert float(got) == pytest.approx(np.mean(want), rel=1e-6)
    same = losses.kl_distill({h: torch.tensor(v) for h, v in t.items()},
                             {h: torch.tensor(v) for h, v in t.items()})
    assert abs(float(same)) < 1e-9


def _present(*cols):
    return {m: torch.tensor(c, dtype=torch.bool) for m, c in zip(("v", "f", "a"), cols,
                                                                   strict=False)}


def test_modality_dropout_inverse_cdf_by_hand():
    # two available modalities, p = 0.2: subsets in order {f}, {v}, {v,f} with weights
    # 0.8·0.2, 0.8·0.2, 0.8·0.8 → CDF 1/6, 2/6, 1
    present = _present([1, 1, 1, 1], [1, 1, 1, 1])
    u = torch.tensor([0.10, 0.20, 0.40, 0.99])
    out = losses.modality_dropout(present, 0.2, u)
    assert out["v"].tolist() == [False, True, True, True]
    assert out["f"].tolist() == [True, False, True, True]


def test_modality_dropout_never_drops_all_nor_revives_missing():
    g = torch.Generator().manual_seed(0)
    b = 4000
    present = {m: torch.rand(b, generator=g) < 0.7 for m in ("v", "f", "a")}
    present["v"][:10] = present["f"][:10] = present["a"][:10] = False  # samples with nothing
    out = losses.modality_dropout(present, 0.5, torch.rand(b, generator=g))
    avail = torch.stack(list(present.values()), 1)
    kept = torch.stack(list(out.values()), 1)
    assert not (kept & ~avail).any()
    assert (kept.any(1) == avail.any(1)).all()


def test_modality_dropout_law_is_independent_drops_conditioned_on_a_survivor():
    p, b = 0.5, 60000
    g = torch.Generator().manual_seed(1)
    present = _present(*[[1] * b] * 3)
    kept = torch.stack(list(losses.modality_dropout(present, p, torch.rand(b, generator=g))
                            .values()), 1)
    for subset in itertools.product([0, 1], repeat=3):
        if not any(subset):
            continue
        want = (1 - p) ** sum(subset) * p ** (3 - sum(subset)) / (1 - p ** 3)  # = 1/7 at p=.5
        got = (kept == torch.tensor(subset, dtype=torch.bool)).all(1).float().mean().item()
        assert got == pytest.approx(want, abs=0.01)


def test_modality_dropout_p0_is_identity():
    present = _present([1, 0], [0, 1])
    assert losses.modality_dropout(present, 0.0, torch.tensor([0.1, 0.9])) is present
