"""HDF5 exchange (`mmkd cache export-h5` / `import-h5`) for tools that do not read Zarr.

The HDF5 file mirrors the store: root attrs (schema_version, manifest_hash, heads, shard_size),
`sample_ids`, `splits`, `labels/<head>`, `<modality>/<extractor>/{tokens, n_tokens, present,
done, failure}` with the provenance as a JSON attribute, and `teachers/<id>/logits/<head>` (and
`teachers/<id>/features/<modality>`).
Import goes through the normal writer (unit by unit, resumable, provenance-checked), so an
imported store is byte-identical to the exported one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np

from mmkd.cache import schema as S
from mmkd.cache.store import Cache
from mmkd.datasets.manifest import Sample
from mmkd.errors import MmkdError

AUTO_KEYS = ("modality", "theta", "dim", "dtype", "schema_version", "manifest_hash")
STR = h5py.string_dtype()


def export_h5(cache: Cache, out: str | Path,
              progress: Callable[[int], None] | None = None) -> Path:
    """Write the whole cache (done samples; the rest as zeros with done=False) to `out`."""
    out = Path(out)
    with h5py.File(out, "w") as h5:
        h5.attrs.update({"schema_version": S.SCHEMA_VERSION, "manifest_hash": cache.manifest_hash,
                         "heads": json.dumps(cache.heads), "shard_size": cache.shard_size})
        h5.create_dataset("sample_ids", data=np.array(cache.sample_ids, dtype=object), dtype=STR)
        h5.create_dataset("splits", data=cache.splits.astype(object), dtype=STR)
        for head in cache.heads:
            h5.create_dataset(f"labels/{head}", data=cache.labels(head))
        for mod, ext in cache.features():
            g = h5.create_group(f"{mod}/{ext}")
            g.attrs["provenance"] = json.dumps(cache.feature_provenance(mod, ext))
            for name in ("n_tokens", "present", "done"):
                g.create_dataset(name, data=cache.array(mod, ext, name)[:])
            g.create_dataset("failure", dtype=STR, data=np.array(
                cache.array(mod, ext, "failure")[:].tolist(), dtype=object))
            tokens = cache.array(mod, ext, "tokens")
            dset = g.create_dataset("tokens", shape=tokens.shape, dtype=np.float16,
                                    chunks=(1, *tokens.shape[1:]))
            step = cache.shard_size
            for start in range(0, cache.n, step):  # one shard at a time: bounded memory
                dset[start:start + step] = tokens[start:start + step]
                if progress:
                    progress(min(step, cache.n - start))
        for teacher in cache.teachers():
            t = h5.create_group(f"teachers/{teacher}")
            t.attrs["provenance"] = json.dumps(cache.teacher_provenance(teacher))
            for head in cache.heads:
                if (cache.path / "teachers" / teacher / "logits" / head / "zarr.json").exists():
                    t.create_dataset(f"logits/{head}", data=cache.teacher_logits(teacher, head))
            for kind in ("features", "kv"):
                for m in cache.teacher_feature_modalities(teacher, kind):
                    t.create_dataset(f"{kind}/{m}", data=cache.teacher_features(teacher, m, kind))
    return out


def _strings(dset: h5py.Dataset) -> list[str]:
    return [s.decode() if isinstance(s, bytes) else str(s) for s in dset[:]]


def import_h5(src: str | Path, cache_path: str | Path,
              progress: Callable[[int], None] | None = None) -> Cache:
    """Create (or resume filling) a store at `cache_path` from an exported HDF5 file."""
    src = Path(src)
    if not src.exists():
        raise MmkdError(f"{src}: no such HDF5 file")
    with h5py.File(src, "r") as h5:
        for key in ("schema_version", "manifest_hash", "heads"):
            if key not in h5.attrs:
                raise MmkdError(f"{src}: attribute {key!r} missing; not an `mmkd cache "
                                "export-h5` file")
        if int(h5.attrs["schema_version"]) != S.SCHEMA_VERSION:
            raise MmkdError(f"{src}: schema_version {h5.attrs['schema_version']} is not "
                            f"{S.SCHEMA_VERSION}; export it again with this mmkd")
        heads = json.loads(h5.attrs["heads"])
        ids, splits = _strings(h5["sample_ids"]), _strings(h5["splits"])
        labels = {h: h5[f"labels/{h}"][:] for h in heads}
        samples = [Sample(sample_id=sid, video_id="", split=split,
                          labels={h: int(labels[h][i]) for h in heads})
                   for i, (sid, split) in enumerate(zip(ids, splits, strict=True))]
        cache = Cache.create(cache_path, samples, heads, str(h5.attrs["manifest_hash"]),
                             shard_size=int(h5.attrs.get("shard_size", 128)))
        for mod in h5:
            if mod in S.ROOT_ARRAYS or mod in S.NON_FEATURE_GROUPS:
                continue
            for ext in h5[mod]:
                _import_group(cache, h5[f"{mod}/{ext}"], mod, ext, progress)
        for teacher in h5.get("teachers", {}):
            t = h5[f"teachers/{teacher}"]
            prov = json.loads(t.attrs.get("provenance", "{}"))
            for head in t.get("logits", {}):
                cache.write_teacher_logits(teacher, head, t[f"logits/{head}"][:], prov)
            for kind in ("features", "kv"):
                cache.write_teacher_features(teacher, {m: t[f"{kind}/{m}"][:]
                                                       for m in t.get(kind, {})}, kind)
    return cache


def _import_group(cache: Cache, g: h5py.Group, mod: str, ext: str,
                  progress: Callable[[int], None] | None) -> None:
    prov = json.loads(g.attrs["provenance"])
    user = {k: v for k, v in prov.items() if k not in AUTO_KEYS}
    w = cache.feature_writer(mod, ext, prov["theta"], prov["dim"], user)
    done, present = g["done"][:].astype(bool), g["present"][:].astype(bool)
    n_tokens, failure = g["n_tokens"][:], _strings(g["failure"])
    for unit in w.units():
        todo = w.pending(unit)
        todo = todo[done[todo]]
        if todo.size:
            tokens = g["tokens"][unit.start:unit.stop][todo - unit.start]
            ok = np.array([failure[i] == "" for i in todo])
            w.write(todo[ok], tokens[ok], n_tokens[todo[ok]], present[todo[ok]])
            for i in todo[~ok].tolist():
                w.fail(i, failure[i])
            w.finish_unit(unit)
        if progress:
            progress(len(unit))
