"""Each registered dataset's record: its preset is its own run, and efficiency at paper sizes
reads the record's paper dataset (flips: tests/unit/train/test_augment.py)."""

import pytest

from mmkd import config as C
from mmkd import registry
from mmkd.datasets.spec import DatasetSpec
from mmkd.eval.runner import efficiency_configs


@pytest.mark.parametrize("name", registry.datasets.list())
def test_every_dataset_record_gives_its_run_preset(name):
    spec = registry.datasets.get(name)
    assert isinstance(spec, DatasetSpec) and spec.name == name
    cfg = C.run_preset(name)
    assert cfg.data.dataset == name
    cfg.validate()
    assert registry.datasets.get(spec.paper).paper_heads  # efficiency at paper sizes has heads


def test_efficiency_at_paper_sizes_takes_the_records_paper_dataset():
    configs, what = efficiency_configs(C.run_preset("ssv2"), "paper", ["cpu"])
    assert "ssv2 recipes" in what and configs[0].heads == {"action": 174}
    configs, what = efficiency_configs(C.run_preset("custom"), "paper", ["cpu"])
    assert "epic100 recipes" in what and configs[0].heads == {"verb": 97, "noun": 300}
