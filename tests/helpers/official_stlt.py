"""A reference for STLT's official layout, written for the tests from the facts of
gorjanradevski/revisiting-spatial-temporal-layouts (commit 213b322: src/modelling/models.py,
configs.py, datasets.py, utils/data_utils.py, create_something_datasets.py). The repository has no
licence file, so nothing is copied: this restates the official module tree and parameter names
(what its checkpoints hold), its sequence-first forward, masks and data preparation, independently
of mmkd's extractor, so that the equivalence tests compare two separate implementations.
"""

from __future__ import annotations

import torch
from torch import nn

SOMETHING = {"pad": 0, "hand": 1, "object": 2, "cls": 3}
SOMETHING_FRAMES = {"pad": 0, "start": 1, "regular": 2, "empty": 3, "extract": 4}
ACTION_GENOME_FRAMES = {"pad": 0, "regular": 1, "extract": 2, "empty": 3}


class Config:
    def __init__(self, unique_categories: int, num_classes: int = 7, hidden_size: int = 768,
                 num_attention_heads: int = 12, num_spatial_layers: int = 4,
                 num_temporal_layers: int = 8, layout_num_frames: int = 256):
        self.unique_categories, self.num_classes = unique_categories, num_classes
        self.hidden_size, self.num_attention_heads = hidden_size, num_attention_heads
        self.num_spatial_layers, self.num_temporal_layers = num_spatial_layers, num_temporal_layers
        self.layout_num_frames = layout_num_frames
        self.hidden_dropout_prob, self.layer_norm_eps = 0.1, 1e-12


def _layer(c: Config) -> nn.TransformerEncoderLayer:  # sequence first, post-norm, eps 1e-5
    return nn.TransformerEncoderLayer(c.hidden_size, c.num_attention_heads, c.hidden_size * 4,
                                      c.hidden_dropout_prob, activation="gelu")


class CategoryBoxEmbeddings(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.category_embeddings = nn.Embedding(c.unique_categories, c.hidden_size, padding_idx=0)
        self.box_embedding = nn.Linear(4, c.hidden_size)
        self.score_embeddings = nn.Linear(1, c.hidden_size)
        self.layer_norm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.hidden_dropout_prob)

    def forward(self, batch):
        e = self.category_embeddings(batch["categories"]) + self.box_embedding(batch["boxes"])
        if "scores" in batch:
            e = e + self.score_embeddings(batch["scores"].unsqueeze(-1))
        return self.dropout(self.layer_norm(e))


