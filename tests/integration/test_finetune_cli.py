"""`mmkd finetune` end to end through the real CLI on tiny generated media.

Stage 1 (real decoders, tiny registered extractors, random init) and stage 2 (teacher + karmma
student, one epoch) build the run; stage 3 then fine-tunes the audio extractor from raw media
while video comes from the cache, re-extracts, and resumes.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from helpers import extract_media as em
from mmkd import config as C
from mmkd.cache import Cache
from mmkd.cache.loader import BatchNeeds
from mmkd.cli.app import app
from mmkd.errors import MmkdError
from mmkd.extract.extractors.weights import sha256_file

runner = CliRunner()


def invoke(*args: str):
    res = runner.invoke(app, list(args))
    if res.exception and not isinstance(res.exception, SystemExit):
        raise res.exception
    assert res.exit_code == 0, res.output
    return res


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A run with video + audio tokens, teacher logits and a karmma student (one epoch each)."""
    from mmkd.train.stage2 import distill, train_teacher

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("ft")
    manifest = em.build_dataset(root / "data", n_videos=3, seconds=2.6)
    run = root / "run"
    sets = ["data.modalities=[video,audio,detection]", "data.heads=[verb]", f"data.manifest_dir={manifest}",
            "clip.num_frames=4", "clip.frame_stride=2", "clip.sampling=k400", "extract.workers=0",
            "extract.theta=6",
            "teacher.fusion.width=16", "teacher.fusion.mlp_hidden=16",
            "student.fusion.width=16", "student.fusion.mlp_hidden=16",
            "teacher.train.epochs=1", "student.train.epochs=1", "student.train.batch_size=2",
            "teacher.train.batch_size=2", "student.train.warmup_epochs=0",
            "teacher.train.warmup_epochs=0"]
    # A YAML `extractors` mapping replaces the preset's whole (flow left out); --set only adds keys
    extractors = root / "extractors.yaml"
    extractors.write_text(yaml.safe_dump({
        "data": {"dataset": "demo"},
        "teacher": {"extractors": {"video": "test_swin3d", "audio": "test_swin3d_audio",
                                   "detection": "test_stlt"}},
        "student": {"extractors": {"video": "test_swin3d", "audio": "test_ast",
                                   "detection": "test_stlt"}}}))
    invoke("init", str(run), "--dataset", "demo", "--config", str(extractors),
           *[a for s in sets for a in ("--set", s)])
    for m in ("video", "audio", "detection"):
        invoke("extract", "--modality", m, "--random-init", "--cache", str(run))
    cfg = C.load(run / "mmkd.yaml")
    train_teacher(run / "cache.zarr", cfg, run / "teacher", device="cpu")
    distill(run / "cache.zarr", cfg, run / "students" / "karmma", device="cpu")
    return run


