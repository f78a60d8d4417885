"""`mmkd eval` end to end: a tiny real cache + manifest, teacher and students trained through the
real CLI for a few epochs, then every accuracy protocol and the report files."""

import csv
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mmkd.cache import Cache
from mmkd.cli.app import app
from mmkd.datasets.manifest import ManifestMeta, Sample, manifest_hash, write_manifest
from mmkd.errors import MmkdError

HEADS = {"verb": 3, "noun": 4}
TEACHER = {"video": "demo_swin3d_teacher", "flow": "demo_swin3d_teacher",
           "audio": "demo_swin3d_teacher_audio"}
STUDENT = {"video": "demo_swin3d_student", "flow": "demo_swin3d_student",
           "audio": "demo_ast_student"}
N, THETA, DIM = 120, 3, 8
FAST = ["--set", "teacher.train.epochs=6", "--set", "student.train.epochs=6",
        "--set", "teacher.train.warmup_epochs=1", "--set", "student.train.warmup_epochs=1",
        "--set", "teacher.fusion.width=32", "--set", "teacher.fusion.mlp_hidden=32",
        "--set", "student.fusion.width=32", "--set", "student.fusion.mlp_hidden=32",
        "--set", "teacher.train.lr_max=3e-3", "--set", "student.train.lr_max=3e-3"]
runner = CliRunner()


def _samples() -> list[Sample]:
    rng = np.random.default_rng(3)
    out = []
    for i in range(N):
        split = "train" if i % 6 < 4 else ("val" if i % 6 == 4 else "test")
        participant = "P09" if split == "test" and i % 12 == 11 else f"P0{i % 3 + 1}"
        out.append(Sample(sample_id=f"s{i:04d}", video_id=f"v{i // 10}", split=split,
                          labels={"verb": int(rng.integers(3)), "noun": int(rng.integers(4))},
                          participant=participant, unseen=participant == "P09"))
    return out


def _fill(cache: Cache, modality: str, extractor: str, samples: list[Sample], seed: int,
          signal: dict[str, float]) -> None:
    """Tokens = class prototypes of the heads this modality reveals (weights `signal`) + noise."""
    rng = np.random.default_rng(seed)
    protos = {h: rng.normal(size=(c, THETA, DIM)) for h, c in HEADS.items()}
    w = cache.feature_writer(modality, extractor, THETA, DIM,
                             {"weights_sha256": f"{seed:064x}", "k_tokens": THETA})
    tokens = np.zeros((N, THETA, DIM), np.float16)
    for i, s in enumerate(samples):
        x = 0.3 * rng.normal(size=(THETA, DIM))
        for h, weight in signal.items():
            x += weight * protos[h][s.labels[h]]
        tokens[i] = x
    for unit in w.units():
        idx = np.arange(unit.start, unit.stop)
        w.write(idx, tokens[idx], np.full(len(idx), THETA), np.ones(len(idx), bool))
        w.finish_unit(unit)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    torch.set_num_threads(1)
    run = tmp_path_factory.mktemp("runs") / "demo"
    # the demo preset drops video in its robustness table; this run lets mmkd choose
    assert runner.invoke(app, ["init", str(run), "--dataset", "demo",
                               "--set", "eval.robustness_drop="]).exit_code == 0
    samples = _samples()
    splits = {sp: [s for s in samples if s.split == sp] for sp in ("train", "val", "test")}
    ordered = [s for sp in splits.values() for s in sp]  # manifest order = cache order
    write_manifest(run / "manifest", ManifestMeta(dataset="demo", heads=HEADS), splits)
    cache = Cache.create(run / "cache.zarr", ordered, HEADS, manifest_hash(ordered), shard_size=64)
    # video reveals verb and noun, flow the verb, audio the noun: video matters most
    signal = {"video": {"verb": 1.0, "noun": 1.0}, "flow": {"verb": 1.0}, "audio": {"noun": 0.7}}
    for j, (m, e) in enumerate(sorted(set(TEACHER.items()) | set(STUDENT.items()))):
        _fill(cache, m, e, ordered, 10 + j, signal[m])
    for args in (["train", "teacher"], ["distill"], ["distill", "--method", "baseline"],
                 ["distill", "--method", "cmpt"]):
        res = runner.invoke(app, [*args, "--cache", str(run), *FAST])
        assert res.exit_code == 0, res.output
    return run


