"""Run shard-aligned work units in this process or on a Dask distributed cluster.

The same `work_fn(unit_id)` serves every engine: in-process, SLURM array tasks (each runs its
`units(shard=(I, N))` in-process), a `distributed.LocalCluster` of worker processes
(`dask="local"`) or an existing scheduler (`dask="tcp://HOST:PORT"`). Correctness never
depends on the engine because every unit is owned by exactly one call and resumes by itself.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from mmkd.errors import MmkdError

T = TypeVar("T")


def run_units(unit_ids: Sequence[int], work_fn: Callable[[int], T], dask: str | None = None,
              progress: Callable[[int], None] | None = None,
              n_workers: int | None = None) -> list[T]:
    """Call `work_fn(u)` for every unit id; results in `unit_ids` order.

    `work_fn` must be a picklable top-level callable (or a functools.partial of one) when
    `dask` is set. `n_workers` sizes a local cluster (default: the CPU count).
    """
    unit_ids = [int(u) for u in unit_ids]
    if dask is None:
        results = []
        for u in unit_ids:
            results.append(work_fn(u))
            if progress:
                progress(1)
        return results
    from distributed import Client, LocalCluster, as_completed

    cluster: Any = None
    if dask == "local":
        cluster = LocalCluster(n_workers=n_workers or os.cpu_count() or 1, threads_per_worker=1,
                               processes=True, dashboard_address=None)
        client = Client(cluster)
    else:
        if not dask.startswith(("tcp://", "tls://", "ucx://", "inproc://")):
            raise MmkdError(f"--dask {dask!r}: pass `local` or a scheduler address such as "
                            "tcp://HOST:8786")
        try:
            client = Client(dask, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise MmkdError(f"--dask {dask}: cannot reach the Dask scheduler ({exc}); start one "
                            "with `dask scheduler` and workers with `dask worker ADDRESS`") from None
    try:
        futures = client.map(work_fn, unit_ids, pure=False)
        for fut in as_completed(futures):
            fut.result()  # re-raises a worker's exception here, with its traceback
            if progress:
                progress(1)
        return client.gather(futures)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