def test_finetune_reextract_and_resume(run_dir):
    res = invoke("finetune", "--modalities", "audio,detection", "--epochs", "2", "--reextract",
                 "--accum-steps", "2", "--grad-checkpointing", "--workers", "1",
                 "--cache", str(run_dir))
    out = run_dir / "students" / "karmma-ft-audio+detection"
    entry = "test_ast+ft-karmma-ft-audio+detection"
    text = " ".join(res.output.split())  # rich wraps long lines
    assert "V+A+D" in text and "before" in text and "s/epoch" in text
    assert f"mmkd distill --set student.extractors.audio={entry}" in text

    # the loop's files, a plain fusion checkpoint, and the extractor weights next to it
    meta = json.loads((out / "meta.json").read_text())
    assert [json.loads(ln)["epoch"] for ln in (out / "metrics.jsonl").read_text().splitlines()] \
        == [1, 2]
    assert meta["features"] == {"video": "test_swin3d", "audio": entry,
                                "detection": "test_stlt+ft-karmma-ft-audio+detection"}
    ft = meta["finetune"]
    assert set(ft["before"]) == set(ft["after"]) == {"V+A+D", "V+A", "V+D", "A+D", "V", "A", "D"}
    assert ft["s_per_epoch"] > 0 and ft["stage2_s_per_epoch"] > 0
    weights = out / "extractors" / "audio.safetensors"
    assert ft["extractor_weights"]["audio"]["sha256"] == sha256_file(weights)

    # the new cache entry: its own provenance, same layout, different tokens than stage 1's
    cache = Cache.open(run_dir / "cache.zarr")
    assert ("audio", entry) in cache.features()
    new, old = cache.feature_reader("audio", entry), cache.feature_reader("audio", "test_ast")
    assert new.provenance["weights_sha256"] == sha256_file(weights)
    assert old.provenance["weights_sha256"] == "random-init"
    assert (new.theta, new.dim) == (old.theta, old.dim)
    idx = np.arange(cache.n)
    a, b = torch.zeros(cache.n, new.theta, new.dim), torch.zeros(cache.n, old.theta, old.dim)
    assert new.read(idx, a).all() and old.read(idx, b).all()
    assert not torch.allclose(a, b)

    # the fine-tuned student's tokens online equal the re-extracted ones (same Θ-Average)
    from mmkd.train.finetune_outputs import load_finetuned

    model, _ = load_finetuned(out)
    from mmkd.datasets.manifest import read_all
    from mmkd.extract.inputs import InputBuilder
    from mmkd.train.finetune_sources import source_sampler

    mmeta, samples = read_all(C.load(run_dir / "mmkd.yaml").data.manifest_dir)
    build = InputBuilder("audio", model.extractors["audio"].spec,
                         source_sampler(ft["sources"]["audio"]), mmeta,
                         C.load(run_dir / "mmkd.yaml").data.manifest_dir)
    with torch.no_grad():
        online = model._tokens("audio", {"fbank": build(samples[0])["fbank"][None]})
    assert torch.allclose(online[0], a[0], atol=2e-2, rtol=1e-2)

    # finished: a re-run resumes as done, re-extracts nothing, and reports the same numbers
    res2 = invoke("finetune", "--modalities", "audio,detection", "--epochs", "2", "--reextract",
                  "--workers", "0", "--cache", str(run_dir))
    text2 = " ".join(res2.output.split())
    assert "resumed from" in text2 and "0 written" in text2

    # stage 2 on the fine-tuned tokens, as the summary says
    from mmkd.train.stage2 import distill

    cfg = C.load(run_dir / "mmkd.yaml", [f"student.extractors.audio={entry}"])
    fit = distill(run_dir / "cache.zarr", cfg, run_dir / "students" / "karmma-on-ft",
                  modalities=["video", "audio"], device="cpu")
    assert fit.best_epoch == 1


def test_fine_tuned_student_starts_from_the_cached_tokens(run_dir):
    """Before any step, the extractor rebuilt from the cache provenance reproduces stage 1's
    tokens: the fine-tuning starts exactly where the cached student stands."""
    from mmkd.datasets.manifest import read_all
    from mmkd.extract.inputs import InputBuilder
    from mmkd.train.finetune_sources import load_extractor, read_source

    cfg = C.load(run_dir / "mmkd.yaml")
    cache = Cache.open(run_dir / "cache.zarr")
    src = read_source(cache, run_dir, cfg, "audio", "test_ast")
    ext = load_extractor(src).eval()
    mmeta, samples = read_all(cfg.data.manifest_dir)
    build = InputBuilder("audio", ext.spec, src.sampler, mmeta, cfg.data.manifest_dir)
    reader = cache.feature_reader("audio", "test_ast")
    cached = torch.zeros(2, reader.theta, reader.dim)
    reader.read(np.array([0, 1]), cached)
    from mmkd.extract.theta import theta_average

    with torch.no_grad():
        online = theta_average(ext({"fbank": torch.stack([build(s)["fbank"]
                                                          for s in samples[:2]])}), src.theta)
    assert torch.allclose(online, cached, atol=2e-2, rtol=1e-2)


