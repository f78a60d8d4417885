"""`mmkd cache info/verify/export-h5/import-h5` and `mmkd slurm` through the real CLI."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from mmkd.cache import Cache
from mmkd.cli.app import app
from mmkd.errors import MmkdError

THETA, DIM, N, SHARD = 4, 8, 10, 4
PROV = {"extractor": "tiny", "weights_sha256": "12" * 32, "preprocessing": {"fps": 30}}

FILL = textwrap.dedent(f"""
    import sys
    import numpy as np
    from mmkd.cache import Cache, parse_shard
    from mmkd.datasets.manifest import Sample, manifest_hash

    def fill(store, shard=None, retry=False):
        s = [Sample(sample_id=f"s{{i}}", video_id="v", split="train" if i % 4 else "val",
                    labels={{"verb": i % 3}}) for i in range({N})]
        c = Cache.create(store, s, {{"verb": 3}}, manifest_hash(s), shard_size={SHARD})
        w = c.feature_writer("video", "tiny", {THETA}, {DIM}, {PROV!r})
        for u in w.units(shard=shard):
            for i in w.pending(u, retry).tolist():
                if i == 6:
                    w.fail(i, "unreadable media")
                    continue
                t = np.random.default_rng(i).standard_normal((1, {THETA}, {DIM})) + 1
                w.write([i], t.astype(np.float16), [{THETA}], [True])
            w.finish_unit(u)

    if __name__ == "__main__":
        args = sys.argv[1:]
        fill(args[0], parse_shard(args[2]) if len(args) > 2 and args[1] == "--shard" else None,
             retry="--retry-failed" in args)
