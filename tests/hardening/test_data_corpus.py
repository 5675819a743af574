"""Adversarial data corpus (issue 12, classes 1, 3, 4, 7 on the data side), made by the test.

Every case goes through ``read_image``, ``load_dataset``, ``cxr data inspect`` (a real
process: a traceback or a hang is seen as such) and ``find_images`` + ``cxrkit.load(run).predict``.
Each must end in a clear error naming the file or a recorded skip with the reason, never a
traceback, a hang (pytest-timeout) or an image decoded from invalid pixels.
"""

from __future__ import annotations

import io
import json
import os
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from cxrkit.data import ImageReadError, load_dataset, read_image
from cxrkit.data.sources import DatasetError
from cxrkit.inference.inputs import find_images

pytestmark = pytest.mark.timeout(120)


def _png_with_size(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` with almost no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _encoded(array: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt)
    return buf.getvalue()


def _float_tiff(path: Path, bad_value: float) -> None:
    arr = np.linspace(0, 1000, 64 * 64, dtype=np.float32).reshape(64, 64)
    arr[10, 10] = bad_value
    tifffile.imwrite(path, arr)


@pytest.fixture
def corpus(tmp_path, make_image, make_dicom, synth_array):
    """A class-folder dataset: 3 good images per class plus every kind of bad file.

    Returns (root, good paths, {bad path: words its reason must contain}).
    """
    root = tmp_path / "corpus"
    good = [
        make_image(root / c / f"good{i}.png", seed=i + 10 * k)
        for k, c in enumerate(("covid", "normal"))
        for i in range(3)
    ]
    bad: dict[Path, str] = {}
    a16 = synth_array(1).astype(np.uint16) * 200
    c = root / "covid"
    _float_tiff(c / "nan.tif", np.nan)
    bad[c / "nan.tif"] = "nan"
    _float_tiff(c / "inf.tif", np.inf)
    bad[c / "inf.tif"] = "infinite"
    bad[make_dicom(c / "bits8.dcm", a16, BitsAllocated=8, BitsStored=8, HighBit=7)] = "bitsallocated"
    bad[make_dicom(c / "spp3.dcm", a16, SamplesPerPixel=3)] = "samplesperpixel"
    bad[make_dicom(c / "ww0.dcm", a16, WindowCenter=100, WindowWidth=0)] = "window"
    bad[make_dicom(c / "nopixels.dcm", None)] = "no pixel data"
    bad[make_dicom(c / "frames.dcm", a16, NumberOfFrames=3)] = "numberofframes"
    bad[make_dicom(c / "huge.dcm", a16, Rows=60000, Columns=60000)] = "safety limit"
    n = root / "normal"
    png, jpg = _encoded(synth_array(2), "PNG"), _encoded(synth_array(3), "JPEG")
    (n / "trunc.png").write_bytes(png[: len(png) // 2])
    (n / "trunc.jpg").write_bytes(jpg[: len(jpg) // 3])
    (n / "empty.png").write_bytes(b"")
    (n / "huge.png").write_bytes(_png_with_size(100_000, 100_000))
    (n / "strip.png").write_bytes(_encoded(np.full((2, 400), 90, np.uint8), "PNG"))
    bad.update(
        {
            n / "trunc.png": "truncated",
            n / "trunc.jpg": "truncated",
            n / "empty.png": "empty",
            n / "huge.png": "limit",
            n / "strip.png": "sides",
        }
    )
    os.symlink(n / "gone.png", n / "dangling.png")
    os.mkfifo(n / "fifo.png")
    os.symlink("/dev/zero", n / "zero.png")
    bad.update({n / "dangling.png": "dangling", n / "fifo.png": "fifo", n / "zero.png": "character device"})
    return root, good, bad


def test_read_image_refuses_every_bad_file_naming_it(corpus):
    _, good, bad = corpus
    for path in good:
        assert np.isfinite(read_image(path)).all()
    for path, words in bad.items():
        with pytest.raises(ImageReadError) as err:
            read_image(path)
        assert str(path) in str(err.value) and words in str(err.value).lower(), str(err.value)


def test_load_dataset_lists_non_regular_files_as_skipped(corpus):
    root, good, bad = corpus
    ds = load_dataset(root, "covid,normal")
    listed = {r.path for r in ds.records}
    skipped = {Path(s.path): s.reason for s in ds.skipped}
    for name in ("dangling.png", "fifo.png", "zero.png"):
        path = root / "normal" / name
        assert path not in listed and bad[path] in skipped[path].lower()
    assert set(good) <= listed


def _cxr(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    env = {**os.environ, "CXR_NO_TCMALLOC": "1", "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "cxrkit.cli.main", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


@pytest.mark.slow
def test_cxr_data_inspect_counts_and_lists_every_bad_file(corpus, tmp_path):
    root, good, bad = corpus
    res = _cxr(
        "data", "inspect", str(root), "--classes", "covid,normal", "--workers", "1", "--out", str(tmp_path / "out")
    )
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stdout + res.stderr
    report = json.loads((tmp_path / "out" / "inspect.json").read_text())
    assert report["dataset"]["images"] == len(good)
    skipped = {Path(s["path"]): s["reason"].lower() for s in report["skipped"]}
    assert report["skipped_count"] == len(skipped) == len(bad)
    for path, words in bad.items():
        assert words in skipped[path], (path, skipped[path])
    assert re.search(rf"unreadable files skipped\W+{len(bad)}\b", res.stdout), res.stdout


@pytest.mark.slow
@pytest.mark.timeout(400)  # the shared tiny_run fixture trains once (about 90 s on 2 busy cores)
def test_predict_records_each_failure_and_goes_on(corpus, tiny_run):
    import cxrkit

    root, good, bad = corpus
    explicit_fifo = root / "normal" / "fifo.png"
    files, failures, _ = find_images([root, explicit_fifo])
    non_regular = [root / "normal" / n for n in ("fifo.png", "zero.png", "dangling.png")]
    preds = cxrkit.load(tiny_run.run_dir).predict(files + non_regular)  # given straight to predict, too
    failed = {Path(f.name): f.reason.lower() for f in failures + preds.errors}
    assert {Path(r.name) for r in preds.results} == set(good)
    for path, words in bad.items():
        assert words in failed[path], (path, failed.get(path))
    assert {Path(e.name) for e in preds.errors} >= set(non_regular)
    for r in preds.results:
        assert all(np.isfinite(p) for p in r.probabilities.values())


# ----------------------------------------------------------------------------- manifests and layouts
def _manifest(root: Path, text: str, encoding: str = "utf-8") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "manifest.csv").write_bytes(text.encode(encoding))
    return root


@pytest.mark.slow
def test_manifest_rows_outside_the_folder_are_not_opened(tmp_path, make_image):
    outside = make_image(tmp_path / "elsewhere" / "secret.png")
    root = tmp_path / "m"
    make_image(root / "a.png", seed=1)
    make_image(root / "b.png", seed=2)
    _manifest(
        root,
        f"file,label\na.png,covid\nb.png,normal\n../elsewhere/secret.png,covid\n{outside},normal\n"
        "../../../../etc/passwd,covid\n",
    )
    ds = load_dataset(root, "covid,normal")
    assert sorted(r.path.name for r in ds.records) == ["a.png", "b.png"]
    assert len(ds.skipped) == 3 and all("outside the dataset folder" in s.reason for s in ds.skipped)
    opened = load_dataset(root, "covid,normal", allow_outside_paths=True)
    assert outside.resolve() in {r.path for r in opened.records}
    res = _cxr(
        "data", "split", str(root), "--classes", "covid,normal", "--workers", "1", "--out", str(tmp_path / "split.csv")
    )
    assert res.returncode == 0 and "Traceback" not in res.stderr
    assert "outside the dataset folder" in res.stdout and "passwd" in res.stdout


@pytest.mark.slow
def test_latin1_header_only_and_single_class_messages(tmp_path, make_image):
    latin = tmp_path / "latin"
    make_image(latin / "radiografía1.png", seed=1)
    make_image(latin / "b.png", seed=2)
    _manifest(latin, "file,label,site\nradiografía1.png,covid,Montréal\nb.png,normal,Québec\n", "latin-1")
    ds = load_dataset(latin, "covid,normal")
    assert [r.metadata["site"] for r in ds.records] == ["Québec", "Montréal"]
    assert any("Latin-1" in n for n in ds.notes)

    header_only = _manifest(tmp_path / "header", "file,label,patient_id\n")
    with pytest.raises(DatasetError, match=r"manifest\.csv: the manifest has a header .* but no rows"):
        load_dataset(header_only)

    single = tmp_path / "single"
    make_image(single / "covid" / "a.png", seed=1)
    make_image(single / "covid" / "b.png", seed=2)
    ds = load_dataset(single)  # one class folder, not a zip wrapper around classes "a", "b"
    assert ds.class_counts() == {"covid": 2, "viral_pneumonia": 0, "normal": 0}
    res = _cxr("data", "inspect", str(single), "--classes", "all", "--out", str(tmp_path / "o"))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "need at least two classes, found covid (2)" in res.stderr and "no images found" not in res.stderr
