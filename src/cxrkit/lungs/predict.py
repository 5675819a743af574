"""``cxr lungs predict``: masks (PNG), overlays (PNG), boxes and quality flags (JSON) per image.

``lungs.json`` holds, for every input: the mask and overlay files, the lung box (with the
margin, in image pixels), the lung fraction and the quality flag with its reason; unreadable
files are listed with the error and the others still predicted. Overlays carry the research
notice, since a clinician may see them.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from .._io import atomic_write_bytes, atomic_write_json
from .._meta import RESEARCH_NOTICE
from ..data import read_image
from ..errors import CxrkitError
from .locate import lung_roi_box
from .segmenter import LungSegmenter, as_uint8

OK_COLOUR, BAD_COLOUR = (40, 200, 80), (230, 50, 40)


def overlay_rgb(gray: np.ndarray, mask: np.ndarray, box=None, ok: bool = True, caption: str = "") -> Image.Image:
    """The image with the lungs tinted, their outline, the ROI box and a caption line."""
    gray = as_uint8(gray)
    colour = np.array(OK_COLOUR if ok else BAD_COLOUR, np.float32)
    rgb = np.repeat(gray[..., None], 3, axis=2).astype(np.float32)
    rgb[mask] = 0.75 * rgb[mask] + 0.25 * colour
    rgb[mask & ~ndimage.binary_erosion(mask, iterations=2)] = colour
    im = Image.fromarray(rgb.round().astype(np.uint8))
    draw = ImageDraw.Draw(im)
    if box is not None:
        draw.rectangle([box[0], box[1], box[2] - 1, box[3] - 1], outline=(250, 200, 0), width=2)
    lines = _wrap([caption] if caption else [], draw, im.width) + _wrap(
        re.split(r"(?<=\.) ", RESEARCH_NOTICE), draw, im.width
    )
    top = im.height - 12 * len(lines)
    draw.rectangle([0, top, im.width, im.height], fill=(0, 0, 0))
    for i, line in enumerate(lines):
        draw.text((2, top + 12 * i), line, fill=(255, 255, 255))
    return im


def _wrap(parts: list[str], draw: ImageDraw.ImageDraw, width: int) -> list[str]:
    """Join sentence ``parts`` into lines that fit ``width`` px, so the notice is never cut off."""
    lines: list[str] = []
    for part in parts:
        if lines and draw.textlength(f"{lines[-1]} {part}") <= width - 4:
            lines[-1] = f"{lines[-1]} {part}"
        else:
            lines.append(part)
    return lines


def png(image: Image.Image | np.ndarray) -> bytes:
    buf = io.BytesIO()
    (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(buf, format="PNG")
    return buf.getvalue()


def predict_to_dir(
    run_dir: str | Path,
    paths,
    out: str | Path,
    margin: float = 0.05,
    overlays: bool = True,
    batch_size: int = 32,
    backend: str = "torch",
) -> dict:
    """Segment ``paths`` and write ``out/masks``, ``out/overlays`` and ``out/lungs.json``."""
    seg = LungSegmenter.from_run(run_dir, backend=backend)
    out = Path(out)
    results = []
    paths = [Path(p) for p in paths]
    for start in range(0, len(paths), batch_size):
        chunk, images = [], []
        for p in paths[start : start + batch_size]:
            try:
                images.append(read_image(p))
                chunk.append(p)
            except (CxrkitError, OSError) as exc:
                results.append({"file": str(p), "error": str(exc)})
        for p, image, mask in zip(chunk, images, seg.predict_masks(images, batch_size)):
            name = f"{len(results):05d}_{p.stem}"  # input order, unique even for equal names
            ok, reason = seg.quality(mask)
            box = lung_roi_box(mask, margin)
            row = {
                "file": str(p),
                "mask": f"masks/{name}.png",
                "lung_fraction": round(float(mask.mean()), 4),
                "box": list(box) if box else None,
                "box_format": "x0,y0,x1,y1 (pixels, end exclusive)",
                "ok": ok,
                "quality": reason,
            }
            atomic_write_bytes(out / row["mask"], png(mask.astype(np.uint8) * 255))
            if overlays:
                row["overlay"] = f"overlays/{name}.png"
                caption = f"lungs {row['lung_fraction']:.2f}" + ("" if ok else f" CHECK: {reason}")
                atomic_write_bytes(out / row["overlay"], png(overlay_rgb(image, mask, box, ok, caption)))
            results.append(row)
    report = {
        "notice": RESEARCH_NOTICE,
        "run": str(run_dir),
        "margin": margin,
        "fraction_range": list(seg.fraction_range),
        "images": results,
    }
    atomic_write_json(out / "lungs.json", report)
    return report
