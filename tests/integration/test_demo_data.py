"""`mmkd demo-data` end to end, then the real EPIC-100 manifest builder on what it wrote."""

import json

from typer.testing import CliRunner

from mmkd.cli.app import app
from mmkd.errors import MmkdError

runner = CliRunner()


def test_demo_data_cli_then_epic100_manifest(tmp_path):
    out = tmp_path / "demo"
    result = runner.invoke(app, ["demo-data", "--out", str(out), "--scale", "tiny", "--seed", "0"])
    assert result.exit_code == 0, result.output
    assert "train 108, validation 38" in result.output
    info = json.loads((out / "demo.json").read_text())
    assert info["scale"] == "tiny" and len(info["videos"]) == 5
    assert "mmkd demo-data --out" in (out / "README.md").read_text()

    again = runner.invoke(app, ["demo-data", "--out", str(out), "--scale", "tiny"])
    assert isinstance(again.exception, MmkdError) and "--force" in str(again.exception)

    manifest = tmp_path / "manifest"
    result = runner.invoke(
        app,
        [
            "manifest",
            "epic100",
            "--annotations",
            str(out / "annotations"),
            "--media-root",
            str(out / "media"),
            "--out",
            str(manifest),
            "--check-media",
        ],
    )
    assert result.exit_code == 0, result.output
    meta = json.loads((manifest / "meta.json").read_text())
    assert meta["heads"] == {
        "verb": len(info["classes"]["verb"]),
        "noun": len(info["classes"]["noun"]),
    }
    pruned = {k.split(" (")[0] for k in meta["notes"]["pruned_noun_classes"]}
    assert pruned == set(info["validation_only_nouns"])
    records = [
        json.loads(line)
        for split in ("train", "val", "test")
        for line in (manifest / f"{split}.jsonl").read_text().splitlines()
    ]
    assert (
        len(records) == sum(v["segments"] for v in info["videos"]) - meta["notes"]["pruned_samples"]
    )
    assert {"video", "rgb", "flow", "audio", "detection"} <= set(records[0]["media"])
    assert any(r["unseen"] for r in records) and not any(
        r["unseen"] for r in records if r["split"] != "test"
    )
    assert not (manifest / "media_problems.csv").exists()  # every listed medium exists
