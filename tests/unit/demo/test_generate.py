"""`generate` refuses to write over folders it did not create (checked before any rendering)."""

import pytest

from mmkd.demo.generate import generate
from mmkd.errors import MmkdError
from mmkd.registry import datasets


def test_refuses_a_non_empty_folder_without_overwrite(tmp_path):
    (tmp_path / "media").mkdir()
    with pytest.raises(MmkdError, match="--force"):
        generate(tmp_path, "tiny", 0)


def test_never_deletes_foreign_files_even_with_overwrite(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(MmkdError, match="notes.txt"):
        generate(tmp_path, "tiny", 0, overwrite=True)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_rejects_a_file_and_an_unknown_scale(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(MmkdError, match="is a file"):
        generate(tmp_path / "f", "tiny", 0)
    with pytest.raises(MmkdError, match="unknown demo scale"):
        generate(tmp_path / "new", "medium", 0)


def test_demo_manifests_are_built_by_the_epic100_builder():
    from mmkd.datasets import epic100

    assert datasets.get("demo").build is epic100.build_epic100
