import pytest
import torch

from helpers.extract_media import dummy_inputs
from mmkd import registry
from mmkd.errors import MmkdError
from mmkd.extract.extractors import create_extractor, get_spec
from mmkd.extract.extractors.base import get_family
from mmkd.extract.input_kinds import example_inputs

torch.set_num_threads(1)

ALL = registry.extractors.list()  # every registered variant: a new one is tested here as is
SMALL = registry.extractors.list("test_*") + registry.extractors.list("demo_*_student")


def test_the_registry_holds_the_paper_demo_and_test_variants():
    assert {"swin3d_b", "ast_base", "stlt_l12", "demo_swin3d_teacher", "test_stlt"} <= set(ALL)


@pytest.mark.parametrize("name", ALL)
def test_every_variant_has_a_contract(name):
    spec = get_spec(name)
    assert spec.weights_source and spec.dim > 0 and spec.contract()


@pytest.mark.parametrize("name", ALL)
def test_every_variant_builds_with_the_token_grid_of_its_spec(name):
    """Built on the meta device (no memory, no weights), so the paper-sized ones are cheap;
    STLT reads its padding counts as numbers, so it runs on the CPU (half a second)."""
    spec = get_spec(name)
    device = "cpu" if spec.family == "stlt" else "meta"
    with torch.device(device), torch.inference_mode():
        model = get_family(spec.family).build(spec).eval()
        inputs = {k: v.to(device) for k, v in dummy_inputs(name).items()}
        assert tuple(model(inputs).shape) == (2, spec.n_tokens(8), spec.dim)


@pytest.mark.parametrize(("name", "k", "dim"), [("swin3d_b", 784, 1024), ("swin3d_t", 784, 768),
                                                 ("swin3d_b_audio", 784, 1024),
                                                 ("ast_base", 1214, 768)])
def test_paper_token_grids_on_meta_device(name, k, dim):
    """Video Swin on 32×224×224: a 16×7×7 grid; AST on 1024×128 fbank: 12×101 + 2 tokens."""
    spec = get_spec(name)
    assert spec.n_tokens(32) == k and spec.dim == dim
    with torch.device("meta"):
        model = get_family(spec.family).build(spec)
        inp = {key: v.to("meta") for key, v in example_inputs(spec, 32, 1).items()}
        assert tuple(model(inp).shape) == (1, k, dim)


@pytest.mark.parametrize("name", SMALL)
def test_forward_shape_matches_spec(name):
    model = create_extractor(name, random_init=True)
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    with torch.inference_mode():
        y = model(dummy_inputs(name))
    assert y.shape == (2, model.spec.n_tokens(8), model.spec.dim) and torch.isfinite(y).all()


def test_stlt_depth_and_padding_invariance():
    assert len(create_extractor("stlt_l9", random_init=True).temporal.layers) == 6
    assert len(create_extractor("stlt_l12", random_init=True).spatial.layers) == 4
    model = create_extractor("test_stlt", random_init=True)
    inp = dummy_inputs("test_stlt", batch=1)
    inp["categories"][..., -1] = 0  # last slot is padding: its box must not matter
    with torch.inference_mode():
        a = model(inp)
        inp["boxes"][..., -1, :] = 0.5
        b = model(inp)
        inp["categories"][:] = 0  # the all-zero filler of a missing sample stays finite
        c = model(inp)
    torch.testing.assert_close(a, b)
    assert torch.isfinite(c).all()


def test_no_silent_random_init():
    with pytest.raises(MmkdError, match="--random-init"):
        create_extractor("test_swin3d")
    with pytest.raises(MmkdError, match="unknown extractor"):
        create_extractor("swin3d_x", random_init=True)
    a = create_extractor("test_ast", random_init=True)
    b = create_extractor("test_ast", random_init=True)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                  b.state_dict().values(), strict=True))


def test_spec_overrides():
    model = create_extractor("test_ast", random_init=True, target_frames=64)
    assert model.spec.target_frames == 64 and model.spec.n_tokens(0) == 2 * 5 + 2
    with pytest.raises(MmkdError, match="unknown spec fields"):
        create_extractor("test_ast", random_init=True, frames=3)
