"""CacheBatches: epoch coverage, seeded shuffling, DDP ranks, labels and teacher logits."""

import numpy as np
import pytest
import torch

from helpers.cache_fill import DIM, HEADS, PROVENANCE, THETA, fill_unit, make_cache
from mmkd.cache import Cache
from mmkd.cache.loader import BatchNeeds, CacheBatches
from mmkd.errors import MmkdError


@pytest.fixture
def cache(tmp_path, rng):
    path = tmp_path / "cache.zarr"
    c = make_cache(path, n=23, shard_size=4)
    for mod in ("video", "audio"):
        for u in c.feature_writer(mod, "test_ext", THETA, DIM, PROVENANCE).units():
            fill_unit(str(path), u.id, modality=mod)
    for head, classes in HEADS.items():
        c.write_teacher_logits("t0", head, rng.standard_normal((23, classes)), {})
    c.write_teacher_features("t0", {"audio": rng.standard_normal((23, 5)).astype(np.float16)})
    c.write_teacher_features("t0", {"video": rng.standard_normal((23, 8)).astype(np.float16)},
                             kind="kv")
    return Cache.open(path)


def _clone(v):
    return v.clone() if torch.is_tensor(v) else {k: _clone(x) for k, x in v.items()}


def epoch(batches):
    return [_clone(b) for b in batches]


def test_batches_cover_split_once_and_match_reader(cache):
    feats = {"video": "test_ext", "audio": "test_ext"}
    needs = BatchNeeds(logits=("t0",), features=(("t0", "audio"),), kv=(("t0", "video"),))
    b = CacheBatches(cache, feats, "train", batch_size=4, shuffle=True, seed=1, needs=needs)
    train = cache.indices("train")
    got = epoch(b)
    assert len(b) == len(got) == -(-len(train) // 4)
    assert sorted(torch.cat([x["index"] for x in got]).tolist()) == train.tolist()
    ref = cache.array("video", "test_ext", "tokens")
    present = cache.array("audio", "test_ext", "present")[:]
    verb, t_noun = cache.labels("verb"), cache.teacher_logits("t0", "noun")
    t_audio = cache.teacher_features("t0", "audio")
    t_kv = cache.teacher_features("t0", "video", "kv")
    for x in got:
        idx = x["index"].numpy()
        np.testing.assert_array_equal(x["tokens"]["video"].numpy(), ref.oindex[idx])
        assert x["tokens"]["audio"].dtype == torch.float32
        np.testing.assert_array_equal(x["present"]["audio"].numpy(), present[idx])
        np.testing.assert_array_equal(x["labels"]["verb"].numpy(), verb[idx])
        np.testing.assert_array_equal(x["teachers"]["t0"]["logits"]["noun"].numpy(), t_noun[idx])
        np.testing.assert_array_equal(x["teachers"]["t0"]["features"]["audio"].numpy(),
                                      t_audio[idx])
        np.testing.assert_array_equal(x["teachers"]["t0"]["kv"]["video"].numpy(), t_kv[idx])
    order = [x["index"].tolist() for x in got]
    again = CacheBatches(cache, feats, "train", 4, True, 1, in_ram=True)
    assert [x["index"].tolist() for x in again] == order  # same seed and epoch: same batches
    again.set_epoch(1)
    assert [x["index"].tolist() for x in again] != order


def test_ranks_are_disjoint_and_drop_last(cache):
    train = cache.indices("train")
    seen = []
    for rank in range(2):
        b = CacheBatches(cache, {"video": "test_ext"}, "train", 3, True, 0, drop_last=True,
                         rank=rank, world_size=2)
        idx = [i for x in b for i in x["index"].tolist()]
        assert len(b) == (len(train) // 2) // 3 and len(idx) == len(b) * 3
        seen.append(set(idx))
    assert not seen[0] & seen[1]
    unshuffled = CacheBatches(cache, {"video": "test_ext"}, "val", 4, False, 0)
    assert [i for x in unshuffled for i in x["index"].tolist()] == cache.indices("val").tolist()


def test_missing_group_and_teacher_are_named(cache):
    with pytest.raises(MmkdError, match="mmkd extract --modality flow --extractor test_ext"):
        CacheBatches(cache, {"flow": "test_ext"}, "train", 4, True, 0)
    with pytest.raises(MmkdError, match="mmkd train teacher"):
        CacheBatches(cache, {"video": "test_ext"}, "train", 4, True, 0,
                     needs=BatchNeeds(logits=("nope",)))
    with pytest.raises(MmkdError, match="mmkd train teacher --name t0 --features"):
        CacheBatches(cache, {"video": "test_ext"}, "train", 4, True, 0,
                     needs=BatchNeeds(features=(("t0", "video"),)))
    only_logits = CacheBatches(cache, {"video": "test_ext"}, "train", 4, True, 0,
                               needs=BatchNeeds(logits=("t0",)))
    assert only_logits.teachers["t0"]["features"] == {}  # loads what the method declares


def test_float16_batches_skip_the_conversion(cache):
    b16 = CacheBatches(cache, {"video": "test_ext"}, "val", 4, False, 0,
                       tokens_dtype=torch.float16)
    b32 = CacheBatches(cache, {"video": "test_ext"}, "val", 4, False, 0)
    for x16, x32 in zip(b16, b32, strict=True):
        assert x16["tokens"]["video"].dtype == torch.float16
        assert torch.equal(x16["tokens"]["video"].float(), x32["tokens"]["video"])
