"""The official Video Swin (mmaction2) checkpoint layout, for the weight-loading tests."""

import torch


def official_swin_keys(tv: dict[str, torch.Tensor], depths) -> dict[str, torch.Tensor]:
    """The official Video-Swin-Transformer (mmaction2) checkpoint layout, spelled out."""
    out = {"backbone.patch_embed.proj.weight": tv["patch_embed.proj.weight"],
           "backbone.patch_embed.proj.bias": tv["patch_embed.proj.bias"],
           "backbone.patch_embed.norm.weight": tv["patch_embed.norm.weight"],
           "backbone.patch_embed.norm.bias": tv["patch_embed.norm.bias"],
           "backbone.norm.weight": tv["norm.weight"], "backbone.norm.bias": tv["norm.bias"],
           "cls_head.fc_cls.weight": torch.zeros(400, tv["norm.weight"].shape[0]),
           "cls_head.fc_cls.bias": torch.zeros(400)}
    official_block = {"norm1": "norm1", "attn.qkv": "attn.qkv", "attn.proj": "attn.proj",
                      "norm2": "norm2", "mlp.fc1": "mlp.0", "mlp.fc2": "mlp.3"}
    for s, depth in enumerate(depths):
        for i in range(depth):
            src, dst = f"features.{2 * s}.{i}", f"backbone.layers.{s}.blocks.{i}"
            for off, tvn in official_block.items():
                for p in ("weight", "bias"):
                    out[f"{dst}.{off}.{p}"] = tv[f"{src}.{tvn}.{p}"]
            out[f"{dst}.attn.relative_position_bias_table"] = \
                tv[f"{src}.attn.relative_position_bias_table"]
        if s < len(depths) - 1:
            ds = f"features.{2 * s + 1}"
            out[f"backbone.layers.{s}.downsample.reduction.weight"] = tv[f"{ds}.reduction.weight"]
            out[f"backbone.layers.{s}.downsample.norm.weight"] = tv[f"{ds}.norm.weight"]
            out[f"backbone.layers.{s}.downsample.norm.bias"] = tv[f"{ds}.norm.bias"]
    return out
