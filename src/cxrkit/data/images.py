"""Decode any chest X-ray file into one grayscale array.

Every later step (hashing, training, evaluation, serving) sees the same pixels because they
all go through :func:`read_gray` (the file's own levels: uint8, uint16 or float32 in [0, 1],
cheap to preprocess) or :func:`read_image` (the same, always as float32 in [0, 1]).
PNG/JPEG/BMP/TIFF in 8 or 16 bit and any PIL mode, with EXIF orientation applied; DICOM
through pydicom with rescale, VOI LUT/windowing and MONOCHROME1 inversion.

A raster file of several frames (animated PNG/GIF/WebP, multi-page TIFF) is refused
(:func:`check_frames`): which frame is the film is not known, and frame 0 of an animation can be
black, which used to be predicted as if it were the film. (A multi-frame DICOM gives its first frame.)

Decoded pixels are checked before anyone sees them (:func:`check_pixels`): a float TIFF
with one NaN would otherwise min-max into a blank model input, and a DICOM whose
BitsAllocated or SamplesPerPixel disagrees with its pixel data decodes into noise. Anything
unreadable or implausible raises :class:`ImageReadError` naming the file and the reason,
whatever the decoder raised; only regular files of at most ``MAX_FILE_BYTES`` are read.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import CxrkitError
from .files import IMAGE_SUFFIXES, MAX_FILE_BYTES, FileReadError, is_dicom, is_image_file, read_bounded

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_FILE_BYTES",
    "MAX_PIXELS",
    "MAX_ASPECT",
    "ImageReadError",
    "is_dicom",
    "is_image_file",
    "read_image",
    "read_gray",
    "as_float01",
    "check_pixels",
    "check_size",
    "check_frames",
    "shrink",
    "WORK_SIDE",
]

# Long side a film is reduced to before per-pixel work where only a picture of it is needed
# (the service, `cxr explain`): model inputs are 224-512 px, overlay panels at most 800 px.
WORK_SIDE = 2048

# Largest image we agree to decode: 64 megapixels is far above any radiograph (a 43x43 cm
# detector at 0.1 mm is ~18 MP) and far below what would exhaust memory.
MAX_PIXELS = 64_000_000
# Widest side over shortest side we accept: radiographs are about 1.2 (a stitched long-leg or
# spine view about 3); a 2x5000 strip is a corrupt header, not an X-ray.
MAX_ASPECT = 8.0


class ImageReadError(CxrkitError, ValueError):
    """A file that cannot become an image; ``str()`` names the file and the reason."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # pickle with both arguments (errors cross process boundaries)
        return type(self), (self.path, self.reason)


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
            data = read_bounded(source)
        except FileReadError as exc:
            raise ImageReadError(label, exc.reason) from None
    if not data:
        raise ImageReadError(label, "file is empty (0 bytes)")
    if len(data) > MAX_FILE_BYTES:
        raise ImageReadError(label, f"{len(data):,} bytes, above the {MAX_FILE_BYTES:,}-byte limit")
    try:
        gray = _read_dicom(data, label) if is_dicom(data) else _read_raster(data, label)
    except ImageReadError:
        raise
    except MemoryError:
        raise ImageReadError(label, "not enough memory to decode this image") from None
    except Exception as exc:  # noqa: BLE001 - any decoder failure is this file's problem, not a crash
        raise ImageReadError(label, f"cannot decode image ({type(exc).__name__}: {exc})") from None
    return check_pixels(gray, label)


def check_pixels(gray: np.ndarray, label: str) -> np.ndarray:
    """``gray`` if it is a plausible decoded radiograph, else :class:`ImageReadError`.

    2-D, at least 2x2 pixels, sides within :data:`MAX_ASPECT`, and for float arrays every
    value finite and in [0, 1] (NaN/inf never reach a model).
    """
    if gray.ndim != 2:
        raise ImageReadError(label, f"decoded to an array of shape {gray.shape}, not a 2-D image")
    check_size(gray.shape[1], gray.shape[0], label)
    if gray.dtype.kind == "f":
        bad = int(np.count_nonzero(~np.isfinite(gray)))
        if bad:
            raise ImageReadError(label, f"{bad:,} of {gray.size:,} pixels are NaN or infinite")
        if gray.min() < 0 or gray.max() > 1:
            raise ImageReadError(label, "decoded values outside [0, 1] (a decoder bug?)")
    return gray


def check_size(w: int, h: int, label: str) -> None:
    """Refuse sizes no radiograph has: a side under 2 px, or sides more than ``MAX_ASPECT`` apart.

    Also called on the header's size before anything is downscaled (the service), so the
    message names the size that was sent, not the size after a reduction."""
    if min(h, w) < 2:
        raise ImageReadError(label, f"image is only {w}x{h} pixels")
    if max(h, w) > MAX_ASPECT * min(h, w):
        raise ImageReadError(
            label,
            f"image is {w}x{h} pixels: sides differ by more than {MAX_ASPECT:g}x, not a radiograph (a corrupt header?)",
        )


