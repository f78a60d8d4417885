"""STLT against a separate restatement of the official code (official_stlt): the released
checkpoint layout loads with no missing/unexpected keys, and the backbone's outputs and the
detection reader's inputs match the official ones."""

import json

import numpy as np
import pytest
import torch

from helpers import extract_media as em
from helpers import official_stlt as off
from mmkd.errors import MmkdError
from mmkd.extract.extractors import create_extractor, get_spec
from mmkd.extract.extractors.base import get_family
from mmkd.extract.readers import detection
from mmkd.extract.sampling import ClipSampler

torch.set_num_threads(1)
AG = {name: i for i, name in enumerate(detection.VOCABULARIES["action_genome"].categories)}
SMALL = {"hidden_size": 32, "num_attention_heads": 2, "num_spatial_layers": 2,
         "num_temporal_layers": 3}
SMALL_ARCH = {"spatial_layers": 2, "temporal_layers": 3, "num_heads": 2, "positions": 256,
              "dropout": 0.1}


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def official_model(categories: int, **cfg) -> off.Stlt:
    """Official layout with every float tensor randomised (a swapped key cannot hide)."""
    torch.manual_seed(1)
    model = off.Stlt(off.Config(categories, **cfg)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)  # about the scale of trained weights
    return model


def random_frames(rng: np.random.Generator, n: int, names: list[str], w: int, h: int,
                  scored: bool) -> list[dict]:
    frames = []
    for _ in range(n):
        objs = []
        for _ in range(int(rng.integers(0, 5))):  # 0 boxes: an "empty" frame
            x1, x2 = rng.uniform(-5, w + 5, 2)
            y1, y2 = rng.uniform(-5, h + 5, 2)
            objs.append({"category": str(rng.choice(names)), "x1": x1, "y1": y1, "x2": x2,
                         "y2": y2, "score": float(rng.uniform(0.2, 1)) if scored else 1.0})
        frames.append({"frame_objects": objs})
    return frames


def ours_from(ref: off.Stlt, tmp_path, name: str, state=None, **overrides):
    path = tmp_path / "official.pt"
    torch.save(ref.state_dict() if state is None else state, path)
    return create_extractor(name, weights=path, **overrides)


@pytest.mark.parametrize("name,categories", [("stlt_l12", 4), ("stlt_l12_ag", 38),
                                             ("stlt_l9", 4)])
def test_official_state_dict_fits_exactly(name, categories):
    spec = get_spec(name)
    layers = {"num_spatial_layers": spec.arch["spatial_layers"],
              "num_temporal_layers": spec.arch["temporal_layers"]}
    with torch.device("meta"):
        official = off.Stlt(off.Config(categories, **layers)).state_dict()
        ours = get_family("stlt").build(spec)
    converted = ours.convert_state_dict(official)
    own = ours.state_dict()
    assert set(converted) == set(own)
    assert all(converted[k].shape == own[k].shape for k in own)
    assert spec.dim == 768 and ours.frame_embed.position_embeddings.num_embeddings == 256
    assert ours.object_embed.layer_norm.eps == 1e-12 and ours.frame_embed.layer_norm.eps == 1e-12


def test_wrong_vocabulary_names_the_right_extractor():
    with torch.device("meta"):
        official = off.Stlt(off.Config(38, num_spatial_layers=4)).state_dict()
        ours = get_family("stlt").build(get_spec("stlt_l12"))
    with pytest.raises(MmkdError, match="38 categories.*action_genome vocabulary"):
        ours.convert_state_dict(official)


def test_unknown_vocabulary_is_refused():
    with pytest.raises(MmkdError, match="unknown vocabulary 'coco'"):
        create_extractor("test_stlt", random_init=True, vocabulary="coco")


def test_something_else_forward_equals_official(tmp_path):
    rng = np.random.default_rng(0)
    ref = official_model(4, **SMALL)
    ours = ours_from(ref, tmp_path, "test_stlt", arch=SMALL_ARCH)
    frames = off.prepare_something([[{"category": c, "box2d": o} for c, o in zip(
        rng.choice(["hand", "cup", "handle", "pen"], 4),
        [{"x1": a, "y1": b, "x2": a + 9, "y2": b + 7} for a, b in rng.uniform(0, 60, (4, 2))],
        strict=True)][:int(rng.integers(0, 5))] for _ in range(12)])
    items = [off.item(frames, idx, (64, 48), off.SOMETHING, off.SOMETHING_FRAMES, 4)
             for idx in ([0, 2, 3, 5, 7, 8, 10, 11], [1, 1, 4, 6, 6, 9, 11, 11])]
    batch = off.collate(items, off.SOMETHING, with_scores=False)
    assert (batch["frame_types"] == off.SOMETHING_FRAMES["empty"]).any()
    with torch.inference_mode():
        want = ref.backbone(batch).transpose(0, 1)[:, :-1]  # the T frames before "extract"
        got = ours({k: batch[k] for k in ("boxes", "categories", "frame_types")})
    assert got.shape == (2, 8, 32)
    assert rel_err(got, want) <= 1e-5


