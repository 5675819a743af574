"""Lung segmenter quality on real data: held-out Dice, lung fractions by population, contact sheet.

1. Dice of every held-out (test split) image of the run at the image's own size, mean with a
   patient bootstrap 95% CI (2000 resamples); the split is the run's ``split.csv``.
2. Predicted lung fraction and quality flags over ``../shared/data/cxr`` (every image, or
   ``--per-group`` per population x label), by population and label.
3. A contact sheet of 24 random pediatric predictions (12 normal, 12 viral; seed 0), written
   OUTSIDE the repository (it shows real radiographs; default /tmp/lungs_contact.png).

    .venv/bin/python bench/lungs_dice.py --run RUN_DIR [--per-group 0] [--sheet /tmp/lungs_contact.png]

Writes bench/results/lungs_dice.json (numbers only, no images).
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

from cxrkit.data import read_image
from cxrkit.lungs import LungSegmenter, MaskPair, read_mask
from cxrkit.lungs.predict import overlay_rgb
from cxrkit.lungs.train import dice_with_ci

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import save_result  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CXR = REPO / ".." / "shared" / "data" / "cxr"


def held_out_dice(seg: LungSegmenter, run: Path) -> dict:
    with open(run / "split.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == "test"]
    pairs = [MaskPair(Path(r["image"]), Path(r["mask"]), r["patient_id"] or None) for r in rows]
    truths = [read_mask(p.mask, read_image(p.image).shape) for p in pairs]
    return dice_with_ci(seg, pairs, truths)


def fractions(seg: LungSegmenter, per_group: int, seed: int = 0) -> dict:
    with open(CXR / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    groups = defaultdict(list)
    for r in rows:
        groups[(r["population"] or "unknown", r["label"])].append(r)
    rng = random.Random(seed)
    out = {}
    for key, members in sorted(groups.items()):
        if per_group:
            members = rng.sample(members, min(per_group, len(members)))
        fr, flags = [], Counter()
        for start in range(0, len(members), 64):
            images = [read_image(CXR / r["file"]) for r in members[start : start + 64]]
            for mask in seg.predict_masks(images):
                fr.append(float(mask.mean()))
                ok, reason = seg.quality(mask)
                flags[reason.split(" (")[0].split(" 0")[0] if not ok else "ok"] += 1
        out[key] = (np.array(fr), flags)
    return out


def contact_sheet(seg: LungSegmenter, path: Path, seed: int = 0) -> None:
    if REPO in path.resolve().parents:
        sys.exit(f"{path}: the contact sheet shows real radiographs; write it outside the repository")
    with open(CXR / "manifest.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["population"] == "pediatric"]
    rng = random.Random(seed)
    pick = [
        r for label in ("normal", "viral_pneumonia") for r in rng.sample([r for r in rows if r["label"] == label], 12)
    ]
    tiles = []
    images = [read_image(CXR / r["file"]) for r in pick]
    for r, image, mask in zip(pick, images, seg.predict_masks(images)):
        ok, reason = seg.quality(mask)
        tile = overlay_rgb(image, mask, None, ok, f"{r['label'][:6]} {mask.mean():.2f}" + ("" if ok else " FLAG"))
        tiles.append(tile.resize((256, 256)))
    sheet = Image.new("RGB", (6 * 256, 4 * 256))
    for i, tile in enumerate(tiles):
        sheet.paste(tile, ((i % 6) * 256, (i // 6) * 256))
    sheet.save(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--per-group", type=int, default=0, help="images per population x label (0: all)")
    ap.add_argument("--sheet", type=Path, default=Path("/tmp/lungs_contact.png"))
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "lungs_dice.json")
    args = ap.parse_args()
    seg = LungSegmenter.from_run(args.run)
    card = seg.card
    d = held_out_dice(seg, args.run)
    per = np.array(d["per_image"])
    lines = [
        "# Lung segmentation on real data",
        "",
        f"`{' '.join(['.venv/bin/python', *sys.argv])}`; run: {card['arch']} at {card['input_size']} px, "
        f"{card['epochs_run']} epochs in {card['train_minutes']} min, split {card['split']} images "
        f"({card['split_patients']} patients, patient-disjoint).",
        "",
        "## Held-out Dice (lungmasks test split, each image at its own size)",
        "",
        f"Dice {d['value']:.4f} (95% patient-bootstrap CI {d['lo']:.4f}-{d['hi']:.4f}) on {d['n_images']} images "
        f"of {d['n_patients']} patients; min {d['min']:.3f}, median {np.median(per):.4f}, "
        f"{(per >= 0.9).mean():.0%} of images >= 0.90. Goal >= 0.93.",
        "",
        f"Quality-flag range from the training masks: {card['fraction_range'][0]:.3f}-{card['fraction_range'][1]:.3f}.",
        "",
        "## Predicted lung fraction by population and label (../shared/data/cxr)",
        "",
        "| population | label | n | median | p5 | p95 | flagged | flags |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for (pop, label), (fr, flags) in fractions(seg, args.per_group).items():
        bad = sum(v for k, v in flags.items() if k != "ok")
        reasons = ", ".join(f"{k}: {v}" for k, v in flags.items() if k != "ok") or "-"
        p5, med, p95 = np.percentile(fr, [5, 50, 95])
        lines.append(
            f"| {pop} | {label} | {len(fr)} | {med:.3f} | {p5:.3f} | {p95:.3f} | {bad / len(fr):.1%} | {reasons} |"
        )
    contact_sheet(seg, args.sheet)
    lines += [
        "",
        f"Contact sheet of 24 random pediatric predictions (12 normal, 12 viral, seed 0): `{args.sheet}` "
        "(outside the repository: real images).",
    ]
    text = "\n".join(lines) + "\n"
    save_result(args.out, {}, markdown=text)
    print(text)


if __name__ == "__main__":
    main()
