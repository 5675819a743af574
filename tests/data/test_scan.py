"""scan: every image decoded once; bad files move to ``skipped`` and the scan goes on."""

from __future__ import annotations

import numpy as np
import pytest

from cxrkit.data.dataset import Skipped
from cxrkit.data.images import ImageReadError
from cxrkit.data.scan import ImageInfo, describe_image, scan_dataset
from cxrkit.data.sources import load_dataset


def _dataset_with_bad_files(tmp_path, make_image, n_good: int):
    root = tmp_path / "d"
    for i in range(n_good):
        make_image(root / ("covid" if i % 2 else "normal") / f"img{i:03d}.png", seed=i, shape=(20, 24))
    bad = make_image(root / "covid" / "img_trunc.png", seed=999, shape=(96, 96))
    bad.write_bytes(bad.read_bytes()[:300])
    empty = root / "normal" / "img_empty.png"
    empty.write_bytes(b"")
    return load_dataset(root, "covid,normal"), bad, empty


@pytest.mark.parametrize(
    "n_good,workers", [(6, 1), (6, 2), (80, 1), (80, 2)], ids=["serial", "few-files-no-pool", "many-serial", "pool"]
)
def test_bad_files_skipped_scan_goes_on(tmp_path, make_image, n_good, workers):
    ds, bad, empty = _dataset_with_bad_files(tmp_path, make_image, n_good)
    assert len(ds) == n_good + 2
    calls = []
    clean, infos = scan_dataset(
        ds, workers=workers, progress=lambda i, n: calls.append((i, n)), cache_dir=tmp_path / "cache"
    )
    assert len(clean) == len(infos) == n_good
    assert all(r.path.name.startswith("img0") for r in clean.records)
    skipped = {s.path: s.reason for s in clean.skipped}
    assert set(skipped) == {str(bad.resolve()), str(empty.resolve())}
    assert "truncated" in skipped[str(bad.resolve())] or "corrupt" in skipped[str(bad.resolve())]
    assert "empty" in skipped[str(empty.resolve())]
    assert all(isinstance(s, Skipped) for s in clean.skipped)
    assert all(i == ImageInfo(24, 20, "L", i.phash) and len(i.phash) == 64 for i in infos)
    assert calls[-1] == (n_good + 2, n_good + 2) and len(calls) == n_good + 2
    assert not ds.skipped  # the input dataset is left alone
    assert clean.classes == ds.classes and clean.root == ds.root


def test_pool_and_serial_give_same_hashes(tmp_path, make_image):
    ds, _, _ = _dataset_with_bad_files(tmp_path, make_image, 70)
    _, serial = scan_dataset(ds, workers=1, cache_dir=tmp_path / "c1")
    _, pooled = scan_dataset(ds, workers=2, cache_dir=tmp_path / "c2")
    assert serial == pooled
    assert len({i.phash for i in serial}) == 70  # distinct images, distinct hashes


def test_scan_keeps_earlier_skipped(tmp_path, make_image):
    root = tmp_path / "d"
    make_image(root / "covid.png")
    make_image(root / "normal.png", seed=1)
    (root / "manifest.csv").write_text("file,label\ncovid.png,covid\nnormal.png,normal\nnope.png,normal\n")
    ds = load_dataset(root, "covid,normal")
    clean, infos = scan_dataset(ds, workers=1)
    assert len(clean) == 2 and [s.reason for s in clean.skipped] == [ds.skipped[0].reason]


def test_scan_is_saved_and_reread_until_a_file_changes(tmp_path, make_image, monkeypatch):
    ds, bad, _ = _dataset_with_bad_files(tmp_path, make_image, 6)
    first = scan_dataset(ds, workers=1, cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("scan-*.json"))) == 1

    def no_decoding(path):
        raise AssertionError(f"{path} decoded again")

    monkeypatch.setattr("cxrkit.data.scan._describe_or_error", no_decoding)
    again = scan_dataset(ds, workers=1, cache_dir=tmp_path / "cache")
    assert again[1] == first[1] and again[0].skipped == first[0].skipped
    monkeypatch.undo()
    make_image(bad, seed=5, shape=(20, 24))  # the truncated file repaired: scanned anew
    repaired, infos = scan_dataset(ds, workers=1, cache_dir=tmp_path / "cache")
    assert len(infos) == 7 and len(repaired.skipped) == 1
    for saved in (tmp_path / "cache").glob("scan-*.json"):
        saved.write_text("[{")  # torn or garbled: scanned anew, never an error
    assert scan_dataset(ds, workers=1, cache_dir=tmp_path / "cache")[1] == infos


def test_describe_image_modes(make_image, make_dicom):
    assert describe_image(make_image("a.png", shape=(30, 40))).mode == "L"
    info = describe_image(make_image("b.png", np.zeros((5, 7, 3), np.uint8)))
    assert (info.width, info.height, info.mode) == (7, 5, "RGB")
    info = describe_image(make_dicom("c.dcm", np.arange(12, dtype=np.uint16).reshape(3, 4)))
    assert (info.width, info.height) == (4, 3)
    assert info.mode == "DICOM MONOCHROME2 16-bit"


def test_describe_image_errors(tmp_path):
    with pytest.raises(ImageReadError, match="missing.png: file not found"):
        describe_image(tmp_path / "missing.png")