def test_bad_modalities_and_missing_student(run_dir, tmp_path):
    res = runner.invoke(app, ["finetune", "--modalities", "flow", "--cache", str(run_dir)])
    assert isinstance(res.exception, MmkdError) and "choose among" in str(res.exception)
    res = runner.invoke(app, ["finetune", "--modalities", "audio", "--cache", str(run_dir),
                              "--from", str(tmp_path)])
    assert isinstance(res.exception, MmkdError) and "no stage-2 student" in str(res.exception)


def test_batches_join_raw_media_and_cache_by_sample_index(run_dir):
    """FinetuneBatches visits the samples in CacheBatches' order and returns the same cached
    tokens, labels and teacher logits; the decoded modality arrives as RawInputs."""
    from mmkd.cache.loader import CacheBatches
    from mmkd.datasets.manifest import read_all
    from mmkd.extract.extractors import get_spec
    from mmkd.extract.inputs import InputBuilder
    from mmkd.train.finetune_data import FinetuneBatches, RawInputs
    from mmkd.train.finetune_sources import read_source

    cfg = C.load(run_dir / "mmkd.yaml")
    cache = Cache.open(run_dir / "cache.zarr")
    mmeta, samples = read_all(cfg.data.manifest_dir)
    src = read_source(cache, run_dir, cfg, "audio", "test_ast")
    build = InputBuilder("audio", get_spec("test_ast"), src.sampler, mmeta, cfg.data.manifest_dir)
    common = dict(split="val", batch_size=3, shuffle=True, seed=4,
                  needs=BatchNeeds(logits=("teacher",)))
    ft = FinetuneBatches(cache, samples, {"audio": build}, {"video": "test_swin3d"}, workers=0,
                         **common)
    ref = CacheBatches(cache, {"video": "test_swin3d", "audio": "test_ast"}, **common)
    for epoch in (0, 1):
        ft.set_epoch(epoch)
        ref.set_epoch(epoch)
        n = 0
        for a, b in zip(ft, ref, strict=True):  # both reuse token buffers: compare step by step
            n += 1
            assert torch.equal(a["index"], b["index"])
            assert torch.equal(a["tokens"]["video"], b["tokens"]["video"])
            assert torch.equal(a["labels"]["verb"], b["labels"]["verb"])
            assert torch.equal(a["teachers"]["teacher"]["logits"]["verb"],
                               b["teachers"]["teacher"]["logits"]["verb"])
            assert isinstance(a["tokens"]["audio"], RawInputs)
            assert torch.equal(a["present"]["audio"], b["present"]["audio"])
        assert n == len(ft) == len(ref)


def test_flip_flags_set_augment_hflip_in_pretrain_and_finetune(run_dir):
    """The demo's labels name a direction: flips stay off unless --flip asks for them."""
    assert json.loads((run_dir / "students" / "karmma" / "meta.json").read_text()) \
        .get("config", {}).get("augment", {}).get("hflip") is None
    for flag, want in (("--flip", True), ("--no-flip", False)):
        invoke("finetune", "--modalities", "video", "--epochs", "1", "--workers", "0", flag,
               "--name", f"ft{flag}", "--cache", str(run_dir))
        meta = json.loads((run_dir / "students" / f"ft{flag}" / "meta.json").read_text())
        assert meta["finetune"]["flip"] is want and meta["config"]["augment"]["hflip"] is want
        invoke("pretrain", "--modality", "video", "--extractor", "test_swin3d", "--epochs", "1",
               "--workers", "0", "--stream", flag, "--out", str(run_dir / f"pre{flag}"),
               "--set", "pretrain.train.batch_size=2", "--set", "pretrain.train.warmup_epochs=0",
               "--cache", str(run_dir))
        meta = json.loads((run_dir / f"pre{flag}" / ".video-test_swin3d" / "meta.json")
                          .read_text())
        assert meta["flip"] is want
    invoke("finetune", "--modalities", "video", "--epochs", "1", "--workers", "0",
           "--name", "ft-default", "--cache", str(run_dir))
    meta = json.loads((run_dir / "students" / "ft-default" / "meta.json").read_text())
    assert meta["finetune"]["flip"] is False  # demo: open/close differ by direction