def test_action_genome_forward_with_scores_and_padded_frames(tmp_path):
    """Scores enter; in an official batch padded after the extract frame, every real frame's
    output is unchanged (the causal mask hides later frames), so no frame mask is needed."""
    rng = np.random.default_rng(1)
    ref = official_model(38, **SMALL)
    ours = ours_from(ref, tmp_path, "test_stlt", arch=SMALL_ARCH, vocabulary="action_genome",
                     max_objects=5)
    frames = random_frames(rng, 10, list(AG)[2:], 80, 60, scored=True)
    short, full = ([0, 3, 5, 9], [0, 1, 2, 4, 6, 7, 8, 9])
    items = [off.item(frames, idx, (80, 60), AG, off.ACTION_GENOME_FRAMES, 5)
             for idx in (full, short)]
    batch = off.collate(items, AG, with_scores=True)
    with torch.inference_mode():
        want = ref.backbone(batch).transpose(0, 1)
        keys = ("boxes", "categories", "frame_types", "scores")
        got = ours({k: batch[k] for k in keys})
        alone = ours({k: batch[k][1:, :len(short) + 1] for k in keys})
    assert rel_err(got[0], want[0, :-1]) <= 1e-5
    assert rel_err(got[1, :len(short)], want[1, :len(short)]) <= 1e-5
    assert rel_err(alone[0], want[1, :len(short)]) <= 1e-5


def test_released_variants_load(tmp_path):
    """Backbone-only files (--save_backbone_path), the earlier `stlt_backbone.` prefix and
    Something-Else files without score embeddings load; so does DataParallel's `module.`."""
    ref = official_model(4, **SMALL)
    batch = off.collate([off.item(random_frames(np.random.default_rng(2), 6, ["hand", "object"],
                                                64, 48, False), list(range(6)), (64, 48),
                                  off.SOMETHING, off.SOMETHING_FRAMES, 4)], off.SOMETHING, False)
    with torch.inference_mode():
        want = ref.backbone(batch).transpose(0, 1)[:, :-1]
    full = ref.state_dict()
    variants = {
        "backbone": ref.backbone.state_dict(),
        "stlt_backbone": {k.replace("backbone.", "stlt_backbone.", 1): v for k, v in full.items()},
        "no scores": {k: v for k, v in full.items() if "score_embeddings" not in k},
        "module": {f"module.{k}": v for k, v in full.items()},
    }
    for state in variants.values():
        ours = ours_from(ref, tmp_path, "test_stlt", state=state, arch=SMALL_ARCH)
        with torch.inference_mode():
            got = ours({k: batch[k] for k in ("boxes", "categories", "frame_types")})
        assert rel_err(got, want) <= 1e-5


