"""Cache.create/open, root arrays, provenance refusal and teacher logits."""

import json

import numpy as np
import pytest

from helpers.cache_fill import DIM, HEADS, PROVENANCE, THETA, make_cache, samples
from mmkd.cache import Cache, ProvenanceError
from mmkd.datasets.manifest import manifest_hash
from mmkd.errors import MmkdError


def test_create_stores_root_in_manifest_order(tmp_path):
    c = make_cache(tmp_path / "cache.zarr", n=10, shard_size=4)
    s = samples(10)
    assert c.n == 10 and c.heads == HEADS and c.shard_size == 4
    assert c.sample_ids == [x.sample_id for x in s]
    assert c.splits.tolist() == [x.split for x in s]
    assert c.labels("noun").tolist() == [x.labels["noun"] for x in s]
    assert c.labels("verb").dtype == np.int64
    assert c.indices("val").tolist() == [i for i, x in enumerate(s) if x.split == "val"]
    assert c.manifest_hash == manifest_hash(s)
    assert c.features() == []
    attrs = json.loads((tmp_path / "cache.zarr" / "zarr.json").read_text())["attributes"]
    assert attrs["schema_version"] == 1


def test_create_again_opens_same_manifest_and_refuses_another(tmp_path):
    path = tmp_path / "cache.zarr"
    make_cache(path, n=10)
    again = make_cache(path, n=10)  # same hash: just opens
    assert again.n == 10
    other = samples(11)
    with pytest.raises(ProvenanceError, match="manifest_hash"):
        Cache.create(path, other, HEADS, manifest_hash(other))
    with pytest.raises(ProvenanceError, match="manifest_hash"):
        Cache.open(path, manifest_hash="0" * 64)
    assert not any(p.name.startswith(".cache.zarr.tmp") for p in tmp_path.iterdir())


def test_open_missing_store_names_it_and_the_fix(tmp_path):
    with pytest.raises(MmkdError, match=r"nowhere\.zarr.*mmkd extract"):
        Cache.open(tmp_path / "nowhere.zarr")


def test_duplicate_sample_ids_refused(tmp_path):
    s = samples(4)
    s[2].sample_id = s[0].sample_id
    with pytest.raises(MmkdError, match="s000.*twice"):
        Cache.create(tmp_path / "c.zarr", s, HEADS, manifest_hash(s))


def test_writer_provenance_mismatch_names_the_field(tmp_path):
    c = make_cache(tmp_path / "cache.zarr")
    c.feature_writer("video", "test_ext", THETA, DIM, PROVENANCE)
    c.feature_writer("video", "test_ext", THETA, DIM, dict(PROVENANCE))  # same: fine
    with pytest.raises(ProvenanceError, match="weights_sha256"):
        c.feature_writer("video", "test_ext", THETA, DIM, {**PROVENANCE, "weights_sha256": "cd"})
    with pytest.raises(ProvenanceError, match="preprocessing"):
        c.feature_writer("video", "test_ext", THETA, DIM,
                         {**PROVENANCE, "preprocessing": {"fps": 25, "crop": 224}})
    with pytest.raises(ProvenanceError, match="theta"):
        c.feature_writer("video", "test_ext", THETA + 1, DIM, PROVENANCE)
    with pytest.raises(ProvenanceError, match="weights_sha256"):
        c.feature_reader("video", "test_ext", expect={"weights_sha256": "cd"})
    assert c.feature_reader("video", "test_ext", expect={"weights_sha256": "ab" * 32}).theta == THETA
    assert c.feature_provenance("video", "test_ext")["manifest_hash"] == c.manifest_hash


def test_missing_feature_group_names_the_extract_command(tmp_path):
    c = make_cache(tmp_path / "cache.zarr")
    with pytest.raises(MmkdError, match="mmkd extract --modality flow --extractor swin3d_b"):
        c.feature_reader("flow", "swin3d_b")


