"""mmkd.train.pretrain: extractors trained on the run's own clips, exported for `mmkd extract`."""

import copy
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from helpers import extract_media as em
from mmkd import config as C
from mmkd.errors import MmkdError
from mmkd.extract.extractors import create_extractor
from mmkd.train.pretrain import (
    ExtractorClassifier,
    default_extractors,
    input_key,
    prepare_inputs,
    train_extractor,
)
from mmkd.train.pretrain_data import ClipBatches, DecodedClips


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run over tiny real media (3 videos: 2 train clips, 4 val clips) with test extractors."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("pretrain")
    manifest = em.build_dataset(root / "data", n_videos=3, seconds=2.6)
    cfg = C.run_preset("demo")
    cfg.data.manifest_dir = str(manifest)
    cfg.data.heads = ["verb"]
    cfg.clip.num_frames, cfg.clip.sampling = 4, "k400"  # uniform reaches past these videos
    cfg.extract.workers = 0
    cfg.teacher.extractors["video"] = cfg.student.extractors["video"] = "test_swin3d"
    cfg.pretrain.train = C.TrainConfig(epochs=2, batch_size=2, lr_min=1e-4, lr_max=1e-3,
                                       warmup_epochs=0)
    return root / "run", cfg


def test_classifier_pools_tokens_and_skips_decay_on_norms_and_biases():
    ext = create_extractor("test_swin3d", random_init=True).requires_grad_(True)
    model = ExtractorClassifier(ext, "video", {"verb": 3, "noun": 5})
    out = model({"video": {"frames": torch.randn(2, 3, 4, 32, 32)}}, {})
    assert {h: tuple(v.shape) for h, v in out.logits.items()} == {"verb": (2, 3), "noun": (2, 5)}
    skip = model.no_weight_decay()
    assert "heads.verb.bias" in skip and "heads.verb.weight" not in skip
    assert any(n.endswith("relative_position_bias_table") for n in skip)


def test_clip_batches_order_depends_on_seed_and_epoch_only():
    tensors = {i: {"frames": torch.full((1,), float(i))} for i in (3, 5, 7, 9, 11)}
    ds = DecodedClips("video", tensors, None, seed=0)
    labels = {"verb": np.arange(12) % 2}
    b = ClipBatches(ds, np.array(sorted(tensors)), labels, "video", 2, True, seed=1)
    assert len(b) == 2  # the last partial batch of a shuffled split is dropped
    b.set_epoch(0)
    first = [x["index"].tolist() for x in b]
    again = [x["index"].tolist() for x in b]
    b.set_epoch(1)
    other = [x["index"].tolist() for x in b]
    assert first == again and first != other
    batch = next(iter(b))
    assert batch["tokens"]["video"]["frames"][:, 0].tolist() == batch["index"].float().tolist()
    assert batch["labels"]["verb"].tolist() == (batch["index"] % 2).tolist()
    val = ClipBatches(ds, np.array(sorted(tensors)), labels, "video", 2, False, seed=1)
    assert [x["index"].tolist() for x in val] == [[3, 5], [7, 9], [11]]


def test_teacher_and_student_share_decoded_clips_only_with_equal_inputs():
    assert input_key("demo_swin3d_teacher") == input_key("demo_swin3d_student")
    assert input_key("test_swin3d") != input_key("demo_swin3d_student")
    assert input_key("demo_ast_student") != input_key("demo_swin3d_teacher_audio")


def test_pretrain_exports_weights_that_extract_loads_and_resumes(run):
    run_dir, cfg = run
    assert default_extractors(cfg, "video") == ["test_swin3d"]
    calls = []
    inputs = prepare_inputs(run_dir, cfg, "video", "test_swin3d",
                            on_start=lambda n: calls.append(n))
    assert calls == [6] and len(inputs.train_idx) == 2 and len(inputs.val_idx) == 4
    res = train_extractor(run_dir, cfg, inputs, "test_swin3d")
    assert res.weights == run_dir / "pretrained" / "video-test_swin3d.safetensors"
    assert res.fit.best_epoch in (1, 2) and (res.train_clips, res.val_clips) == (2, 4)
    trained = create_extractor("test_swin3d", weights=res.weights)
    fresh = create_extractor("test_swin3d", random_init=True)
    x = {"frames": torch.randn(1, 3, 4, 32, 32)}
    with torch.no_grad():
        assert not torch.allclose(trained(x), fresh(x))  # it trained: not the random init
    # a second call resumes the finished run: no epoch is trained again, same weights
    again = train_extractor(run_dir, cfg, inputs, "test_swin3d")
    assert again.fit.resumed_from == {"epoch": 3, "step": 0, "epochs": 2}  # all 2 were done
    assert again.sha256 == res.sha256
    with pytest.raises(MmkdError, match="other inputs"):
        train_extractor(run_dir, cfg, inputs, "demo_swin3d_student")


