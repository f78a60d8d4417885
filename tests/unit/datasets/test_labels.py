"""The label-text check: a text outside its class's words is recorded, never raised."""

from __future__ import annotations

from mmkd.datasets.labels import ClassList, check_text, mismatch_notes


def test_check_text_records_only_texts_outside_the_class():
    verbs = ClassList("verb", ["take", "carry"], [{"take", "grab"}, {"carry", "bring"}])
    found: list = []
    for cid, text in ((0, "grab"), (1, "carry"), (1, ""), (1, "bring-into"), (0, "bring")):
        check_text(found, verbs, cid, text, f"f.csv:{cid}", text or "empty")
    assert [(m.text, m.class_id, m.class_name) for m in found] == [
        ("bring-into", 1, "carry"), ("bring", 0, "take")]
    notes = mismatch_notes(found)
    assert notes["count"] == 2 and notes["rows"][0]["where"] == "f.csv:1"
