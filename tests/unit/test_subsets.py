from mmkd.subsets import modality_subsets, subset_label


def test_subsets_follow_table_1_order():
    subsets = modality_subsets(["video", "flow", "audio"])
    assert [subset_label(s) for s in subsets] == ["V+F+A", "V+F", "V+A", "F+A", "V", "F", "A"]
    assert len(modality_subsets(["video", "flow", "audio", "detection"])) == 15
    assert modality_subsets(["video"]) == [("video",)]
