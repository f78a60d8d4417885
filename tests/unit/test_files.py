import errno

import pytest

from mmkd.datasets.custom import read_class_list
from mmkd.errors import MmkdError
from mmkd.files import DiskFullError, published, read_text


def test_not_utf8_names_file_line_byte_and_column(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_bytes(b"open\nclose\np\xfcsh\n")
    with pytest.raises(MmkdError, match=r"classes.txt:3: not UTF-8 \(byte 0xfc at column 2\); "
                                        "save the file as UTF-8"):
        read_class_list(path, "verb")
    path.write_bytes("\ufeffopen\nschälen\n".encode())  # a BOM and real UTF-8 are fine
    assert read_class_list(path, "verb").names == ["open", "schälen"] and read_text(path).startswith("open")


def test_published_renames_on_success_and_removes_the_temp_file_on_a_full_disk(tmp_path):
    final, tmp = tmp_path / "shard", tmp_path / "shard.x.partial"
    with published(final, tmp) as t:
        t.write_bytes(b"ok")
    assert final.read_bytes() == b"ok" and not tmp.exists()
    with pytest.raises(DiskFullError, match=f"cannot write {final}: no space left on device; "
                                            "free space and re-run"):
        with published(final, tmp) as t:
            t.write_bytes(b"half")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert final.read_bytes() == b"ok" and not tmp.exists()
    with pytest.raises(KeyError):  # anything else passes through, still without the temp file
        with published(final, tmp) as t:
            t.write_bytes(b"half")
            raise KeyError("bug")
    assert not tmp.exists()