def test_finetune_each_seed_of_a_seeded_student(run_dir, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    invoke("distill", "--method", "baseline-delta", "--seeds", "0,1", "--cache", str(run))
    invoke("finetune", "--modalities", "audio", "--from", str(run / "students" / "baseline-delta"),
           "--seeds", "0,1", "--epochs", "1", "--reextract", "--cache", str(run))
    out = run / "students" / "baseline-delta-ft-audio"
    for s in (0, 1):
        meta = json.loads((out / f"seed-{s}" / "meta.json").read_text())
        assert meta["config"]["student"]["train"]["seed"] == s
        # each seed's tokens get their own cache entry, which its fusion block reads
        assert meta["features"]["audio"] == f"test_ast+ft-baseline-delta-ft-audio-seed-{s}"
    assert {e for m, e in Cache.open(run / "cache.zarr").features() if m == "audio"} >= {
        f"test_ast+ft-baseline-delta-ft-audio-seed-{s}" for s in (0, 1)}
    with pytest.raises(MmkdError, match="seed-2: no stage-2 student"):
        invoke("finetune", "--modalities", "audio", "--from",
               str(run / "students" / "baseline-delta"), "--seeds", "2", "--cache", str(run))


def test_cmpt_end_to_end_with_lora_and_encoder_proxies(run_dir):
    from safetensors.torch import load_file

    from mmkd.extract.extractors import create_extractor

    invoke("distill", "--method", "cmpt", "--cache", str(run_dir))
    res = invoke("finetune", "--method", "cmpt", "--modalities", "audio,video", "--epochs", "1",
                 "--workers", "0", "--reextract", "--cache", str(run_dir))
    out = run_dir / "students" / "cmpt-ft-audio+video"
    text = " ".join(res.output.split())
    ft = json.loads((out / "meta.json").read_text())["finetune"]
    n = ft["parameters"]
    assert 0 < n["trainable"] < n["total"]
    assert "trainable parameters" in text and f"{n['trainable']:,} of {n['total']:,}" in text
    assert ft["method"] == "cmpt" and ft["lora"]["rank"] == 1 and ft["lora"]["alpha"] == 1
    assert ft["lora"]["layers"]["audio"] > 0 and ft["lora"]["layers"]["video"] > 0
    assert ft["lora"]["encoder_proxies"] == ["audio"]  # AST: yes; the Swin: fusion-level
    # LoRA merged: plain extractor weights; the AST's proxies beside them
    audio = load_file(str(out / "extractors" / "audio.safetensors"))
    assert not any("lora" in k or "base_layer" in k for k in audio)
    create_extractor("test_ast", weights=out / "extractors" / "audio.safetensors")
    assert (out / "extractors" / "audio.proxies.safetensors").exists()
    assert not (out / "extractors" / "video.proxies.safetensors").exists()
    assert "re-extracted audio/test_ast+ft-cmpt-ft-audio+video" in text
    from mmkd.train.finetune_outputs import load_finetuned

    model, _ = load_finetuned(out)
    assert list(model.encoder_proxies) == ["audio"]
    res = runner.invoke(app, ["finetune", "--method", "cmpt", "--modalities", "audio",
                              "--from", str(run_dir / "students" / "karmma"),
                              "--cache", str(run_dir)])
    assert isinstance(res.exception, MmkdError) and "mmkd distill --method cmpt" in str(
        res.exception)