""")


def group_bytes(store: Path) -> dict[str, bytes]:
    g = store / "video" / "tiny"
    return {str(p.relative_to(g)): p.read_bytes() for p in sorted(g.rglob("*"))
            if p.is_file() and p.name != "zarr.json"}


def make_run(tmp_path: Path) -> tuple[Path, Path]:
    run = tmp_path / "run"
    res = CliRunner().invoke(app, ["init", str(run), "--dataset", "demo"])
    assert res.exit_code == 0, res.output
    fill_py = tmp_path / "fill.py"
    fill_py.write_text(FILL)
    subprocess.run([sys.executable, str(fill_py), str(run / "cache.zarr")], check=True)
    return run, fill_py


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def test_info_verify_and_corruption(tmp_path):
    run, _ = make_run(tmp_path)
    res = invoke("cache", "info", "--cache", str(run), "--failures")
    assert res.exit_code == 0, res.output
    for text in ("video", "tiny", "10/10", "unreadable media", "s6", "weights_sha256", "fps",
                 "mmkd extract --modality video --extractor tiny --retry-failed"):
        assert text in res.output
    res = invoke("cache", "verify", "--cache", str(run))
    assert res.exit_code == 0 and "ok" in res.output and "9 samples" in res.output

    shard1 = run / "cache.zarr" / "video" / "tiny" / "tokens" / "c" / "1" / "0" / "0"
    data = bytearray(shard1.read_bytes())
    index = np.frombuffer(bytes(data[-(SHARD * 16 + 4):-4]), dtype="<u8").reshape(SHARD, 2)
    data[int(index[0, 0]) + 10] ^= 0x01  # one flipped bit in s4: still finite, caught by crc
    shard1.write_bytes(bytes(data))
    res = invoke("cache", "verify", "--cache", str(run / "cache.zarr"))
    assert isinstance(res.exception, MmkdError)
    assert "checksum mismatch" in res.output and "s4" in res.output and "s5" not in res.output
    assert "mmkd extract --modality video --extractor tiny" in res.output

    shard1.write_bytes(bytes(data[:-50]))  # truncated: every sample of the shard is named
    res = invoke("cache", "verify", "--cache", str(run))
    assert isinstance(res.exception, MmkdError)
    assert "c/1/0/0" in res.output and all(f"s{i}" in res.output for i in (4, 5, 7))


def test_verify_mark_failed_then_retry_restores_the_clean_store(tmp_path):
    run, fill_py = make_run(tmp_path)
    store = run / "cache.zarr"
    clean = group_bytes(store)
    tokens = store / "video" / "tiny" / "tokens" / "c"
    data = bytearray((tokens / "1" / "0" / "0").read_bytes())
    index = np.frombuffer(bytes(data[-(SHARD * 16 + 4):-4]), dtype="<u8").reshape(SHARD, 2)
    data[int(index[0, 0]) + 10] ^= 0x01  # s4
    (tokens / "1" / "0" / "0").write_bytes(bytes(data))
    (tokens / "2" / "0" / "0").write_bytes((tokens / "2" / "0" / "0").read_bytes()[:-50])  # s8, s9
    res = invoke("cache", "verify", "--cache", str(run))
    assert "cache verify --mark-failed" in res.output and "--retry-failed" in res.output
    res = invoke("cache", "verify", "--cache", str(run), "--mark-failed")
    assert res.exit_code == 0, res.output
    assert "video/tiny: 3 bad samples stored as failed" in res.output
    assert "mmkd extract --modality video --extractor tiny --retry-failed" in res.output
    assert invoke("cache", "verify", "--cache", str(run)).exit_code == 0
    assert {r["sample_id"] for r in Cache.open(store).failures()} == {"s4", "s6", "s8", "s9"}
    subprocess.run([sys.executable, str(fill_py), str(store), "--retry-failed"], check=True)
    assert group_bytes(store) == clean


def test_export_import_h5_round_trip(tmp_path):
    run, _ = make_run(tmp_path)
    c = Cache.open(run / "cache.zarr", "r+")
    c.write_teacher_logits("t0", "verb", np.arange(N * 3, dtype=np.float32).reshape(N, 3),
                           {"ckpt": "t0.pt"})
    c.write_teacher_features("t0", {"audio": np.arange(N * 2, dtype=np.float16).reshape(N, 2)})
    h5 = tmp_path / "cache.h5"
    res = invoke("cache", "export-h5", str(h5), "--cache", str(run))
    assert res.exit_code == 0, res.output
    other = tmp_path / "other" / "cache.zarr"
    res = invoke("cache", "import-h5", str(h5), "--cache", str(other))
    assert res.exit_code == 0, res.output
    back = Cache.open(other)
    assert group_bytes(other) == group_bytes(run / "cache.zarr")
    assert back.feature_provenance("video", "tiny") == c.feature_provenance("video", "tiny")
    assert back.sample_ids == c.sample_ids and back.failures() == c.failures()
    np.testing.assert_array_equal(back.teacher_logits("t0", "verb"), c.teacher_logits("t0", "verb"))
    np.testing.assert_array_equal(back.teacher_features("t0", "audio"),
                                  c.teacher_features("t0", "audio"))
    assert invoke("cache", "verify", "--cache", str(other)).exit_code == 0


def test_slurm_script_runs_each_task_on_its_shard(tmp_path, monkeypatch):
    run, fill_py = make_run(tmp_path)
    monkeypatch.chdir(tmp_path)
    res = invoke("slurm", "--array", "2", "--partition", "gpu", "--time", "1:00:00", "--gpus",
                 "1", "--out", "extract.sbatch", "--", "mmkd", "extract", "--modality", "video")
    assert res.exit_code == 0, res.output
    text = (tmp_path / "extract.sbatch").read_text()
    for line in ("#SBATCH --array=0-1", "#SBATCH --partition=gpu", "#SBATCH --time=1:00:00",
                 "#SBATCH --gpus-per-task=1", 'extract --modality video --shard '
                 '"${SLURM_ARRAY_TASK_ID}/2"'):
        assert line in text
    assert (tmp_path / "slurm-logs").is_dir()
    # the same script around a real sharded writer, run as SLURM would run tasks 0 and 1
    store = tmp_path / "arrayed" / "cache.zarr"
    res = invoke("slurm", "--array", "2", "--out", "fill.sbatch", "--", sys.executable,
                 str(fill_py), str(store))
    assert res.exit_code == 0, res.output
    for task in ("0", "1"):
        subprocess.run(["bash", "fill.sbatch"], check=True,
                       env={**os.environ, "SLURM_ARRAY_TASK_ID": task})
    assert group_bytes(store) == group_bytes(run / "cache.zarr")
    res = invoke("slurm", "--array", "2", "--", "mmkd", "extract", "--shard", "0/2")
    assert isinstance(res.exception, MmkdError)
