"""Shared test fixtures: synthetic images (never real radiographs) written into tmp_path."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def pytest_configure(config):
    """Keep the tests' image and scan caches out of the user's ~/.cache (and out of each other's)."""
    os.environ.setdefault("CXR_CACHE", tempfile.mkdtemp(prefix="cxrkit-test-cache-"))


def xray_like(seed: int = 0, shape: tuple[int, int] = (64, 64)) -> np.ndarray:
    """A smooth random uint8 image (coarse noise upsampled): distinct per seed, hash-stable."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray((rng.random((8, 8)) * 255).astype(np.uint8))
    return np.array(coarse.resize((shape[1], shape[0]), Image.BICUBIC), dtype=np.uint8)


@pytest.fixture
def multiprocess_env() -> dict:
    """Environment for tests that start 2 training/prediction processes on this machine's cores."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "CXR_NO_TCMALLOC": "1"}


@pytest.fixture
def synth_array():
    """``synth_array(seed=0, shape=(64, 64))`` -> smooth random uint8 2-D array."""
    return xray_like


@pytest.fixture
def make_image(tmp_path):
    """Write a synthetic image and return its path.

    ``make_image("covid/a.png")`` writes a 64x64 8-bit image (seeded by ``seed``);
    ``array`` (numpy) or ``image`` (PIL) give the content, ``fmt`` and ``save`` keyword
    arguments go to ``PIL.Image.save``. Relative paths are under ``tmp_path``; parent
    folders are created.
    """

    def _make(
        path: str | Path,
        array: np.ndarray | None = None,
        *,
        image: Image.Image | None = None,
        seed: int = 0,
        shape: tuple[int, int] = (64, 64),
        fmt: str | None = None,
        **save,
    ) -> Path:
        path = Path(path)
        if not path.is_absolute():
            path = tmp_path / path
        path.parent.mkdir(parents=True, exist_ok=True)
        if image is None:
            image = Image.fromarray(xray_like(seed, shape) if array is None else np.asarray(array))
        image.save(path, format=fmt, **save)
        return path

    return _make


@pytest.fixture
def make_dicom(tmp_path):
    """Write a DICOM file with pydicom and return its path.

    ``make_dicom("a.dcm", array, photometric="MONOCHROME2", RescaleSlope=2, ...)``: the
    array's dtype sets the bit depth and sign, a 3-D ``(h, w, 3)`` array makes an RGB
    image, ``array=None`` makes an object without PixelData; keyword arguments become
    DICOM attributes.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    def _make(path: str | Path, array: np.ndarray | None, photometric: str = "MONOCHROME2", **attrs) -> Path:
        path = Path(path)
        if not path.is_absolute():
            path = tmp_path / path
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.Modality = "DX"
        if array is not None:
            arr = np.ascontiguousarray(array)
            ds.Rows, ds.Columns = arr.shape[:2]
            ds.PhotometricInterpretation = photometric
            ds.SamplesPerPixel = 3 if arr.ndim == 3 else 1
            if arr.ndim == 3:
                ds.PlanarConfiguration = 0
            bits = arr.dtype.itemsize * 8
            ds.BitsAllocated = bits
            ds.BitsStored = bits
            ds.HighBit = bits - 1
            ds.PixelRepresentation = 1 if arr.dtype.kind == "i" else 0
            ds.PixelData = arr.tobytes()
        for key, value in attrs.items():
            setattr(ds, key, value)
        ds.save_as(path, enforce_file_format=True)
        return path

    return _make


BLOB_CENTRES = {"covid": (16, 16), "viral_pneumonia": (16, 48), "normal": (48, 32)}


def write_blob_dataset(root: Path, per_class: int = 24, size: int = 64, seed: int = 0) -> Path:
    """Class folders whose class is the position of one bright blob: learnable in seconds.

    Each class has its own known region, which also makes it a target for explanation tests.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    scale = size / 64
    for label, (cy, cx) in BLOB_CENTRES.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = rng.normal(100, 20, (size, size))
            img += 120 * np.exp(-((yy - cy * scale) ** 2 + (xx - cx * scale) ** 2) / (60 * scale**2))
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / label / f"{label}_{i:03d}.png")
    return root


