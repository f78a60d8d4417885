"""One small generic registry (timm-style): a decorator to register, `get`, and `list(pattern)`.

The four instances below are the only registries in mmkd, so every extensible family
(extractors, datasets, models, methods) is looked up the same way. Each names its home, the
package whose import registers the entries: a lookup imports it first, so a low layer (the
config's validation) can ask for a method or extractor by name without importing the layer
that defines it, and the import arrows run one way.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
from collections.abc import Callable
from typing import Generic, TypeVar

from mmkd.errors import MmkdError

T = TypeVar("T")


class Registry(Generic[T]):
    """Name → factory map for one kind of component."""

    def __init__(self, kind: str, home: str):
        self.kind = kind
        self.home = home
        self._entries: dict[str, T] = {}

    def _loaded(self) -> dict[str, T]:
        importlib.import_module(self.home)
        return self._entries

    def register(self, name: str | None = None) -> Callable[[T], T]:
        """Decorator: register the object under `name` (default: its `__name__`)."""

        def deco(obj: T) -> T:
            key = name or obj.__name__  # type: ignore[attr-defined]
            if key in self._entries:
                raise KeyError(f"{self.kind} {key!r} is registered twice")
            self._entries[key] = obj
            return obj

        return deco

    def get(self, name: str) -> T:
        if name not in self._loaded():
            close = difflib.get_close_matches(name, self._entries, n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise MmkdError(
                f"unknown {self.kind} {name!r}.{hint} Known: {', '.join(self.list()) or 'none'}."
            )
        return self._entries[name]

    def list(self, pattern: str = "*") -> list[str]:
        """Sorted names matching a shell-style pattern, e.g. `list("swin3d_*")`."""
        return sorted(n for n in self._loaded() if fnmatch.fnmatch(n, pattern))

    def __contains__(self, name: object) -> bool:
        return name in self._loaded()


extractors: Registry = Registry("extractor", "mmkd.extract.extractors")
datasets: Registry = Registry("dataset", "mmkd.datasets")
models: Registry = Registry("model", "mmkd.models")
methods: Registry = Registry("method", "mmkd.train.methods")
