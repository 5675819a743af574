"""Decode an upload with bounded memory: pixels checked from the header, huge images reduced.

The byte limit alone lets through a 6.6 MB JPEG of 8000x8000 (64 MP): decoded as float32 it
is 256 MB, and the overlay drawn at full size took the server to 4.8 GB (issue 12). Here:

1. the header's width x height (PIL, or the DICOM Rows/Columns) is checked against
   ``Limits.max_pixels`` before a pixel is decoded: above it, 413;
2. a raster image whose long side exceeds ``Limits.work_side`` (2048) is reduced before
   anything else: JPEGs are decoded by libjpeg at 1/2..1/8 scale (``Image.draft``, an
   8000x8000 JPEG becomes 4000x4000 without ever existing at full size), then resized and
   handed to the Predictor's own reader as an uncompressed TIFF, so every format keeps the
   one decoding path (modes, 16-bit, alpha); DICOMs are decoded, then resized;
3. the image under the CAM overlay is reduced again to ``Limits.overlay_side`` (1024).

The model input (224-512 px) is made from the reduced image, so for images above 2048 px
the service's probabilities may differ slightly from ``cxr predict`` on the same file.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps

from ..data.images import ImageReadError, check_frames, check_size, is_dicom, shrink
from ..errors import CxrkitError
from .limits import Limits
from .responses import HttpError

# modes TIFF stores as they are; others (HSV, LAB...) go to RGB first
_TIFF_MODES = {"1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "YCbCr", "I;16", "I;16B", "I", "F"}


def decode_upload(predictor, data: bytes, name: str, limits: Limits) -> np.ndarray:
    """The upload as gray float32 (H, W) in [0, 1], long side at most ``limits.work_side``."""
    size = header_size(data, name)
    if size is not None and size[0] * size[1] > limits.max_pixels:
        raise HttpError(
            413,
            f"{name}: image is {size[0]}x{size[1]} pixels, above this service's limit of "
            f"{limits.max_pixels:,} pixels; send a smaller image",
        )
    if size is not None and all(size):  # judged at the size sent, not after the reduction below
        try:
            check_size(*size, name)
        except ImageReadError as exc:
            raise HttpError(422, str(exc)) from None
    if size is not None and max(size) > limits.work_side and not is_dicom(data):
        data = _reduced_raster(data, name, limits.work_side)
    try:
        gray = predictor.decode(data, name)
    except CxrkitError as exc:
        raise HttpError(422, str(exc)) from None
    except Exception as exc:  # a decoder bug on an odd file is still the file's problem, not a 500
        raise HttpError(422, f"{name}: cannot decode the image ({type(exc).__name__})") from None
    return shrink(gray, limits.work_side)


def header_size(data: bytes, name: str) -> tuple[int, int] | None:
    """(width, height) from the header alone; None when the header is unreadable (the reader
    then names the problem)."""
    if is_dicom(data):
        import pydicom

        try:
            ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
            return int(ds.get("Columns", 0) or 0), int(ds.get("Rows", 0) or 0)
        except Exception:
            return None
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.size
    except Image.DecompressionBombError as exc:
        raise HttpError(413, f"{name}: refused as a possible decompression bomb ({exc})") from None
    except Exception:
        return None


def _reduced_raster(data: bytes, name: str, side: int) -> bytes:
    """The raster image with its long side reduced to ``side``, upright, as uncompressed TIFF."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            check_frames(img, name)  # as the reader does: the reduced copy would keep frame 0 alone
            img.draft(None, (side, side))  # JPEG: decode at the smallest DCT scale still >= side
            if img.mode == "P":
                img = img.convert("RGBA")
            img.thumbnail((side, side), Image.Resampling.BILINEAR, reducing_gap=None)
            try:
                img = ImageOps.exif_transpose(img)
            except Exception:  # corrupt orientation metadata: keep the image as stored, like the reader
                pass
            if img.mode not in _TIFF_MODES:
                img = img.convert("RGB")
            buf = io.BytesIO()
            img.save(buf, format="TIFF")
    except ImageReadError as exc:
        raise HttpError(422, str(exc)) from None
    except Exception as exc:
        raise HttpError(422, f"{name}: corrupt or truncated image ({type(exc).__name__}: {exc})") from None
    return buf.getvalue()


__all__ = ["decode_upload", "header_size", "shrink"]
