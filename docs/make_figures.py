"""Make the documentation's figures from SYNTHETIC images only: never a real radiograph (licenses).

    .venv/bin/python docs/make_figures.py        # about a minute on a 2-core CPU

Trains a tiny model for seconds on synthetic "films" (a body outline, two lung fields, and one
bright patch whose place is the class), evaluates it, and writes:

* docs/images/report.png: the top of the run's report.html, through Debian's chromium
  (/usr/bin/chromium with Playwright; never ``playwright install``, which downloads a browser);
* docs/images/gradcam_overlay.png: the overlay `cxr explain` writes for one image.

The numbers in the screenshot are a toy model's on toy data; the figure shows the layout.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

OUT = Path(__file__).resolve().parent / "images"
CHROMIUM = Path("/usr/bin/chromium")
# Where each class's bright patch sits, as fractions of the side (row, column).
PATCH = {"covid": (0.35, 0.3), "viral_pneumonia": (0.35, 0.7), "normal": (0.8, 0.5)}


def synthetic_film(label: str, rng: np.random.Generator, size: int = 128) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size] / size
    body = np.exp(-((((xx - 0.5) / 0.42) ** 2 + ((yy - 0.55) / 0.55) ** 2) ** 3))
    lungs = sum(np.exp(-((((xx - cx) / 0.15) ** 2 + ((yy - 0.45) / 0.27) ** 2) ** 2)) for cx in (0.32, 0.68))
    cy, cx = PATCH[label]
    patch = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 0.006)
    img = 40 + 150 * body - 70 * lungs + 90 * patch + rng.normal(0, 8, (size, size))
    return np.clip(img, 0, 255).astype(np.uint8)


def write_dataset(root: Path, per_class: int = 30) -> Path:
    rng = np.random.default_rng(0)
    for label in PATCH:
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(synthetic_film(label, rng)).save(root / label / f"{label}_{i:03d}.png")
    return root


def screenshot(html: Path, png: Path) -> None:
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        sys.exit(f"{CHROMIUM}: not found; install it with `apt-get install chromium`")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1100, "height": 820})
        page.goto(html.as_uri())
        page.screenshot(path=str(png))
        browser.close()


def main() -> None:
    import cxrkit
    from cxrkit.explain import Explainer, explain_files
    from cxrkit.training import TrainConfig, train
    from cxrkit.training.config import read_config_file
    from cxrkit.workflows import evaluate_and_report

    work = Path(tempfile.mkdtemp(prefix="cxrkit-figures-"))
    try:
        data = write_dataset(work / "data")
        # the `fast` preset (resdense_tiny from scratch, 4 epochs) at 96 px on 90 synthetic films, with
        # the learning rate and patience the committed figures were made with
        fast = read_config_file("fast")
        small = dict(
            input_size=96, batch_size=8, lr=3e-3, patience=5, augment="basic", workers=1, cache_dir=str(work / "cache")
        )
        config = TrainConfig.from_dict({**fast, **small, "data": str(data), "out": str(work / "run")})
        run = train(config, progress_bar=False).run_dir
        evaluated = evaluate_and_report(run, resamples=200, workers=1)
        OUT.mkdir(exist_ok=True)
        screenshot(Path(evaluated.files["report.html"]), OUT / "report.png")
        explainer = Explainer(cxrkit.load(run), "gradcam")
        written = explain_files(explainer, [data / "covid" / "covid_000.png"], work / "explain").written
        shutil.copyfile(written[0][1], OUT / "gradcam_overlay.png")
        print(f"wrote {OUT / 'report.png'} and {OUT / 'gradcam_overlay.png'}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