def test_eval_writes_every_table_and_plot(run_dir):
    res = runner.invoke(app, ["eval", "--cache", str(run_dir), "--protocol",
                              "subsets,missing-rate", "--set", "eval.seeds=[0,1,2]",
                              "--set", "eval.missing_rates=[0.0,0.5,0.9]"])
    assert res.exit_code == 0, res.output
    reports = run_dir / "reports"
    for name in ("subsets", "subsets_action", "missing_rate", "missing_rate_action",
                 "seen_unseen"):
        for ext in ("md", "csv", "json"):
            assert (reports / f"{name}.{ext}").exists(), f"{name}.{ext}"
    assert (reports / "missing_rate_action.png").read_bytes()[:4] == b"\x89PNG"
    report = (reports / "report.md").read_text()
    assert "![missing_rate_action](missing_rate_action.png)" in report
    assert "report.md" in res.output

    subsets = json.loads((reports / "subsets.json").read_text())["rows"]
    methods = {r["method"] for r in subsets}
    assert methods == {"KARMMA_T", "KARMMA_S", "Baseline", "CMPT"}
    assert {r["modalities"] for r in subsets} == {"V+F+A", "V+F", "V+A", "F+A", "V", "F", "A"}
    full = {r["method"]: r for r in subsets if r["modalities"] == "V+F+A"}
    # the synthetic labels are learnable: every model is far above chance with all modalities
    for r in full.values():  # chance: 33 and 25; CMPT (modality dropout, 6 epochs, 20 test
        # samples: 5 points each) got noun 45 here
        assert r["verb"] > 60 and r["noun"] > (40 if r["method"] == "CMPT" else 50), r
    # missing rate 0 keeps every modality: identical to the V+F+A subset, zero spread over seeds
    rates = json.loads((reports / "missing_rate.json").read_text())["rows"]
    for r in rates:
        if r["missing rate (%)"] == 0:
            assert r["action"]["std"] == 0
            assert r["action"]["mean"] == pytest.approx(full[r["method"]]["action"])
    assert len(rates) == 4 * 3  # models × rates
    # robustness: accuracy without video, and the share of the full accuracy it keeps
    robust = json.loads((reports / "robustness_action.json").read_text())["rows"]
    for r in robust:
        assert r["V+F+A"] == pytest.approx(full[r["method"]]["action"])
        if r["V+F+A"] > 0:
            assert r["kept (%)"] == pytest.approx(100 * r["F+A"] / r["V+F+A"])
    # CSV holds the same numbers as JSON
    rows = list(csv.DictReader((reports / "subsets.csv").open()))
    assert float(rows[0]["action"]) == pytest.approx(subsets[0]["action"])
    # seen/unseen: the manifest marks P09 unseen; "all" is the sample-weighted mix of both
    su = json.loads((reports / "seen_unseen.json").read_text())["rows"]
    by = {(r["method"], r["participants"]): r for r in su}
    cache = Cache.open(run_dir / "cache.zarr")
    n_test = len(cache.indices("test"))
    n_unseen = sum(1 for s in _samples() if s.split == "test" and s.unseen)
    for m in methods:
        mix = (by[(m, "seen")]["verb"] * (n_test - n_unseen)
               + by[(m, "unseen")]["verb"] * n_unseen) / n_test
        assert by[(m, "all")]["verb"] == pytest.approx(mix)


