import pytest

from mmkd.errors import MmkdError
from mmkd.registry import Registry


def test_register_get_list():
    reg: Registry = Registry("thing", "mmkd.errors")

    @reg.register()
    def alpha():
        return 1

    @reg.register("beta_2")
    def other():
        return 2

    assert reg.get("alpha")() == 1 and reg.get("beta_2")() == 2
    assert reg.list() == ["alpha", "beta_2"]
    assert reg.list("b*") == ["beta_2"]
    assert "alpha" in reg and "gamma" not in reg


def test_unknown_name_suggests_close_matches():
    reg: Registry = Registry("extractor", "mmkd.errors")
    reg.register("swin3d_b")(lambda: None)
    with pytest.raises(MmkdError, match="Did you mean swin3d_b"):
        reg.get("swin3d_bb")


def test_duplicate_registration_is_refused():
    reg: Registry = Registry("thing", "mmkd.errors")
    reg.register("a")(lambda: None)
    with pytest.raises(KeyError):
        reg.register("a")(lambda: None)


def test_a_lookup_imports_the_home_that_registers(tmp_path, monkeypatch):
    """Asking by name works before anyone imported the defining package (the config's
    validation asks for methods and extractors without importing train or extract)."""
    import mmkd.registry

    reg: Registry = Registry("thing", "mmkd_test_home")
    monkeypatch.setattr(mmkd.registry, "things", reg, raising=False)
    (tmp_path / "mmkd_test_home.py").write_text(
        "from mmkd.registry import things\nthings.register('made_at_home')(object)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "made_at_home" in reg and reg.list() == ["made_at_home"]


def test_the_registries_name_the_packages_that_fill_them():
    from mmkd import registry

    for reg in (registry.extractors, registry.datasets, registry.models, registry.methods):
        assert reg.list(), f"{reg.kind}: nothing registered by importing {reg.home}"