def check_frames(img: Image.Image, label: str) -> None:
    """Refuse a raster image of more than one frame, naming the file (see the module docstring)."""
    frames = getattr(img, "n_frames", 1)
    if isinstance(frames, int) and frames > 1:
        raise ImageReadError(
            label,
            f"an image of {frames} frames (animated or multi-page); a radiograph is one still image and "
            "which frame is the film is not known: save the film alone as a single-frame PNG, JPEG or TIFF",
        )


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
            check_frames(img, label)
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
_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


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
        return _minmax(arr.astype(np.float64))  # NaN/inf stay NaN and are refused by check_pixels
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
    if not np.isfinite(arr).all():  # keep the non-finite pixels visible to check_pixels
        return np.where(np.isfinite(arr), 0.0, np.nan).astype(np.float32)
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
        for keyword, tag in (("FloatPixelData", "7FE0,0008"), ("DoubleFloatPixelData", "7FE0,0009")):
            if keyword in ds:
                raise ImageReadError(
                    label,
                    f"DICOM stores its pixels as {keyword} ({tag}), which cxrkit does not read; "
                    "export the image with integer Pixel Data (7FE0,0010)",
                )
        raise ImageReadError(label, "DICOM file has no pixel data (a report or structured document?)")
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    if rows * cols > MAX_PIXELS:
        raise ImageReadError(label, f"DICOM image is {cols}x{rows}, above the safety limit")
    frames, samples = _check_dicom_header(ds, label, rows, cols)
    try:
        arr = ds.pixel_array
    except Exception as exc:  # pydicom raises many types (missing JPEG plugins, bad lengths...)
        raise ImageReadError(
            label,
            f"cannot decode DICOM pixels ({type(exc).__name__}: {exc}); compressed transfer "
            "syntaxes may need `pip install pylibjpeg pylibjpeg-libjpeg`",
        ) from None
    expected = (frames,) * (frames > 1) + (rows, cols) + (samples,) * (samples > 1)
    if arr.shape != expected:
        raise ImageReadError(
            label,
            f"DICOM pixels decode to shape {arr.shape}, but the header says "
            f"{frames} frame(s) of {cols}x{rows} with {samples} sample(s) per pixel",
        )
    if frames > 1:
        arr = arr[0]  # a radiograph is one frame; take the first of a multi-frame object
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if arr.ndim == 3:  # colour DICOM (RGB after pydicom's YBR conversion)
        arr = arr[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        return _minmax(arr)
    arr = apply_modality_lut(arr, ds)
    if "WindowCenter" in ds or "VOILUTSequence" in ds:
        try:
            arr = apply_voi_lut(arr, ds)
        except ValueError as exc:  # e.g. WindowWidth 0: "must be greater than or equal to 1"
            raise ImageReadError(
                label,
                f"invalid DICOM window (WindowCenter/WindowWidth or VOI LUT): {exc}; fix or remove those attributes",
            ) from None
    out = _minmax(np.asarray(arr, dtype=np.float64))
    if photometric == "MONOCHROME1":
        out = 1.0 - out
    return out


_MONO = ("MONOCHROME1", "MONOCHROME2", "PALETTE COLOR")


def _check_dicom_header(ds, label: str, rows: int, cols: int) -> tuple[int, int]:
    """(frames, samples per pixel) once the image attributes agree with each other and, for
    uncompressed data, with the length of PixelData; else :class:`ImageReadError`.

    pydicom decodes 16-bit data declared as 8-bit into twice the frames without an error
    (the excess is only a warning), which would become a garbage image.
    """
    from pydicom.uid import ExplicitVRLittleEndian

    def number(key, default):
        try:
            return int(ds.get(key, default) or default)
        except (TypeError, ValueError):
            raise ImageReadError(label, f"DICOM {key} is not a number ({ds.get(key)!r})") from None

    frames, samples = number("NumberOfFrames", 1), number("SamplesPerPixel", 1)
    allocated, stored = number("BitsAllocated", 0), number("BitsStored", number("BitsAllocated", 0))
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    problems = []
    if rows < 1 or cols < 1:
        problems.append(f"Rows x Columns is {rows}x{cols}")
    if frames < 1:
        problems.append(f"NumberOfFrames is {frames}")
    if allocated not in (1, 8, 16, 32, 64):
        problems.append(f"BitsAllocated is {allocated} (1, 8, 16, 32 or 64 expected)")
    if not 1 <= stored <= max(allocated, 1):
        problems.append(f"BitsStored {stored} does not fit BitsAllocated {allocated}")
    if samples not in (1, 3) or (samples == 1) != photometric.startswith(_MONO):
        problems.append(f"SamplesPerPixel {samples} does not fit PhotometricInterpretation {photometric}")
    syntax = getattr(ds, "file_meta", {}).get("TransferSyntaxUID") or ExplicitVRLittleEndian
    if not problems and not syntax.is_compressed:
        expected = (rows * cols * samples * frames * allocated + 7) // 8
        actual = len(ds.PixelData)
        if actual not in (expected, expected + 1):  # one byte of padding to an even length is legal
            problems.append(
                f"PixelData has {actual:,} bytes but {frames} frame(s) of {cols}x{rows} x "
                f"{samples} sample(s) x {allocated} bits need {expected:,} "
                "(BitsAllocated, SamplesPerPixel or NumberOfFrames is wrong)"
            )
    if problems:
        raise ImageReadError(label, "inconsistent DICOM image attributes: " + "; ".join(problems))
    return frames, samples


def shrink(gray: np.ndarray, side: int) -> np.ndarray:
    """A float32 gray image with its long side reduced to ``side`` (bilinear); smaller ones as they are.

    Done before any per-pixel work on a huge film (contrast, CAM overlay): an 8000x8000 image
    is 256 MB as float32, and drawing its overlay at full size took 5 GB."""
    h, w = gray.shape
    if max(h, w) <= side:
        return gray
    scale = side / max(h, w)
    small = Image.fromarray(np.asarray(gray, np.float32), mode="F").resize(
        (max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BILINEAR
    )
    return np.asarray(small, np.float32)