def test_eval_models_option_and_errors(run_dir):
    res = runner.invoke(app, ["eval", "--cache", str(run_dir), "--protocol", "subsets",
                              "--models", "karmma"])
    assert res.exit_code == 0, res.output
    rows = json.loads((run_dir / "reports" / "subsets.json").read_text())["rows"]
    assert {r["method"] for r in rows} == {"KARMMA_S"}
    res = runner.invoke(app, ["eval", "--cache", str(run_dir), "--models", "nope"])
    assert isinstance(res.exception, MmkdError) and "nope" in str(res.exception)
    res = runner.invoke(app, ["eval", "--cache", str(run_dir), "--protocol", "speed"])
    assert isinstance(res.exception, MmkdError) and "speed" in str(res.exception)


def test_ablations_from_the_cache(run_dir):
    res = runner.invoke(app, ["eval", "--cache", str(run_dir), "--protocol", "ablations",
                              "--ablation-epochs", "1", "--thetas", "none,2", *FAST[8:]])
    assert res.exit_code == 0, res.output
    reports = run_dir / "reports"
    tokens = json.loads((reports / "ablation_tokens.json").read_text())["rows"]
    # the cache holds all 3 raw tokens (k_tokens = Θ = 3): every variant is exact and trained
    assert [(r["token reduction"], r["tokens per modality"]) for r in tokens] == [
        ("None", 3), ("Θ-Average", 2), ("Random", 2)]
    assert all(r["status"] == "exact" and r["action"] is not None for r in tokens)
    assert tokens[0]["fusion GFLOPs"] > tokens[1]["fusion GFLOPs"]  # fewer tokens, less compute
    assert (run_dir / "ablations" / "tokens" / "theta-2" / "best.safetensors").exists()
    strat = json.loads((reports / "ablation_strategies.json").read_text())["rows"]
    assert [r["method"] for r in strat][:2] == ["Baseline", "Baseline w/ mod. drop."]
    assert len(strat) == 7 and all(0 <= r["V+F+A"] <= 100 for r in strat)
    ranks = json.loads((reports / "ablation_strategies_rank.json").read_text())["rows"]
    for col in ("V+F+A", "A"):
        assert min(r[col] for r in ranks) == 1
    report = (reports / "report.md").read_text()
    assert report.index("Token reduction ablation") > report.index("vs missing rate")


def test_robustness_drops_the_strongest_modality_on_val_or_the_chosen_one(run_dir):
    reports = run_dir / "reports"
    res = runner.invoke(app, ["eval", "--cache", str(run_dir), "--protocol", "subsets"])
    assert res.exit_code == 0, res.output
    table = json.loads((reports / "robustness_action.json").read_text())
    note = next(n for n in table["notes"] if n.startswith("Dropped:"))
    alone = dict(part.split() for part in note.split("alone: ")[1].split(")")[0].split(", "))
    strongest = max(alone, key=lambda m: float(alone[m]))
    assert set(alone) == {"video", "flow", "audio"} and f"Dropped: {strongest}," in note
    assert "of KARMMA_T on val" in note
    rest = "+".join(m[0].upper() for m in ("video", "flow", "audio") if m != strongest)
    assert table["columns"][2] == rest
    res = runner.invoke(app, ["eval", "--cache", str(run_dir), "--protocol", "subsets",
                              "--robustness-drop", "audio"])
    assert res.exit_code == 0, res.output
    table = json.loads((reports / "robustness_action.json").read_text())
    assert table["columns"][1:3] == ["V+F+A", "V+F"] and "without audio" in table["title"]
    res = runner.invoke(app, ["eval", "--cache", str(run_dir), "--protocol", "subsets",
                              "--robustness-drop", "smell"])
    assert isinstance(res.exception, MmkdError) and "not a modality" in str(res.exception)