@pytest.fixture(scope="session")
def blob_dataset(tmp_path_factory) -> Path:
    """A session-wide 3-class synthetic dataset (24 images per class, 64 px)."""
    return write_blob_dataset(tmp_path_factory.mktemp("blobs"))


def write_blob_folder(root: Path, label: str, centre: tuple[int, int], n: int, seed: int = 0) -> Path:
    """``n`` 64 px films of one blob at ``centre`` in ``root/label``: an extra label (an auxiliary
    class, a site's shifted acquisition) beside :func:`write_blob_dataset`'s classes."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:64, :64]
    (root / label).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = rng.normal(100, 20, (64, 64)) + 120 * np.exp(-((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) / 60)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / label / f"{label}_{i:03d}.png")
    return root


@pytest.fixture(scope="session")
def blob_folder():
    """``blob_folder(root, label, centre, n, seed=0)`` writes one more label of blob films."""
    return write_blob_folder


def _tiny_settings(cache, **overrides) -> dict:
    """TrainConfig fields of a seconds-long run of resdense_tiny at 64 px on CPU (no data/out)."""
    base = dict(
        model="resdense_tiny",
        pretrained=False,
        input_size=64,
        epochs=4,
        batch_size=8,
        lr=3e-3,
        warmup_epochs=0.5,
        workers=1,
        cache_dir=str(cache),
        patience=10,
        # the pipeline tests' fixed recipe: explanation tests locate the class blob to 12 px, which
        # robust augmentation's wider zoom and shift smear at 64 px; robust training is covered
        # by tests/training/test_aux_classes.py
        augment="basic",
    )
    return {**base, **overrides}


def _tiny_config(data, out, cache, **overrides):
    """A TrainConfig for a seconds-long run of resdense_tiny at 64 px on CPU."""
    from cxrkit.training import TrainConfig

    return TrainConfig(data=str(data), out=str(out), **_tiny_settings(cache, **overrides))


@pytest.fixture(scope="session")
def tiny_settings():
    """``tiny_settings(cache, **overrides)`` -> the fields of :func:`tiny_config` as a dict (no data/out)."""
    return _tiny_settings


def _tiny_train_argv(data, out, cache, *flags: str) -> list[str]:
    """``python -m cxrkit train`` of a seconds-long resdense_tiny run, as a user launches it; ``flags``
    are added at the end (later flags win, e.g. ``"--input-size", "64"``)."""
    return [
        *(sys.executable, "-m", "cxrkit", "train", "--data", str(data), "--out", str(out)),
        *("--model", "resdense_tiny", "--pretrained", "none", "--epochs", "2", "--input-size", "32"),
        *("--workers", "1", "--cache-dir", str(cache), *flags),
    ]


@pytest.fixture(scope="session")
def tiny_train_argv():
    """``tiny_train_argv(data, out, cache, *flags)`` -> argv of a seconds-long ``cxr train`` process."""
    return _tiny_train_argv


@pytest.fixture(scope="session")
def tiny_config():
    """``tiny_config(data, out, cache, **overrides)`` -> TrainConfig of a seconds-long run."""
    return _tiny_config


@pytest.fixture(scope="session")
def tiny_run(blob_dataset, tmp_path_factory):
    """A trained run on the blob dataset, shared by every test that needs a model (read-only)."""
    from cxrkit.training import train

    root = tmp_path_factory.mktemp("tiny_run")
    return train(_tiny_config(blob_dataset, root / "run", root / "cache"), progress_bar=False)


@pytest.fixture(scope="session")
def blob_writer():
    """``blob_writer(root, per_class=24, size=64, seed=0)`` writes another blob dataset."""
    return write_blob_dataset
