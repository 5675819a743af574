"""Overlay figures: the CAM drawn over the radiograph as the user gave it.

The map is computed on the model's square input; it is resized back to the original image
(preprocessing resizes without cropping, so the two align) and drawn over it with a colour
bar, the prediction with its calibrated probability, and the research-only notice.
Matplotlib's object API with the Agg canvas: no pyplot state, safe in threads and servers.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from .._io import atomic_write_bytes
from .._meta import RESEARCH_NOTICE

__all__ = [
    "OVERLAY_SIDE",
    "annotate",
    "draw_overlay",
    "overlay_figure",
    "panel_grid",
    "png_bytes",
    "resize_map",
    "save_map",
    "save_png",
]

HEATMAP = "jet"
HEAT_ALPHA = 0.4
DPI = 100
PANEL_INCHES = (4.0, 8.0)  # panel side: the image's own pixels when it fits, else clipped
OVERLAY_SIDE = 1024  # long side of the image under an overlay: panels are at most 800 px


def resize_map(cam: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A map (S, S) resized bilinearly to ``shape`` (height, width), values kept in [0, 1]."""
    if cam.shape == tuple(shape):
        return cam.astype(np.float32)
    resized = Image.fromarray(cam.astype(np.float32), mode="F").resize((shape[1], shape[0]), Image.BILINEAR)
    return np.clip(np.asarray(resized), 0.0, 1.0)


def panel_grid(rows: int, cols: int, panel_width: float, panel_height: float) -> tuple[Figure, np.ndarray]:
    """A Figure on the Agg canvas with ``rows`` x ``cols`` axes, room for titles and a colour bar."""
    fig = Figure(figsize=(cols * panel_width + 1.2, rows * panel_height + 1.3), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(rows, cols, squeeze=False)


def draw_overlay(ax, gray: np.ndarray, cam: np.ndarray, title: str):
    """Draw ``cam`` resized to ``gray``'s size over it on ``ax``; returns the heat layer."""
    ax.imshow(gray, cmap="gray", vmin=0.0, vmax=1.0)
    heat = ax.imshow(resize_map(cam, gray.shape), cmap=HEATMAP, vmin=0.0, vmax=1.0, alpha=HEAT_ALPHA)
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()
    return heat


def annotate(fig: Figure, axes: np.ndarray, heat, title: str, caption: str = "") -> None:
    """Colour bar (when a map was drawn), title, and the caption with the research-only
    notice at the foot."""
    if heat is not None:
        bar = fig.colorbar(heat, ax=list(np.ravel(axes)), fraction=0.04, pad=0.02, label="relative importance")
        bar.solids.set_alpha(1.0)  # the scale itself, not its see-through version
    fig.suptitle(title, fontsize=11)
    fig.text(
        0.5,
        0.01,
        f"{caption}\n{RESEARCH_NOTICE}" if caption else RESEARCH_NOTICE,
        ha="center",
        va="bottom",
        fontsize=7,
        color="dimgray",
    )


def overlay_figure(
    gray: np.ndarray,
    maps: np.ndarray,
    classes: Sequence[int],
    probabilities: np.ndarray,
    class_names: Sequence[str],
    caption: str = "",
) -> Figure:
    """One panel per map: ``maps[k]`` (S, S) explains class ``classes[k]`` on ``gray`` (H, W)
    in [0, 1] at its original size; the title names the predicted class and its calibrated
    probability, ``caption`` says how the maps were made."""
    height, width = gray.shape
    scale = float(np.clip(max(height, width) / DPI, *PANEL_INCHES)) / max(height, width)
    fig, axes = panel_grid(1, len(maps), width * scale, height * scale)
    for ax, cam, k in zip(axes[0], maps, classes):
        heat = draw_overlay(ax, gray, cam, f"evidence for {class_names[k]} (p = {probabilities[k]:.2f})")
    top = int(np.argmax(probabilities))
    annotate(
        fig, axes, heat, f"predicted: {class_names[top]}, calibrated probability {probabilities[top]:.2f}", caption
    )
    return fig


def png_bytes(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def save_png(path: str | Path, fig: Figure) -> Path:
    return atomic_write_bytes(path, png_bytes(fig))


def save_map(path: str | Path, maps: np.ndarray) -> Path:
    """The raw maps (K, S, S) float32 at model input size, as ``.npy``."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(maps, np.float32))
    return atomic_write_bytes(path, buf.getvalue())
