"""The "your own dataset" route through the real CLI at tiny size: generated stand-in clips →
`manifest custom` → `pretrain` (each modality, the small extractors' families) → `extract`."""

import torch
from typer.testing import CliRunner

from mmkd.cache import Cache
from mmkd.cli.app import app

EXTRACTORS = {"video": "test_convnet", "audio": "test_convnet_audio", "detection": "small_stlt"}


def run_cli(*args: str) -> str:
    res = CliRunner().invoke(app, list(args))
    assert res.exit_code == 0, res.output
    return "".join(res.output.split())  # rich wraps long lines anywhere


def test_generated_clips_pretrain_and_extract(tmp_path):
    torch.set_num_threads(1)
    data, run = tmp_path / "clips", tmp_path / "run"
    text = run_cli("demo-data", "--format", "custom", "--clips", "20", "--out", str(data))
    assert "mmkdmanifestcustom--csv" in text
    sets = ["data.modalities=[video,audio,detection]", "clip.num_frames=8",
            "clip.sampling=uniform", "extract.workers=0", "extract.theta=0",
            "pretrain.train.epochs=1", "pretrain.train.warmup_epochs=0",
            "pretrain.train.batch_size=4",
            *(f"{r}.extractors.{m}={e}" for r in ("teacher", "student")
              for m, e in EXTRACTORS.items())]
    run_cli("init", str(run), "--dataset", "custom", *[a for s in sets for a in ("--set", s)])
    run_cli("manifest", "custom", "--csv", str(data / "clips.csv"),
            "--classes", f"verb={data / 'verbs.txt'}", "--classes", f"noun={data / 'nouns.txt'}",
            "--out", str(run / "manifest"))
    for modality, name in EXTRACTORS.items():
        out = run_cli("pretrain", "--modality", modality, "--workers", "0", "--cache", str(run))
        assert "13/3" in out  # train/val clips (speakers 8 and 9, unseen, are the test split)
        weights = f"pretrained/{modality}-{name}.safetensors"
        assert (run / weights).is_file()
        run_cli("extract", "--modality", modality, "--cache", str(run),
                "--set", f"teacher.weights.{modality}={weights}",
                "--set", f"student.weights.{modality}={weights}")
        reader = Cache.open(run / "cache.zarr").feature_reader(modality, name)
        assert reader.provenance["weights_sha256"]
