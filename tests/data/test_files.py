"""files: the one folder walk (regular files only) and bounded, non-blocking reads."""

from __future__ import annotations

import os

import numpy as np
import pytest

from cxrkit.data import files
from cxrkit.data.files import FileReadError, file_problem, iter_image_files, read_bounded, sniff_dicom

pytestmark = pytest.mark.timeout(30)  # a FIFO opened the blocking way would hang here


@pytest.fixture
def odd_folder(tmp_path, make_image, make_dicom):
    root = tmp_path / "scans"
    make_image(root / "a.png")
    make_image(root / "deep" / "b.jpg", fmt="JPEG")
    make_dicom(root / "IM0001", np.zeros((8, 8), np.uint16))
    make_image(root / "masks" / "m.png")
    make_image(root / "deep" / "masks" / "kept.png")  # skip_dirs applies at the top only
    (root / "notes.txt").write_text("x")
    (root / "README").write_text("x" * 200)
    (root / ".DS_Store").write_text("x")
    os.mkfifo(root / "pipe.png")
    os.mkfifo(root / "PIPE")  # suffix-less FIFO: never opened to sniff for DICOM
    os.symlink("/dev/zero", root / "zero.dcm")
    os.symlink(root / "nowhere.png", root / "dangling.png")
    os.symlink(root / "a.png", root / "link.png")  # a symlink to a regular file is fine
    return root


def test_walk_reads_regular_files_only_and_says_why_not(odd_folder):
    found = {f.path.relative_to(odd_folder).as_posix(): f for f in iter_image_files([odd_folder], ["masks"])}
    images = sorted(k for k, f in found.items() if f.is_image and not f.skip_reason)
    assert images == ["IM0001", "a.png", "deep/b.jpg", "deep/masks/kept.png", "link.png"]
    assert "fifo" in found["pipe.png"].skip_reason.lower()
    assert "character device" in found["zero.dcm"].skip_reason
    assert "dangling symlink" in found["dangling.png"].skip_reason
    assert sorted(k for k, f in found.items() if not f.is_image) == ["PIPE", "README", "notes.txt"]
    assert ".DS_Store" not in found and "masks/m.png" not in found


def test_walk_order_is_sorted_and_explicit_files_kept(odd_folder, tmp_path):
    other = tmp_path / "other.txt"
    other.write_text("named explicitly")
    paths = [f.path for f in iter_image_files([odd_folder / "deep", other, tmp_path / "nope.png"])]
    assert paths == [
        odd_folder / "deep" / "b.jpg",
        odd_folder / "deep" / "masks" / "kept.png",
        other,
        tmp_path / "nope.png",
    ]
    last = list(iter_image_files([tmp_path / "nope.png"]))[0]
    assert last.skip_reason == "file not found"


def test_read_bounded_refuses_fifo_device_and_oversize_without_reading(odd_folder, monkeypatch):
    for name, words in [
        ("pipe.png", "FIFO"),
        ("zero.dcm", "character device"),
        ("dangling.png", "dangling"),
        ("deep", "directory"),
    ]:
        with pytest.raises(FileReadError, match=words) as err:
            read_bounded(odd_folder / name)
        assert str(odd_folder / name) in str(err.value)
    size = (odd_folder / "a.png").stat().st_size
    assert read_bounded(odd_folder / "a.png", limit=size) == (odd_folder / "a.png").read_bytes()
    with pytest.raises(FileReadError, match=f"{size:,} bytes, above the {size - 1:,}-byte limit"):
        read_bounded(odd_folder / "a.png", limit=size - 1)
    monkeypatch.setattr(files, "MAX_FILE_BYTES", 10)
    with pytest.raises(FileReadError, match="limit"):
        read_bounded(odd_folder / "a.png")


def test_sniff_and_problem_never_block(odd_folder):
    assert sniff_dicom(odd_folder / "IM0001") and not sniff_dicom(odd_folder / "PIPE")
    assert not sniff_dicom(odd_folder / "README") and not sniff_dicom(odd_folder / "zero.dcm")
    assert file_problem(odd_folder / "a.png") is None and file_problem(odd_folder / "link.png") is None
    assert file_problem(odd_folder / "missing.png") == "file not found"


def test_folder_that_cannot_be_listed_is_reported(odd_folder, monkeypatch):
    real = os.scandir

    def scandir(path="."):
        if str(path).endswith("deep"):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    found = {f.path: f for f in iter_image_files([odd_folder])}
    assert found[odd_folder / "deep"].skip_reason == "cannot list folder (Permission denied): its files are not read"
    assert odd_folder / "deep" / "b.jpg" not in found
