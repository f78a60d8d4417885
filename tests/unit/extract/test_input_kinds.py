"""Each input kind's record: every family's kind has one, and its examples have the reader's
shapes (the extractor tests feed them to every variant)."""

import torch

from mmkd import registry
from mmkd.extract.extractors import get_spec
from mmkd.extract.input_kinds import INPUT_KINDS, example_inputs
from mmkd.extract.readers.detection import VOCABULARIES


def test_examples_follow_the_contracts():
    x = example_inputs(get_spec("test_ast"), 4, 2)
    assert x["fbank"].shape == (2, 48, 32)
    x = example_inputs(get_spec("test_stlt"), 5, 1)
    # 5 frames + the extract frame; 4 boxes + the [CLS] box; no padding slot in sampled frames
    assert x["boxes"].shape == (1, 6, 5, 4) and x["categories"][:, :5].min() >= 1
    assert int(x["categories"].max()) < len(VOCABULARIES[get_spec("test_stlt").vocabulary].categories)
    a, b = (example_inputs(get_spec("test_swin3d"), 4, 2)["frames"] for _ in range(2))
    assert a.shape == (2, 3, 4, 32, 32) and torch.equal(a, b)  # seeded


def test_every_family_reads_a_known_kind():
    from mmkd.extract.extractors.base import get_family

    families = {get_spec(n).family for n in registry.extractors.list()}
    assert {get_family(f).input_kind for f in families} <= set(INPUT_KINDS)