def test_seen_unseen_says_why_when_every_test_participant_is_unseen(run_dir, tmp_path):
    samples = _samples()
    for s in samples:
        s.unseen = s.split == "test"  # every test participant unseen
    splits = {sp: [s for s in samples if s.split == sp] for sp in ("train", "val", "test")}
    write_manifest(tmp_path / "manifest", ManifestMeta(dataset="demo", heads=HEADS), splits)
    res = runner.invoke(app, ["eval", "--cache", str(run_dir), "--protocol", "subsets",
                              "--robustness-drop", "video",
                              "--set", f"data.manifest_dir={tmp_path / 'manifest'}"])
    assert res.exit_code == 0, res.output
    table = json.loads((run_dir / "reports" / "seen_unseen.json").read_text())
    assert table["rows"] == []
    assert "every one of the 20 samples is from an unseen participant" in table["notes"][0]
    assert "Not computed" in (run_dir / "reports" / "report.md").read_text()
    assert "Not computed: every one of the 20 samples" in " ".join(res.output.split())


def test_seeds_then_mean_std_and_compare(run_dir, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    shutil.rmtree(run / "reports", ignore_errors=True)
    seeds = ["--seeds", "0,1", "--cache", str(run), *FAST]
    res = runner.invoke(app, ["distill", "--method", "baseline-delta", *seeds])
    assert res.exit_code == 0, res.output
    delta = run / "students" / "baseline-delta"
    assert sorted(p.name for p in delta.iterdir()) == ["seed-0", "seed-1"]
    metas = [json.loads((delta / f"seed-{s}" / "meta.json").read_text()) for s in (0, 1)]
    assert [m["config"]["student"]["train"]["seed"] for m in metas] == [0, 1]
    w0, w1 = ((delta / f"seed-{s}" / "best.safetensors").read_bytes() for s in (0, 1))
    assert w0 != w1  # the seed changes the model
    res = runner.invoke(app, ["distill", "--method", "baseline-delta", *seeds])  # resumes: done
    assert res.exit_code == 0 and "resumed from" in res.output, res.output
    assert (delta / "seed-0" / "best.safetensors").read_bytes() == w0
    # the teacher's extra seeds train next to the single run; the cache keeps the first's logits
    res = runner.invoke(app, ["train", "teacher", "--seeds", "1", "--cache", str(run), *FAST])
    assert res.exit_code == 0, res.output
    assert (run / "teacher" / "seed-1" / "meta.json").exists()

    res = runner.invoke(app, ["eval", "--cache", str(run), "--protocol", "subsets"])
    assert res.exit_code == 0, res.output
    rows = json.loads((run / "reports" / "subsets_action.json").read_text())["rows"]
    by = {r["method"]: r for r in rows}
    cell = by["Baseline w/ δ"]["V+F+A"]
    assert cell["n"] == 2 and cell["std"] >= 0 and by["KARMMA_T"]["V+F+A"]["n"] == 2
    assert isinstance(by["KARMMA_S"]["V+F+A"], float)  # a single run stays a plain number
    assert (run / "reports" / "subsets_action.png").read_bytes()[:4] == b"\x89PNG"

    res = runner.invoke(app, ["compare", "karmma", "baseline-delta", "--subset", "V+F+A,F+A",
                              "--cache", str(run), "--n-boot", "200"])
    assert res.exit_code == 0, res.output
    table = json.loads((run / "reports" / "compare_karmma_vs_baseline-delta.json").read_text())
    assert [r["modalities"] for r in table["rows"]] == ["V+F+A", "F+A"]
    full = table["rows"][0]
    assert full["difference (points)"] == pytest.approx(
        by["KARMMA_S"]["V+F+A"] - by["Baseline w/ δ"]["V+F+A"]["mean"])
    assert full["95% CI low"] <= full["difference (points)"] <= full["95% CI high"]
    assert full["seeds A > B"] in ("0/1", "1/1") and full["seeds (A, B)"] == "1, 2"
    assert "compare_karmma_vs_baseline-delta" in (run / "reports" / "report.md").read_text()
    res = runner.invoke(app, ["compare", "karmma", "karmma", "--cache", str(run)])
    assert isinstance(res.exception, MmkdError) and "two different" in str(res.exception)