def test_teacher_logits_round_trip_and_missing(tmp_path, rng):
    c = make_cache(tmp_path / "cache.zarr", n=10)
    with pytest.raises(MmkdError, match="mmkd train teacher"):
        c.teacher_logits("t0", "verb")
    logits = rng.standard_normal((10, HEADS["verb"])).astype(np.float32)
    c.write_teacher_logits("t0", "verb", logits, {"checkpoint": "t0.pt"})
    np.testing.assert_array_equal(c.teacher_logits("t0", "verb"), logits)
    c.write_teacher_logits("t0", "verb", logits * 2, {"checkpoint": "t0b.pt"})  # retrained
    np.testing.assert_array_equal(Cache.open(c.path).teacher_logits("t0", "verb"), logits * 2)
    assert c.teachers() == ["t0"] and c.features() == []
    assert c.teacher_provenance("t0") == {"checkpoint": "t0b.pt"}
    with pytest.raises(MmkdError, match="shape"):
        c.write_teacher_logits("t0", "noun", logits, {})
    with pytest.raises(MmkdError, match="read-only"):
        Cache.open(c.path, "r").write_teacher_logits("t1", "verb", logits, {})


def test_teacher_features_round_trip_replace_and_verify(tmp_path, rng):
    from mmkd.cache.verify import verify

    c = make_cache(tmp_path / "cache.zarr", n=10)
    with pytest.raises(MmkdError, match="mmkd train teacher"):  # logits make the teacher first
        c.write_teacher_features("t0", {"audio": np.zeros((10, 4), np.float16)})
    c.write_teacher_logits("t0", "verb", np.zeros((10, HEADS["verb"]), np.float32), {})
    z = rng.standard_normal((10, 4)).astype(np.float16)
    c.write_teacher_features("t0", {"audio": z, "video": z * 2})
    assert Cache.open(c.path).teacher_feature_modalities("t0") == ["audio", "video"]
    np.testing.assert_array_equal(Cache.open(c.path).teacher_features("t0", "video"), z * 2)
    c.write_teacher_features("t0", {"audio": z})  # a retrained teacher leaves nothing stale
    assert c.teacher_feature_modalities("t0") == ["audio"]
    with pytest.raises(MmkdError, match="--name t0 --features"):
        c.teacher_features("t0", "video")
    with pytest.raises(MmkdError, match=r"shape \(3, 4\)"):
        c.write_teacher_features("t0", {"audio": z[:3]})
    assert not verify(c).problems
    bad = z.copy()
    bad[6] = np.inf
    c.write_teacher_features("t0", {"audio": bad})
    (problem,) = verify(c).problems
    assert problem.where == "teachers/t0/features/audio" and problem.sample_ids == [c.sample_ids[6]]


def test_teacher_kv_is_its_own_kind_beside_features_and_survives_h5_and_verify(tmp_path, rng):
    from mmkd.cache.h5io import export_h5, import_h5
    from mmkd.cache.verify import verify

    c = make_cache(tmp_path / "cache.zarr", n=10)
    c.write_teacher_logits("t0", "verb", np.zeros((10, HEADS["verb"]), np.float32), {})
    z = rng.standard_normal((10, 4)).astype(np.float16)
    kv = rng.standard_normal((10, 32)).astype(np.float16)
    c.write_teacher_features("t0", {"audio": z})
    c.write_teacher_features("t0", {"audio": kv}, kind="kv")
    np.testing.assert_array_equal(c.teacher_features("t0", "audio", "kv"), kv)
    np.testing.assert_array_equal(c.teacher_features("t0", "audio"), z)  # features untouched
    with pytest.raises(MmkdError, match="Kᵀ V .* `mmkd train teacher --name t0 --kv`"):
        c.teacher_features("t0", "video", "kv")
    back = import_h5(export_h5(c, tmp_path / "c.h5"), tmp_path / "back.zarr")
    np.testing.assert_array_equal(back.teacher_features("t0", "audio", "kv"), kv)
    bad = kv.copy()
    bad[2] = np.nan
    c.write_teacher_features("t0", {"audio": bad}, kind="kv")
    (problem,) = verify(c).problems
    assert problem.where == "teachers/t0/kv/audio" and problem.sample_ids == [c.sample_ids[2]]
    c.write_teacher_features("t0", {}, kind="kv")  # a teacher retrained without --kv
    assert c.teacher_feature_modalities("t0", "kv") == [] and \
        c.teacher_feature_modalities("t0") == ["audio"]


def test_create_refuses_a_foreign_directory(tmp_path):
    (tmp_path / "cache.zarr").mkdir()
    (tmp_path / "cache.zarr" / "notes.txt").write_text("x")
    with pytest.raises(MmkdError, match="not a Zarr store"):
        make_cache(tmp_path / "cache.zarr")
