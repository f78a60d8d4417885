from mmkd.subsets import modality_subsets, subset_label


def test_subsets_follow_table_1_order():
    subsets = modality_subsets(["video", "flow", "audio"])
    assert [subset_label(s) for s in subsets] == ["V+F+A", "V+F", "V+A", "F+A", "V", "F", "A"]
    assert len(modality_subsets(["video", "flow", "audio", "detection"])) == 15
    assert modality_subsets(["video"]) == [("video",)]


def test_parse_subset_takes_letters_or_names():
    import pytest

    from mmkd.errors import MmkdError
    from mmkd.subsets import parse_subset

    mods = ["video", "flow", "audio"]
    assert parse_subset("F+A", mods) == ("flow", "audio")
    assert parse_subset("video+flow+audio", mods) == tuple(mods)
    with pytest.raises(MmkdError, match="--subset A\\+F: use one of V\\+F\\+A"):
        parse_subset("A+F", mods)
