"""Scale-out on real engines: two processes sharding one store, and a Dask LocalCluster."""

import functools
import subprocess
import sys
from pathlib import Path

import cloudpickle
import pytest

from helpers import cache_fill
from helpers.cache_fill import DIM, PROVENANCE, THETA, fill_all, fill_unit, make_cache, store_bytes
from mmkd.cache import Cache
from mmkd.cache.scaleout import run_units
from mmkd.errors import MmkdError

FILL_SCRIPT = Path(cache_fill.__file__)  # run as a script: one racing writer process


@pytest.fixture
def reference(tmp_path):
    ref = tmp_path / "ref" / "cache.zarr"
    make_cache(ref, n=23, shard_size=4)
    fill_all(ref)
    return store_bytes(ref)


def test_two_processes_sharding_one_store_match_single_process(tmp_path, reference):
    path = tmp_path / "sharded" / "cache.zarr"
    procs = [subprocess.Popen([sys.executable, str(FILL_SCRIPT), str(path), "0",
                               f"{i}/2"], stdout=subprocess.PIPE, text=True) for i in range(2)]
    # both create the store and the feature group at once: creation must be race-free
    outs = [p.communicate(timeout=60)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sorted(int(line.split()[1]) for o in outs for line in o.splitlines()) == list(range(6))
    assert store_bytes(path) == reference


def test_run_units_in_process_reports_progress(tmp_path, reference):
    path = tmp_path / "local" / "cache.zarr"
    w = make_cache(path, n=23, shard_size=4).feature_writer(
        "video", "test_ext", THETA, DIM, PROVENANCE)
    ticks = []
    res = run_units([u.id for u in w.units()], functools.partial(fill_unit, str(path)),
                    progress=ticks.append)
    assert res == [4, 4, 4, 4, 4, 3] and ticks == [1] * 6
    assert store_bytes(path) == reference
    assert run_units([0, 1], functools.partial(fill_unit, str(path))) == [0, 0]  # resumed: no-op


def test_dask_local_cluster_matches_single_process(tmp_path, reference):
    cloudpickle.register_pickle_by_value(cache_fill)  # workers cannot import the test helpers
    path = tmp_path / "dask" / "cache.zarr"
    w = make_cache(path, n=23, shard_size=4).feature_writer(
        "video", "test_ext", THETA, DIM, PROVENANCE)
    ticks = []
    res = run_units([u.id for u in w.units()], functools.partial(fill_unit, str(path)),
                    dask="local", n_workers=2, progress=ticks.append)
    assert res == [4, 4, 4, 4, 4, 3] and len(ticks) == 6
    assert store_bytes(path) == reference
    assert Cache.open(path).array("video", "test_ext", "done")[:].all()


def test_bad_dask_address_is_explained():
    with pytest.raises(MmkdError, match="tcp://HOST"):
        run_units([0], print, dask="localhost:8786")
