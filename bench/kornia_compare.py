"""Our batched augmentation ops vs kornia's, per batch of 32 at 224 px on this CPU.

Issue 16 asked to use kornia where it saves hand-written code and is fast enough on a CPU.
Pairs timed in interleaved rounds (median ms per batch, one torch thread unless --threads):

* blur: ``cxrkit.data.acquisition.blur`` (two 3x3 box filters as pooling) vs
  ``kornia.filters.gaussian_blur2d`` (7x7, sigma 1.2) and ``kornia.filters.box_blur`` (3x3, twice);
* JPEG: ``acquisition.jpeg_compress`` (8x8 DCT as one 64x64 GEMM) vs
  ``kornia.enhance.jpeg_codec_differentiable`` (RGB only: the gray batch is repeated to 3 channels);
* geometry + photometry: ``BatchAugment`` with the robust settings vs kornia's
  ``RandomAffine`` + ``RandomBrightness`` + ``RandomContrast`` + ``RandomGamma`` in an
  ``AugmentationSequential`` with the same ranges.

    .venv/bin/python bench/kornia_compare.py [--rounds 7] [--threads 1]

kornia is not a dependency of cxrkit; install it (with torch pinned) to run this. Writes
bench/results/kornia_compare.json and prints a table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command_line, load_note, markdown_table, save_result  # noqa: E402


def main() -> None:
    import kornia
    import kornia.augmentation as K

    from cxrkit.data.acquisition import blur, jpeg_compress, make_augment

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.rand(args.batch, 1, args.size, args.size)
    q = torch.full((args.batch,), 50.0)
    ours_aug = make_augment("robust")[0]  # its BatchAugment (the AcquisitionAugment part is timed above)
    kornia_aug = K.AugmentationSequential(
        K.RandomAffine(degrees=10, translate=(0.08, 0.08), scale=(0.8, 1.15), p=1.0),
        K.RandomBrightness((0.65, 1.35), p=1.0),
        K.RandomContrast((0.65, 1.35), p=1.0),
        K.RandomGamma((0.65, 1.35), p=1.0),
    )
    pairs = {
        "blur": {
            "cxrkit (2 box pools)": lambda: blur(x),
            "kornia gaussian_blur2d 7x7": lambda: kornia.filters.gaussian_blur2d(x, (7, 7), (1.2, 1.2)),
            "kornia box_blur 3x3 twice": lambda: kornia.filters.box_blur(kornia.filters.box_blur(x, (3, 3)), (3, 3)),
        },
        "jpeg": {
            "cxrkit (64x64 GEMM DCT)": lambda: jpeg_compress(x, q),
            "kornia jpeg_codec_differentiable (x3 channels)": lambda: kornia.enhance.jpeg_codec_differentiable(
                x.expand(-1, 3, -1, -1), q
            ),
        },
        "geometry + photometry": {
            "cxrkit BatchAugment (robust)": lambda: ours_aug(x),
            "kornia AugmentationSequential": lambda: kornia_aug(x),
        },
    }
    times: dict[str, dict[str, list[float]]] = {g: {n: [] for n in fns} for g, fns in pairs.items()}
    for fns in pairs.values():
        for f in fns.values():
            f()  # warm-up
    for r in range(args.rounds):
        for group, fns in pairs.items():
            names = list(fns) if r % 2 == 0 else list(fns)[::-1]
            for name in names:
                t = time.perf_counter()
                with torch.no_grad():
                    fns[name]()
                times[group][name].append((time.perf_counter() - t) * 1000)
    rows = []
    for group, by in times.items():
        for name, ts in by.items():
            rows.append([group, name, f"{statistics.median(ts):.1f}", f"{min(ts):.1f}-{max(ts):.1f}"])
    table = markdown_table(["op", "implementation", "ms / batch (median)", "range"], rows)
    text = (
        f"kornia {kornia.__version__}, torch {torch.__version__}, {args.threads} thread(s), "
        f"batch {args.batch} x 1 x {args.size} x {args.size}, {args.rounds} interleaved rounds\n\n"
        f"{table}\n\n{load_note()}"
    )
    print(f"`{command_line()}`\n\n{text}")
    save_result(
        Path(__file__).resolve().parent / "results" / "kornia_compare.json",
        {"kornia": kornia.__version__, "threads": args.threads, "ms": times},
        title="kornia vs cxrkit's own batched augmentation ops",
        markdown=text,
    )


if __name__ == "__main__":
    main()