@pytest.mark.parametrize("vocabulary", ["something_else", "action_genome"])
def test_reader_gives_the_official_inputs(vocabulary, tmp_path):
    """Box JSON -> read_layout equals the official conversion + StltDataset for the frames the
    clip picked: frame types, [CLS] slot, fix_box, categories, scores (up to box order);
    Something-Else keeps every box whatever its score, Action Genome those of score >= 0.5."""
    vocab = detection.VOCABULARIES[vocabulary]
    names = ["hand", "handle", "cup", "knife"] if vocabulary == "something_else" else \
        ["person", "cup/glass/bottle", "chair", "sofa/couch"]
    rng = np.random.default_rng(3)
    w, h, n = 64, 48, 40
    raw = {"P01_01": []}
    labels_per_frame = []
    for i in range(1, n + 1):
        labels = [{"box2d": {"x1": float(a), "y1": float(b), "x2": float(c), "y2": float(d)},
                   "category": str(rng.choice(names)), "score": float(rng.uniform(0, 1))}
                  for a, b, c, d in rng.uniform(-4, 70, (int(rng.integers(0, 4)), 4))]
        labels_per_frame.append(labels)
        raw["P01_01"].append({"name": f"P01_01/frame_{i:010d}.jpg", "labels": labels})
    path = tmp_path / "boxes.json"
    path.write_text(json.dumps(raw))
    media = {"key": "P01_01", "width": w, "height": h}
    sample = em.sample("s", "P01_01", 0.1, 1.2, 30, media)
    clip, got = detection.read_layout(path, media, sample, ClipSampler(8, 2, "k400"), 3, vocab)
    assert {k: v.dtype for k, v in got.items()} == {
        "boxes": np.float32, "categories": np.int64, "frame_types": np.int64,
        **({"scores": np.float32} if vocab.uses_scores else {})}
    idx = (np.floor(clip.times_s * 30).astype(int)).tolist()  # frame k+1 is list index k
    if vocabulary == "something_else":
        frames, ids, types = off.prepare_something(labels_per_frame), off.SOMETHING, \
            off.SOMETHING_FRAMES
    else:
        frames = [{"frame_objects": [{"category": lab["category"], "score": lab["score"],
                                      **lab["box2d"]} for lab in labels]}
                  for labels in labels_per_frame]
        ids, types = AG, off.ACTION_GENOME_FRAMES
    want = off.item(frames, idx, (w, h), ids, types, 3)
    np.testing.assert_array_equal(got["frame_types"], want["frame_types"].numpy())
    scores = got.get("scores", np.where(got["categories"] > 0, 1.0, 0.0))
    for t in range(len(idx) + 1):
        ours = sorted(zip(got["categories"][t].tolist(), got["boxes"][t].tolist(),
                          scores[t].tolist(), strict=True))
        theirs = sorted(zip(want["categories"][t].tolist(), want["boxes"][t].tolist(),
                            want["scores"][t].tolist(), strict=True))
        assert ours == theirs
    assert len(set(want["frame_types"].tolist())) == 3  # regular, empty and extract all seen


def test_unknown_action_genome_category_is_a_media_error(tmp_path):
    path = em.write_boxes(tmp_path / "boxes.json", {"P01_01": 40})
    media = {"key": "P01_01", "width": 64, "height": 48}
    with pytest.raises(detection.MediaError, match="'cup' is not in the action_genome vocabulary"):
        detection.read_layout(path, media, em.sample("s", "P01_01", 0.1, 1.2, 30, media),
                              ClipSampler(8, 2, "k400"), 4, detection.VOCABULARIES["action_genome"])


@pytest.mark.slow
@pytest.mark.parametrize("name,categories", [("stlt_l12", 4), ("stlt_l12_ag", 38)])
def test_released_size_equals_official(name, categories, tmp_path):
    """At the released size (768 wide, 4 + 8 layers, 16 frames): a full official file loads
    through create_extractor and gives the official outputs."""
    ref = official_model(categories)
    ours = ours_from(ref, tmp_path, name)
    vocab = detection.VOCABULARIES[ours.spec.vocabulary]
    rng = np.random.default_rng(4)
    frames = random_frames(rng, 40, list(vocab.categories[1:]), 320, 240, vocab.uses_scores)
    frames = [{"frame_objects": [o for o in f["frame_objects"] if o["category"] != "cls"]}
              for f in frames]
    ids = {c: i for i, c in enumerate(vocab.categories)}
    items = [off.item(frames, sorted(rng.choice(40, 16).tolist()), (320, 240), ids,
                      vocab.frame_types, 4) for _ in range(2)]
    batch = off.collate(items, ids, with_scores=vocab.uses_scores)
    with torch.inference_mode():
        want = ref.backbone(batch).transpose(0, 1)[:, :-1]
        got = ours({k: batch[k] for k in ("boxes", "categories", "frame_types", "scores")
                    if k in batch})
    assert got.shape == (2, 16, 768) and rel_err(got, want) <= 1e-5


@pytest.mark.parametrize("name", ["small_stlt", "test_stlt", "stlt_l9"])
def test_random_init_tokens_differ_between_clips(name):
    """Trained from scratch, STLT must start with tokens that depend on the boxes: with
    PyTorch's N(0, 1) embeddings their variance over frame positions was 20-270× that over
    clips (training never left chance on small data); BERT's init keeps it under 10×."""
    torch.manual_seed(0)
    model = create_extractor(name, random_init=True)
    with torch.inference_mode():
        tok = model(em.dummy_inputs(name, batch=16))
    over_positions, over_clips = tok.mean(0).var(0).mean(), tok.mean(1).var(0).mean()
    assert over_positions < 10 * over_clips