def test_broken_media_are_left_out_and_counted(run, tmp_path):
    run_dir, cfg = run
    data = tmp_path / "data"
    shutil.copytree(Path(cfg.data.manifest_dir).parent, data)
    shutil.rmtree(data / "media" / "P01" / "rgb_frames" / "P01_02")  # 2 val clips lose video
    meta = yaml.safe_load(yaml.safe_dump(C.to_dict(cfg)))
    meta["data"]["manifest_dir"] = str(data / "manifest")
    broken = C.from_dict(C.RunConfig, meta)
    inputs = prepare_inputs(run_dir, broken, "video", "test_swin3d")
    assert len(inputs.val_idx) == 2 and sum(inputs.failures.values()) == 2
    assert "RGB frame folder not found" in next(iter(inputs.failures))
    streamed = prepare_inputs(run_dir, broken, "video", "test_swin3d", in_ram=False)
    batches = ClipBatches(streamed.val, streamed.val_idx, streamed.labels, "video", 4, False, 0)
    assert [b["index"].tolist() for b in batches] == [inputs.val_idx.tolist()]
    assert sum(batches.failures.values()) == 2  # counted once per pass, as in RAM
    assert [b["index"].tolist() for b in batches] == [inputs.val_idx.tolist()]
    assert sum(batches.failures.values()) == 2


def test_a_modality_outside_the_run_is_refused(run):
    run_dir, cfg = run
    with pytest.raises(MmkdError, match="not in this run's data.modalities"):
        prepare_inputs(run_dir, cfg, "detection", "test_stlt")


def test_detection_pretrains_with_integer_inputs_kept_integer(run):
    """Boxes are held as float16, category and frame-type ids stay int64 (an id is no float)."""
    run_dir, cfg = run
    cfg = copy.deepcopy(cfg)
    cfg.data.modalities = [*cfg.data.modalities, "detection"]
    cfg.pretrain.train.epochs = 1
    inputs = prepare_inputs(run_dir, cfg, "detection", "test_stlt")
    held = inputs.train.tensors[int(inputs.train_idx[0])]
    assert held["boxes"].dtype == torch.float16
    assert held["categories"].dtype == held["frame_types"].dtype == torch.int64
    _, x, _ = inputs.train[int(inputs.train_idx[0])]
    assert x["detection"]["categories"].dtype == torch.int64
    res = train_extractor(run_dir, cfg, inputs, "test_stlt")
    assert res.fit.best_epoch == 1 and res.weights.is_file()


@pytest.mark.parametrize("in_ram", [True, False], ids=["in_ram", "stream"])
@pytest.mark.parametrize("modality,extractor", [
    ("video", "test_swin3d"), ("flow", "test_swin3d"), ("audio", "test_swin3d_audio"),
    ("audio", "test_ast"), ("detection", "test_stlt")],
    ids=["video", "flow", "audio-logmel", "audio-fbank", "detection"])
def test_every_input_kind_reaches_the_model_with_stage_1s_dtypes(run, monkeypatch, modality,
                                                                 extractor, in_ram):
    """Held in RAM as float16 or streamed, the model sees what stage 1's reader gives the frozen
    extractor: float32 signals, int64 ids."""
    from mmkd.datasets.manifest import read_all
    from mmkd.extract.extractors import get_spec
    from mmkd.extract.inputs import InputBuilder
    from mmkd.extract.sampling import ClipSampler
    from mmkd.train import pretrain

    run_dir, cfg = run
    cfg = copy.deepcopy(cfg)
    cfg.data.modalities = ["video", "flow", "audio", "detection"]
    cfg.pretrain.train.epochs = 1
    meta, samples = read_all(Path(cfg.data.manifest_dir))
    build = InputBuilder(modality, get_spec(extractor), ClipSampler(
        cfg.clip.num_frames, cfg.clip.frame_stride, cfg.clip.sampling), meta, cfg.data.manifest_dir)
    expected = {k: v.dtype for k, v in build(samples[0]).items()}
    seen = []
    forward = pretrain.ExtractorClassifier.forward

    def spy(self, tokens, present):
        seen.append({k: v.dtype for k, v in tokens[modality].items()})
        return forward(self, tokens, present)

    monkeypatch.setattr(pretrain.ExtractorClassifier, "forward", spy)
    inputs = prepare_inputs(run_dir, cfg, modality, extractor, in_ram=in_ram)
    res = train_extractor(run_dir / f"dtypes-{in_ram}", cfg, inputs, extractor)
    assert res.weights.is_file() and seen
    assert all(s == expected for s in seen), (seen[0], expected)
    assert set(expected.values()) <= {torch.float32, torch.int64}


@pytest.mark.parametrize("dataset,hflip,flip", [
    ("custom", None, False), ("epic100", None, True), ("epic100", False, False),
    ("custom", True, True)])
def test_flips_follow_augment_hflip(run, dataset, hflip, flip):
    """A custom dataset's labels may name a side: no flips unless augment.hflip says so."""
    run_dir, cfg = run
    cfg = copy.deepcopy(cfg)
    cfg.data.dataset, cfg.augment.hflip = dataset, hflip
    for in_ram in (True, False):
        inputs = prepare_inputs(run_dir, cfg, "video", "test_swin3d", in_ram=in_ram)
        augment = inputs.train.augment if in_ram else inputs.train.augments["video"]
        assert inputs.flip is augment.flip is flip
