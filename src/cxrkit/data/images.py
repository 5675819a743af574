"""Decode any chest X-ray file into one grayscale array.

Every later step (hashing, training, evaluation, serving) sees the same pixels because they
all go through :func:`read_gray` (the file's own levels: uint8, uint16 or float32 in [0, 1],
cheap to preprocess) or :func:`read_image` (the same, always as float32 in [0, 1]).
PNG/JPEG/BMP/TIFF in 8 or 16 bit and any PIL mode, with EXIF orientation applied; DICOM
through pydicom with rescale, VOI LUT/windowing and MONOCHROME1 inversion. Anything
unreadable raises :class:`ImageReadError` naming the file.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import CxrkitError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm", ".dicom"})

# Largest image we agree to decode: 64 megapixels is far above any radiograph (a 43x43 cm
# detector at 0.1 mm is ~18 MP) and far below what would exhaust memory.
MAX_PIXELS = 64_000_000


class ImageReadError(CxrkitError, ValueError):
    """A file that cannot become an image; ``str()`` names the file and the reason."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # pickle with both arguments (errors cross process boundaries)
        return type(self), (self.path, self.reason)


def is_image_file(path: Path) -> bool:
    """True when the suffix is one we read (DICOM files without suffix are sniffed elsewhere)."""
    return path.suffix.lower() in IMAGE_SUFFIXES


def is_dicom(data: bytes) -> bool:
    return len(data) >= 132 and data[128:132] == b"DICM"


def read_image(source: str | Path | bytes, name: str | None = None) -> np.ndarray:
    """Read a file path or raw bytes into a 2-D float32 array in [0, 1].

    ``name`` is used in error messages when ``source`` is bytes (e.g. an upload).
    """
    return as_float01(read_gray(source, name))


def as_float01(gray: np.ndarray) -> np.ndarray:
    """A :func:`read_gray` array (uint8, uint16 or float in [0, 1]) as float32 in [0, 1]."""
    if gray.dtype == np.uint8:
        return gray.astype(np.float32) / np.float32(255)
    if gray.dtype == np.uint16:
        return (gray.astype(np.float64) / 65535.0).astype(np.float32)
    return gray.astype(np.float32, copy=False)


def read_gray(source: str | Path | bytes, name: str | None = None) -> np.ndarray:
    """Read a file path or raw bytes into a 2-D gray array at the file's own precision.

    8-bit images come back as uint8 and 16-bit ones as uint16 (no float conversion, so
    prediction from PNG files stays fast); DICOM and other images as float32 in [0, 1].
    """
    if isinstance(source, (bytes, bytearray)):
        data, label = bytes(source), name or "<bytes>"
    else:
        label = str(source)
        try:
            data = Path(source).read_bytes()
        except FileNotFoundError:
            raise ImageReadError(label, "file not found") from None
        except IsADirectoryError:
            raise ImageReadError(label, "is a directory, not an image file") from None
        except OSError as exc:
            raise ImageReadError(label, f"cannot read file ({exc.strerror or exc})") from None
    if not data:
        raise ImageReadError(label, "file is empty (0 bytes)")
    if is_dicom(data):
        return _read_dicom(data, label)
    return _read_raster(data, label)


def _read_raster(data: bytes, label: str) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            if img.width * img.height > MAX_PIXELS:
                raise ImageReadError(
                    label,
                    f"image is {img.width}x{img.height} pixels, above the {MAX_PIXELS:,}-pixel "
                    "safety limit (possible decompression bomb)",
                )
            img.load()
            img = _upright(img)
    except ImageReadError:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ImageReadError(label, f"refused as a possible decompression bomb ({exc})") from None
    except UnidentifiedImageError:
        raise ImageReadError(label, "not an image file PIL or pydicom can recognise") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(label, f"corrupt or truncated image ({exc})") from None
    if img.width < 2 or img.height < 2:
        raise ImageReadError(label, f"image is only {img.width}x{img.height} pixels")
    return _to_gray(img)


# EXIF Orientation -> the transpose that shows the image upright (as in ImageOps.exif_transpose)
_ORIENTATION = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
                4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
                6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
                8: Image.Transpose.ROTATE_90}


def _upright(img: Image.Image) -> Image.Image:
    """Apply the EXIF orientation. Unlike ``ImageOps.exif_transpose`` this does not rewrite
    the EXIF block, which raises ``struct.error`` on some corrupt but readable metadata."""
    orientation = img.getexif().get(0x0112, 1)
    method = _ORIENTATION.get(orientation) if isinstance(orientation, int) else None
    return img.transpose(method) if method is not None else img


def _to_gray(img: Image.Image) -> np.ndarray:
    """Any PIL mode -> uint8 or uint16 gray, or float32 in [0, 1] for other sample formats.
    Alpha is composited over black (X-ray background)."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img)
        if mode.startswith("I;16") or (mode == "I" and arr.min() >= 0 and arr.max() <= 65535):
            return arr.astype(np.uint16)
        return _minmax(arr.astype(np.float64))
    if mode == "P":
        img = img.convert("RGBA")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        img = img.convert("RGB")
    elif mode == "1":
        img = img.convert("L")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        img = Image.alpha_composite(black, rgba)
    if img.mode != "L":
        img = img.convert("L")
    return np.asarray(img)


def _minmax(arr: np.ndarray) -> np.ndarray:
    lo, hi = float(arr.min()), float(arr.max())
    if hi <= lo:
        return np.zeros(arr.shape, np.float32)
    return ((arr - lo) / (hi - lo)).astype(np.float32)


def _read_dicom(data: bytes, label: str) -> np.ndarray:
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
        raise ImageReadError(label, f"corrupt DICOM file ({exc})") from None
    if "PixelData" not in ds:
        raise ImageReadError(label, "DICOM file has no pixel data (a report or structured document?)")
    rows, cols = int(ds.get("Rows", 0)), int(ds.get("Columns", 0))
    if rows * cols > MAX_PIXELS:
        raise ImageReadError(label, f"DICOM image is {cols}x{rows}, above the safety limit")
    try:
        arr = ds.pixel_array
    except Exception as exc:  # pydicom raises many types (missing JPEG plugins, bad lengths...)
        raise ImageReadError(
            label,
            f"cannot decode DICOM pixels ({type(exc).__name__}: {exc}); compressed transfer "
            "syntaxes may need `pip install pylibjpeg pylibjpeg-libjpeg`",
        ) from None
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        arr = arr[0]  # a radiograph is one frame; take the first of a multi-frame object
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if arr.ndim == 3:  # colour DICOM (RGB after pydicom's YBR conversion)
        arr = arr[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        return _minmax(arr)
    arr = apply_modality_lut(arr, ds)
    if "WindowCenter" in ds or "VOILUTSequence" in ds:
        arr = apply_voi_lut(arr, ds)
    out = _minmax(np.asarray(arr, dtype=np.float64))
    if photometric == "MONOCHROME1":
        out = 1.0 - out
    return out
