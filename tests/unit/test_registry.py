import pytest

from mmkd.errors import MmkdError
from mmkd.registry import Registry


def test_register_get_list():
    reg: Registry = Registry("thing")

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
    reg: Registry = Registry("extractor")
    reg.register("swin3d_b")(lambda: None)
    with pytest.raises(MmkdError, match="Did you mean swin3d_b"):
        reg.get("swin3d_bb")


def test_duplicate_registration_is_refused():
    reg: Registry = Registry("thing")
    reg.register("a")(lambda: None)
    with pytest.raises(KeyError):
        reg.register("a")(lambda: None)
