"""Overlay figures: the map over the original image at its own size, labelled, with the notice."""

from __future__ import annotations

import numpy as np
from PIL import Image

from cxrkit import RESEARCH_NOTICE
from cxrkit.explain.overlay import overlay_figure, resize_map, save_map, save_png

CLASSES = ["covid", "viral_pneumonia", "normal"]


def test_overlay_is_drawn_at_the_original_size(tmp_path):
    gray = np.random.default_rng(0).random((90, 130), dtype=np.float32)  # not square, not 64 px
    maps = np.random.default_rng(1).random((2, 64, 64), dtype=np.float32)
    fig = overlay_figure(gray, maps, [0, 2], np.array([0.7, 0.1, 0.2]), CLASSES, "gradcam on stages.3")
    panels = [ax for ax in fig.axes if ax.get_images()]
    assert len(panels) == 2
    for ax in panels:
        assert [im.get_array().shape for im in ax.get_images()] == [(90, 130), (90, 130)]
    texts = [t.get_text() for t in fig.texts]
    assert any("predicted: covid, calibrated probability 0.70" in t for t in texts)
    assert any(RESEARCH_NOTICE in t and "gradcam on stages.3" in t for t in texts)
    assert [ax.get_title() for ax in panels] == ["evidence for covid (p = 0.70)", "evidence for normal (p = 0.20)"]
    path = save_png(tmp_path / "o.png", fig)
    assert Image.open(path).format == "PNG"


def test_resized_map_keeps_its_range_and_peak():
    cam = np.zeros((8, 8), np.float32)
    cam[2, 6] = 1.0
    big = resize_map(cam, (80, 40))
    assert big.shape == (80, 40) and 0.0 <= big.min() and big.max() <= 1.0
    row, col = np.unravel_index(big.argmax(), big.shape)
    assert abs(row / 80 - 2.5 / 8) < 0.1 and abs(col / 40 - 6.5 / 8) < 0.1


def test_raw_maps_are_saved_as_npy(tmp_path):
    maps = np.random.default_rng(0).random((3, 64, 64), dtype=np.float32)
    np.testing.assert_array_equal(np.load(save_map(tmp_path / "m.npy", maps)), maps)
