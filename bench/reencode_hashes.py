"""How far a re-encoded copy of a film lands from it in perceptual-hash bits, and how close distinct films come.

A film reaches two public datasets mostly as a re-encoded copy (JPEG at another quality, a
resize). The cross-dataset label check (:func:`cxrkit.data.multi.label_conflicts`) must find
every such copy and nothing else, so its rule is read off two distributions:

* copies: each of ``--sample`` films (seeded, spread over the classes), re-encoded in memory
  (JPEG 70/80/90/95, resized to 0.5x/0.75x/2x and to a 224 px short side, resize + JPEG),
  decoded by cxrkit's own reader and hashed; the distance to its original's hash;
* distinct films: every pair of originals of the given roots (the real datasets were
  de-duplicated when built, so nearly every pair is two different films).

    nice .venv/bin/python bench/reencode_hashes.py ../shared/data/cxr ../shared/data/nih [--sample 400]

Reads the images in place (nothing is copied). Writes bench/results/reencode_hashes.json.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, markdown_table, save_result  # noqa: E402

from cxrkit.data.duplicates import _distance_blocks, near_duplicate_pairs, phash  # noqa: E402
from cxrkit.data.files import is_image_file  # noqa: E402
from cxrkit.data.images import read_image  # noqa: E402


def _jpeg(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _scaled(img: Image.Image, factor: float) -> Image.Image:
    return img.resize((max(1, round(img.width * factor)), max(1, round(img.height * factor))), Image.BICUBIC)


def _short_side(img: Image.Image, side: int) -> Image.Image:
    return _scaled(img, side / min(img.size))


VARIANTS = {
    "JPEG 70": lambda im: _jpeg(im, 70),
    "JPEG 80": lambda im: _jpeg(im, 80),
    "JPEG 90": lambda im: _jpeg(im, 90),
    "JPEG 95": lambda im: _jpeg(im, 95),
    "resize 0.5x": lambda im: _png(_scaled(im, 0.5)),
    "resize 0.75x": lambda im: _png(_scaled(im, 0.75)),
    "resize 2x": lambda im: _png(_scaled(im, 2.0)),
    "224 px short side": lambda im: _png(_short_side(im, 224)),
    "0.5x + JPEG 75": lambda im: _jpeg(_scaled(im, 0.5), 75),
    "2x + JPEG 90": lambda im: _jpeg(_scaled(im, 2.0), 90),
}


def _bits(a: str, b: str) -> int:
    """Hamming distance of two hex hashes."""
    return int(
        np.unpackbits(np.frombuffer(bytes.fromhex(a), np.uint8) ^ np.frombuffer(bytes.fromhex(b), np.uint8)).sum()
    )


def _files(roots: list[str]) -> list[Path]:
    return sorted(p for r in roots for p in Path(r).rglob("*") if p.is_file() and is_image_file(p))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("roots", nargs="+")
    ap.add_argument("--sample", type=int, default=400, help="films re-encoded (default 400)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--upto", type=int, default=48, help="largest distance tabulated (default 48)")
    ap.add_argument("--closest", type=int, default=40, help="pairs of originals within this many bits are listed")
    args = ap.parse_args()

    files = _files(args.roots)
    hashes = [phash(read_image(p)) for p in files]
    rng = np.random.default_rng(args.seed)
    picked = sorted(rng.choice(len(files), size=min(args.sample, len(files)), replace=False).tolist())
    copies: dict[str, list[int]] = {name: [] for name in VARIANTS}
    for i in picked:
        img = Image.fromarray(np.round(read_image(files[i]) * 255).astype(np.uint8))  # 8-bit: its own levels
        for name, encode in VARIANTS.items():
            copies[name].append(_bits(phash(read_image(encode(img))), hashes[i]))

    # distinct films: every pair of originals, and each film's nearest other film
    upto = args.upto
    pair_hist = np.zeros(upto + 1, np.int64)
    nearest = np.full(len(hashes), 256, np.int64)
    for start, dist in _distance_blocks(hashes):
        n = dist.shape[0]
        idx = np.arange(n)
        dist[idx, idx + 0] = 256  # each row's first column is itself (offset start)
        upper = np.triu(np.ones_like(dist, bool), 1)
        counts = np.bincount(dist[upper & (dist <= upto)], minlength=upto + 1)[: upto + 1]
        pair_hist += counts
        nearest[start : start + n] = np.minimum(nearest[start : start + n], dist.min(1))
        col_min = dist.min(0)  # rows of this block are nearer to later films too
        nearest[start:] = np.minimum(nearest[start:], col_min)
    n_pairs = len(hashes) * (len(hashes) - 1) // 2
    common = Path(os.path.commonpath([str(f) for f in files])) if files else Path(".")
    close = sorted(
        (_bits(hashes[a], hashes[b]), str(files[a].relative_to(common)), str(files[b].relative_to(common)))
        for a, b in near_duplicate_pairs(hashes, args.closest)
    )

    all_copies = np.concatenate([np.array(v) for v in copies.values()])
    rows = [
        [name, len(v), int(np.median(v)), int(np.percentile(v, 99)), int(max(v)), f"{np.mean(np.array(v) == 0):.0%}"]
        for name, v in copies.items()
    ]
    cum = np.cumsum(pair_hist)
    thresholds = [t for t in (4, 8, 10, 12, 16, 20, 24, 28, 32, 36, 40) if t <= upto]
    th_rows = [
        [
            t,
            f"{np.mean(all_copies <= t):.2%}",
            int(cum[t]),
            f"{cum[t] / n_pairs:.2e}",
            int((nearest <= t).sum()),
            f"{np.mean(nearest <= t):.2%}",
        ]
        for t in thresholds
    ]
    data = {
        "roots": args.roots,
        "films": len(files),
        "sampled": len(picked),
        "copies": copies,
        "distinct_pairs": n_pairs,
        "distinct_pair_histogram": pair_hist.tolist(),
        "closest_pairs": [list(c) for c in close],
        "nearest_other_histogram": np.bincount(np.minimum(nearest, upto + 1), minlength=upto + 2).tolist(),
    }
    save_result(
        RESULTS / "reencode_hashes.json",
        data,
        title="Perceptual-hash distance of re-encoded copies vs distinct films",
        tables=[
            {
                "title": f"Re-encoded copies of {len(picked)} films: bits (of 256) from the original's hash",
                "columns": ["re-encoding", "films", "median", "99th pct", "max", "identical hash"],
                "rows": rows,
            },
            {
                "title": f"At a threshold: copies found, and distinct films matched ({len(files)} films, "
                f"{n_pairs:,} pairs)",
                "columns": ["max bits", "copies found", "pairs within", "pair rate", "films with one", "film rate"],
                "rows": th_rows,
            },
            {
                "title": f"Pairs of originals within {args.closest} bits (copies, or distinct films that come close)",
                "columns": ["bits", "film", "film"],
                "rows": [list(c) for c in close],
            },
        ],
    )
    print(markdown_table(["re-encoding", "films", "median", "99th pct", "max", "identical hash"], rows))
    print()
    print(markdown_table(["max bits", "copies found", "pairs", "pair rate", "films", "film rate"], th_rows))


if __name__ == "__main__":
    main()
