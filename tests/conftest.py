"""Shared fixtures: seeded RNGs and the built-in dataset generated once per session."""

import os

import numpy as np
import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def demo_tiny(tmp_path_factory: pytest.TempPathFactory):
    """The built-in demo dataset at scale `tiny`, seed 0, generated once per test session.

    Returns the dataset folder: `annotations/` (EPIC CSVs), `media/` (EPIC layout), `demo.json`.
    """
    from mmkd.demo.generate import generate

    out = tmp_path_factory.mktemp("demo_tiny")
    generate(out, "tiny", 0)
    return out
