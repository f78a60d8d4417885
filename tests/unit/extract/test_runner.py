"""The extraction loop on tiny real media: tokens in the cache, failures, strict, resume, workers."""

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import extract_media as em
from mmkd.cache import Cache, ProvenanceError
from mmkd.datasets.manifest import read_all
from mmkd.errors import MmkdError
from mmkd.extract.extractors import create_extractor
from mmkd.extract.inputs import InputBuilder
from mmkd.extract.runner import ExtractJob, run_extract
from mmkd.extract.sampling import ClipSampler
from mmkd.extract.theta import theta_average

torch.set_num_threads(1)
SAMPLER = ClipSampler(8, 2, "k400")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return em.build_dataset(tmp_path_factory.mktemp("data"), n_videos=2)


def job(root: Path, manifest: Path, modality: str, extractor: str, **kw) -> ExtractJob:
    base = ExtractJob(cache_path=str(root / "cache.zarr"), manifest_dir=str(manifest),
                      modality=modality, extractor=extractor, random_init=True, theta=20,
                      batch_size=3, workers=0, shard_size=2, sampler=SAMPLER)
    return replace(base, **kw)


def read_tokens(root: Path, modality: str, extractor: str):
    cache = Cache.open(root / "cache.zarr")
    r = cache.feature_reader(modality, extractor)
    out = torch.zeros(cache.n, r.theta, r.dim)
    present = r.read(np.arange(cache.n), out)
    return cache, out, present


@pytest.mark.parametrize(("modality", "extractor", "slots"), [
    ("video", "test_swin3d", 20), ("flow", "test_swin3d", 20), ("audio", "test_ast", 10),
    ("audio", "test_swin3d_audio", 20), ("detection", "test_stlt", 8)])
def test_every_modality_lands_in_the_cache(tmp_path, dataset, modality, extractor, slots):
    res = run_extract(job(tmp_path, dataset, modality, extractor))
    assert (res.ok, res.failed, res.slots) == (4, 0, slots)
    cache, out, present = read_tokens(tmp_path, modality, extractor)
    assert present.all() and torch.isfinite(out).all() and out.abs().sum() > 0
    assert r_prov(cache, modality, extractor)["weights_sha256"] == "random-init"
    # the stored tokens are the model's tokens, Θ-averaged (float16 rounding apart)
    meta, samples = read_all(dataset)
    model = create_extractor(extractor, random_init=True)
    build = InputBuilder(modality, model.spec, SAMPLER, meta, str(dataset))
    with torch.inference_mode():
        want = theta_average(model({k: v[None] for k, v in build(samples[3]).items()}), 20)[0]
    torch.testing.assert_close(out[3], want, atol=2e-3, rtol=2e-3)


def r_prov(cache, modality, extractor):
    return cache.feature_reader(modality, extractor).provenance


def test_bad_media_is_marked_missing_and_the_run_continues(tmp_path, dataset):
    data = tmp_path / "data"
    shutil.copytree(dataset.parent, data)
    manifest = data / "manifest"
    media = data / "media" / "P01"
    mp4 = media / "videos" / "P01_01.mp4"
    mp4.write_bytes(mp4.read_bytes()[:2000])  # truncated mp4
    em.write_wav(media / "audio" / "P01_02.wav", np.zeros(0, np.float32), 16000)  # no samples
    # a flow folder with a missing frame (inside the first segment's clip)
    (media / "flow_frames" / "P01_02" / "u" / (em.TEMPLATE % 9)).unlink()
    # video from the mp4 only (drop the rgb folders from the manifest)
    import json
    for split in ("train", "val"):
        path = manifest / f"{split}.jsonl"
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        for r in rows:
            r["media"].pop("rgb")
            r["media"]["audio"] = {"path": r["media"]["audio"]["path"]}
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))

    v = run_extract(job(tmp_path, manifest, "video", "test_swin3d"))
    a = run_extract(job(tmp_path, manifest, "audio", "test_ast"))
    f = run_extract(job(tmp_path, manifest, "flow", "test_swin3d"))
    assert (v.ok, v.failed) == (2, 2) and (a.ok, a.failed) == (2, 2) and (f.ok, f.failed) == (3, 1)
    cache = Cache.open(tmp_path / "cache.zarr")
    fails = {(r["modality"], r["sample_id"]): r["reason"] for r in cache.failures()}
    assert "P01_01.mp4" in fails[("video", "P01_01_0")]
    assert "no audio samples" in fails[("audio", "P01_02_1")]
    assert "missing or unreadable frame" in fails[("flow", "P01_02_0")]
    assert len(fails) == 5
    _, _, present = read_tokens(tmp_path, "flow", "test_swin3d")
    assert present.tolist() == [True, True, False, True]

    with pytest.raises(MmkdError, match="--strict: sample 'P01_01_0'"):
        run_extract(job(tmp_path / "strict", manifest, "video", "test_swin3d", strict=True))