class SpatialTransformer(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.category_box_embeddings = CategoryBoxEmbeddings(c)
        self.encoder_layer = _layer(c)  # kept as an attribute: its copy is in the state dict
        self.transformer = nn.TransformerEncoder(self.encoder_layer, c.num_spatial_layers,
                                                 enable_nested_tensor=False)

    def forward(self, batch):
        e = self.category_box_embeddings(batch)
        frames, boxes, hidden = e.shape[1:]
        out = self.transformer(e.flatten(0, 1).transpose(0, 1),
                               src_key_padding_mask=batch["src_key_padding_mask_boxes"].flatten(0, 1))
        return out.transpose(0, 1).reshape(-1, frames, boxes, hidden)[:, :, 0]


class FramesEmbeddings(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.layout_embedding = SpatialTransformer(c)
        self.position_embeddings = nn.Embedding(c.layout_num_frames, c.hidden_size)
        self.frame_type_embedding = nn.Embedding(5, c.hidden_size, padding_idx=0)
        self.layer_norm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.hidden_dropout_prob)
        self.register_buffer("position_ids", torch.arange(c.layout_num_frames).expand((1, -1)))

    def forward(self, batch):
        layouts = self.layout_embedding(batch)
        types = self.frame_type_embedding(batch["frame_types"])
        positions = self.position_embeddings(self.position_ids[:, :types.shape[1]])
        return self.dropout(self.layer_norm(layouts + positions + types))


class StltBackbone(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.frames_embeddings = FramesEmbeddings(c)
        self.transformer = nn.TransformerEncoder(_layer(c), c.num_temporal_layers,
                                                 enable_nested_tensor=False)

    def forward(self, batch):  # -> (frames, batch, hidden)
        e = self.frames_embeddings(batch).transpose(0, 1)
        n = e.shape[0]
        causal = ~(torch.triu(torch.ones(n, n)) == 1).transpose(0, 1)
        return self.transformer(e, mask=causal,
                                src_key_padding_mask=batch["src_key_padding_mask_frames"])


class ClassificationHead(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.fc1 = nn.Linear(c.hidden_size, c.hidden_size)
        self.layer_norm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.fc2 = nn.Linear(c.hidden_size, c.num_classes)


class Stlt(nn.Module):
    """What the official train.py saves: `torch.save(model.state_dict(), ...)`."""

    def __init__(self, c: Config):
        super().__init__()
        self.backbone = StltBackbone(c)
        self.prediction_head = ClassificationHead(c)


def prepare_something(video_labels: list[dict]) -> list[dict]:
    """create_something_datasets.py: Something-Else labels -> official frame objects."""
    return [{"frame_objects": [{"category": "hand" if "hand" in lab["category"] else "object",
                                **{k: lab["box2d"][k] for k in ("x1", "y1", "x2", "y2")},
                                "score": 1.0} for lab in frame]} for frame in video_labels]


def fix_box(box, size_hw):
    box = [max(0, int(b)) for b in box]
    if box[0] > box[2]:
        box[0], box[2] = box[2], box[0]
    if box[1] > box[3]:
        box[1], box[3] = box[3], box[1]
    for i, limit in ((0, size_hw[1]), (1, size_hw[0]), (2, size_hw[1]), (3, size_hw[0])):
        if box[i] >= limit:
            box[i] = limit - 1
    if box[0] == box[2] and box[0] == 0:
        box[2] = 1
    if box[1] == box[3] and box[1] == 0:
        box[3] = 1
    if box[0] == box[2]:
        box[0] -= 1
    if box[1] == box[3]:
        box[1] -= 1
    return box


def item(frames: list[dict], indices: list[int], size_wh: tuple[int, int], category2id: dict,
         frame2type: dict, max_num_objects: int, threshold: float = 0.5) -> dict:
    """StltDataset.__getitem__ for given frame indices."""
    video_size = torch.tensor(size_wh).repeat(2)
    boxes, categories, scores, frame_types = [], [], [], []
    for index in indices:
        frame = frames[index]
        frame_types.append(frame2type["empty" if not frame["frame_objects"] else "regular"])
        fb, fc, fs = [torch.tensor([0.0, 0.0, 1.0, 1.0])], [category2id["cls"]], [1.0]
        for el in frame["frame_objects"]:
            if el["score"] < threshold:
                continue
            box = fix_box([el["x1"], el["y1"], el["x2"], el["y2"]],
                          (video_size[1].item(), video_size[0].item()))
            fb.append(torch.tensor(box) / video_size)
            fc.append(category2id[el["category"]])
            fs.append(el["score"])
        while len(fb) != max_num_objects + 1:
            fb.append(torch.full((4,), 0.0))
            fc.append(0)
            fs.append(0.0)
        boxes.append(torch.stack(fb))
        categories.append(torch.tensor(fc))
        scores.append(torch.tensor(fs))
    extract_box = torch.zeros(max_num_objects + 1, 4)
    extract_box[0] = torch.tensor([0.0, 0.0, 1.0, 1.0])
    extract_category = torch.zeros(max_num_objects + 1, dtype=torch.long)
    extract_category[0] = category2id["cls"]
    extract_score = torch.zeros(max_num_objects + 1)
    extract_score[0] = 1.0
    boxes.append(extract_box)
    categories.append(extract_category)
    scores.append(extract_score)
    frame_types.append(frame2type["extract"])
    return {"categories": torch.stack(categories), "boxes": torch.stack(boxes),
            "scores": torch.stack(scores), "frame_types": torch.tensor(frame_types),
            "lengths": torch.tensor(len(categories))}


def collate(items: list[dict], category2id: dict, with_scores: bool) -> dict:
    """StltCollater: frames padded to the longest item (slot 0 stays the [CLS] box), masks."""
    n = max(len(it["frame_types"]) for it in items)

    def pad(key: str, row: torch.Tensor) -> torch.Tensor:
        out = row.repeat((len(items), n) + (1,) * row.dim())
        for i, it in enumerate(items):
            out[i, :len(it[key])] = it[key]
        return out

    slots = items[0]["categories"].shape[1]
    cls_categories = torch.zeros(slots, dtype=torch.long)
    cls_categories[0] = category2id["cls"]
    cls_boxes = torch.zeros(slots, 4)
    cls_boxes[0] = torch.tensor([0.0, 0.0, 1.0, 1.0])
    cls_scores = torch.zeros(slots)
    cls_scores[0] = 1.0
    batch = {"categories": pad("categories", cls_categories), "boxes": pad("boxes", cls_boxes),
             "frame_types": pad("frame_types", torch.tensor(0)),
             "lengths": torch.stack([it["lengths"] for it in items])}
    if with_scores:
        batch["scores"] = pad("scores", cls_scores)
    batch["src_key_padding_mask_boxes"] = batch["categories"] == 0
    batch["src_key_padding_mask_frames"] = batch["frame_types"] == 0
    return batch
