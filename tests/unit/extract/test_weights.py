"""Checkpoint loading: torchvision, official Video-Swin and AST layouts, written by the test
from random tiny models, must give the same tokens; files that do not fit must stop."""

import pytest
import torch
from safetensors.torch import save_file

from helpers.extract_media import dummy_inputs
from helpers.official_swin import official_swin_keys
from mmkd.errors import MmkdError
from mmkd.extract.extractors import create_extractor

torch.set_num_threads(1)


def tokens(model, name):
    torch.manual_seed(1)
    with torch.inference_mode():
        return model(dummy_inputs(name))


def reference(name):
    torch.manual_seed(123)  # different from create_extractor's seed: weights differ from default
    model = create_extractor(name, random_init=True)
    for p in model.parameters():
        p.data.normal_(0, 0.05)
    return model


def test_torchvision_state_dict(tmp_path):
    ref = reference("test_swin3d")
    tv = {k.removeprefix("backbone."): v for k, v in ref.state_dict().items()}
    tv["head.weight"], tv["head.bias"] = torch.zeros(400, 32), torch.zeros(400)  # as shipped
    torch.save(tv, tmp_path / "tv.pth")
    loaded = create_extractor("test_swin3d", weights=tmp_path / "tv.pth")
    torch.testing.assert_close(tokens(loaded, "test_swin3d"), tokens(ref, "test_swin3d"))


def test_official_video_swin_checkpoint(tmp_path):
    ref = reference("test_swin3d")
    tv = {k.removeprefix("backbone."): v for k, v in ref.state_dict().items()}
    torch.save({"meta": {"epoch": 30}, "state_dict": official_swin_keys(tv, (1, 1))},
               tmp_path / "official.pth")
    loaded = create_extractor("test_swin3d", weights=tmp_path / "official.pth")
    torch.testing.assert_close(tokens(loaded, "test_swin3d"), tokens(ref, "test_swin3d"))
    # the audio teacher is the same network: the same checkpoint loads
    audio = create_extractor("test_swin3d_audio", weights=tmp_path / "official.pth")
    torch.testing.assert_close(tokens(audio, "test_swin3d_audio"), tokens(ref, "test_swin3d"))


def test_official_ast_checkpoint_and_safetensors(tmp_path):
    ref = reference("test_ast")
    sd = {f"module.{k}": v for k, v in ref.state_dict().items()}  # module.v.*
    sd["module.v.head.weight"] = torch.zeros(527, 32)
    sd["module.mlp_head.0.weight"], sd["module.mlp_head.1.weight"] = torch.ones(32), torch.zeros(527, 32)
    torch.save(sd, tmp_path / "ast.pth")
    loaded = create_extractor("test_ast", weights=tmp_path / "ast.pth")
    torch.testing.assert_close(tokens(loaded, "test_ast"), tokens(ref, "test_ast"))
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, tmp_path / "ast.safetensors")
    loaded = create_extractor("test_ast", weights=tmp_path / "ast.safetensors")
    torch.testing.assert_close(tokens(loaded, "test_ast"), tokens(ref, "test_ast"))


def test_mismatch_lists_keys(tmp_path):
    sd = reference("test_swin3d").state_dict()
    sd = {k.removeprefix("backbone."): v for k, v in sd.items()}
    del sd["norm.weight"]
    sd["extra.weight"] = torch.zeros(3)
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(MmkdError, match=r"missing \(1\): backbone.norm.weight.*"
                                        r"unexpected \(1\): backbone.extra.weight"):
        create_extractor("test_swin3d", weights=tmp_path / "bad.pth")
    torch.save(reference("test_ast").state_dict(), tmp_path / "ast.pth")
    with pytest.raises(MmkdError, match="does not fit extractor test_swin3d"):
        create_extractor("test_swin3d", weights=tmp_path / "ast.pth")
    sd = reference("test_ast").state_dict()
    sd["v.pos_embed"] = torch.zeros(1, 7, 32)
    torch.save(sd, tmp_path / "shape.pth")
    with pytest.raises(MmkdError, match=r"shape mismatch \(1\): v.pos_embed"):
        create_extractor("test_ast", weights=tmp_path / "shape.pth")


def test_unreadable_files(tmp_path):
    with pytest.raises(MmkdError, match="not found"):
        create_extractor("test_ast", weights=tmp_path / "none.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(MmkdError, match="cannot read weights"):
        create_extractor("test_ast", weights=tmp_path / "junk.pth")
    # weights_only=True: a pickled arbitrary object is refused, not executed
    torch.save({"model": object()}, tmp_path / "pickle.pth")
    with pytest.raises(MmkdError, match="cannot read weights"):
        create_extractor("test_ast", weights=tmp_path / "pickle.pth")