def test_resume_shards_and_workers(tmp_path, dataset):
    first = run_extract(job(tmp_path, dataset, "video", "test_swin3d"), shard=(1, 2))
    assert (first.total, first.ok) == (2, 2)  # unit 1 of 2 (samples 2, 3)
    rest = run_extract(job(tmp_path, dataset, "video", "test_swin3d", workers=2))
    assert (rest.already_done, rest.ok) == (2, 2)
    again = run_extract(job(tmp_path, dataset, "video", "test_swin3d"))
    assert (again.already_done, again.ok) == (4, 0)
    _, mixed, _ = read_tokens(tmp_path, "video", "test_swin3d")
    run_extract(job(tmp_path / "one", dataset, "video", "test_swin3d", workers=0))
    _, single, _ = read_tokens(tmp_path / "one", "video", "test_swin3d")
    torch.testing.assert_close(mixed, single)


def test_changed_settings_are_refused(tmp_path, dataset):
    run_extract(job(tmp_path, dataset, "video", "test_swin3d"))
    with pytest.raises(ProvenanceError, match="theta"):
        run_extract(job(tmp_path, dataset, "video", "test_swin3d", theta=10))
    with pytest.raises(ProvenanceError, match="clip_frames"):
        run_extract(job(tmp_path, dataset, "video", "test_swin3d", sampler=ClipSampler(4, 2)))


def test_wrong_modality_for_extractor(tmp_path, dataset):
    with pytest.raises(MmkdError, match="reads audio, not video"):
        run_extract(job(tmp_path, dataset, "video", "test_ast"))


def store_files(store: Path, modality: str, extractor: str) -> dict[str, bytes]:
    group = store / modality / extractor
    return {str(p.relative_to(group)): p.read_bytes() for p in sorted(group.rglob("*"))
            if p.is_file()}


def test_retry_failed_after_fixing_the_media_equals_a_clean_run(tmp_path, dataset):
    data = tmp_path / "data"
    shutil.copytree(dataset.parent, data)
    manifest = data / "manifest"
    frame = data / "media" / "P01" / "flow_frames" / "P01_02" / "u" / (em.TEMPLATE % 9)
    good = frame.read_bytes()
    frame.unlink()  # P01_02_0 fails
    broken = job(tmp_path / "retried", manifest, "flow", "test_swin3d")
    first = run_extract(broken)
    assert (first.ok, first.failed) == (3, 1)
    frame.write_bytes(good)  # media fixed: a plain rerun keeps the failure stored as done
    assert (run_extract(broken).ok, run_extract(broken).already_done) == (0, 4)

    retry = replace(broken, retry_failed=True)
    other = run_extract(retry, shard=(0, 2))  # unit 0 has no failure; unit 1 owns P01_02_0
    mine = run_extract(retry, shard=(1, 2))
    assert (other.ok, mine.ok, mine.failed, mine.already_done) == (0, 1, 0, 1)  # only that one
    assert Cache.open(tmp_path / "retried" / "cache.zarr").failures() == []
    clean = run_extract(job(tmp_path / "clean", manifest, "flow", "test_swin3d"))
    assert (clean.ok, clean.failed) == (4, 0)
    retried = store_files(tmp_path / "retried" / "cache.zarr", "flow", "test_swin3d")
    assert retried == store_files(tmp_path / "clean" / "cache.zarr", "flow", "test_swin3d")
    assert any(k.startswith("failure/") for k in retried) and "tokens/c/1/0/0" in retried
    again = run_extract(replace(broken, retry_failed=True))  # nothing left to retry
    assert (again.ok, again.already_done) == (0, 4)
