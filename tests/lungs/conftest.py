"""Synthetic "chest films": a bright body with two dark elliptical lobes on a noisy background.

Lobe size, position and the body's framing vary per seed (child-like framings included: small
lungs low in the film), so a model must find the lobes, not memorise one place.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image


def two_lobe(seed: int, shape=(96, 96)) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 image, bool mask) with two lobes either side of the midline."""
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    scale = rng.uniform(0.6, 1.0)
    cy = h * rng.uniform(0.42, 0.58)
    mask = np.zeros(shape, bool)
    for side in (-1, 1):
        cx = w / 2 + side * w * 0.2 * scale + rng.uniform(-2, 2)
        ry, rx = h * 0.3 * scale * rng.uniform(0.85, 1.1), w * 0.13 * scale * rng.uniform(0.85, 1.1)
        mask |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    body = (np.abs(xx - w / 2) < w * 0.45 * scale + 6) & (np.abs(yy - cy) < h * 0.45)
    img = 40 + 120 * body + rng.normal(0, 12, shape)
    img = np.where(mask, img - rng.uniform(60, 90), img) + 20 * xx / w
    return np.clip(img, 0, 255).astype(np.uint8), mask


def write_pairs(folder, n: int, shape=(96, 96), start: int = 0) -> "Path":  # noqa: F821
    """n image/mask PNGs and a manifest.csv (file,mask,label,patient_id); 2 images per patient."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["file,mask,label,patient_id"]
    for i in range(start, start + n):
        img, mask = two_lobe(i, shape)
        Image.fromarray(img).save(folder / f"img{i}.png")
        Image.fromarray(mask.astype(np.uint8) * 255).save(folder / f"mask{i}.png")
        lines.append(f"img{i}.png,mask{i}.png,normal,p{i // 2}")
    (folder / "manifest.csv").write_text("\n".join(lines) + "\n")
    return folder / "manifest.csv"


@pytest.fixture(scope="session")
def lung_run(tmp_path_factory):
    """A lung run trained on 48 synthetic films at 64 px (about 10-20 s on 2 cores)."""
    from cxrkit.lungs import LungTrainConfig, train_lungs

    root = tmp_path_factory.mktemp("lungs")
    manifest = write_pairs(root / "data", 48)
    cfg = LungTrainConfig(input_size=64, epochs=12, batch_size=8, lr=1e-2, max_minutes=5, threads=1)
    card = train_lungs(manifest, root / "run", cfg)
    return root / "run", card


CLASSES = ("covid", "viral_pneumonia", "normal")
N_NOISE = 2  # films with no lungs at all: the segmenter must fail its quality check on them


def write_lung_dataset(root, per_class: int = 8):
    """Two-lobe films whose class is where a bright spot sits inside the lungs, plus noise films."""
    for k, label in enumerate(CLASSES):
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            img, mask = two_lobe(100 + 10 * k + i)
            ys, xs = np.nonzero(mask)
            spot = (ys.min() + (ys.max() - ys.min()) * (k + 1) // 4, xs.min() + (xs.max() - xs.min()) // 4)
            img[spot[0] - 3 : spot[0] + 4, spot[1] - 3 : spot[1] + 4] = 250
            Image.fromarray(img).save(root / label / f"{label}_{i}.png")
    rng = np.random.default_rng(7)
    for i in range(N_NOISE):
        Image.fromarray(rng.integers(90, 110, (96, 96), dtype=np.uint8)).save(root / "normal" / f"noise_{i}.png")
    return root


@pytest.fixture(scope="session")
def roi_run(lung_run, tmp_path_factory, tiny_config):
    """A resdense_tiny classifier trained with roi: lungs on the lung run above: (result, data, cache)."""
    from cxrkit.training import train

    root = tmp_path_factory.mktemp("roi")
    data = write_lung_dataset(root / "data")
    config = tiny_config(
        data, root / "run", root / "cache", input_size=32, epochs=1, roi="lungs", lung_run=str(lung_run[0])
    )
    return train(config, progress_bar=False), data, root / "cache"
