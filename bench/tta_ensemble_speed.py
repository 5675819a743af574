"""Cost of test-time augmentation and of a 2-member ensemble against plain prediction.

Two random-init runs of the default model (tf_efficientnet_lite0, 224 px) in a temporary
folder, an ensemble directory of both, and synthetic gray images (no real data needed).
Times ``proba_from_uint8`` on the prepared uint8 batch (the model path every command shares;
decoding is the same for all three and left out) with the torch backend in fp32, batch 32, in
interleaved rounds (this host is shared; see bench/_common.py):

* plain: one forward pass per image;
* ``tta="standard"``: 7 views per image (cxrkit.inference.tta), so ~7 passes;
* ensemble of 2: each member's pass, probabilities averaged.

    nice -n 10 .venv/bin/python bench/tta_ensemble_speed.py [--images 32] [--rounds 3]

Writes bench/results/tta_ensemble_speed.{json,md}.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np
import torch
from _common import load_note, markdown_table, rotations, save_result, spread, stats

from cxrkit.data.transforms import Preprocessing
from cxrkit.inference import Predictor, load_predictor
from cxrkit.inference.ensemble import create_ensemble
from cxrkit.models import DEFAULT_MODEL, build_classifier, save_weights
from cxrkit.run import ModelCard, ModelSpec, PreprocessingSpec, RunDir, write_card

RESULTS = Path(__file__).parent / "results"
CLASSES = ["covid", "viral_pneumonia", "normal"]


def make_run(root: Path, name: str, seed: int, size: int) -> Path:
    """A minimal run (weights, card, split.csv) of the default model with random weights."""
    torch.manual_seed(seed)
    net, info = build_classifier(DEFAULT_MODEL, len(CLASSES), in_chans=1, pretrained=False)
    run = root / name
    run.mkdir(parents=True)
    save_weights(run, net)
    RunDir(run).split.write_text("path,label,patient_id,split\n")
    card = ModelCard(
        classes=CLASSES,
        preprocessing=PreprocessingSpec(input_size=size),
        model=ModelSpec(name=DEFAULT_MODEL, num_params=info.num_params),
        weights_source="random init (benchmark)",
        split={"hash": "benchmark"},
    )
    write_card(run, card)
    return run


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--size", type=int, default=224)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    with TemporaryDirectory() as tmp:
        runs = [make_run(Path(tmp), f"m{i}", i, args.size) for i in range(2)]
        ens = create_ensemble(Path(tmp) / "ens", runs)
        fp32 = dict(backend="torch", precision="32")  # the same arithmetic on every host: the cost is the views
        predictors = {
            "plain": Predictor.from_run(runs[0], **fp32),
            "tta standard (7 views)": Predictor.from_run(runs[0], tta="standard", **fp32),
            "ensemble of 2": load_predictor(ens, **fp32),
        }
        pre = Preprocessing(input_size=args.size)
        gray = rng.random((args.images, 32, 32), dtype=np.float32)
        images = np.stack([pre.to_uint8(np.kron(g, np.ones((8, 8), np.float32))) for g in gray])
        for p in predictors.values():
            p.proba_from_uint8(images[:8])  # warm-up
        rates: dict[str, list[float]] = {k: [] for k in predictors}
        for order in rotations(list(predictors), args.rounds):
            for name in order:
                t0 = time.perf_counter()
                predictors[name].proba_from_uint8(images)
                rates[name].append(args.images / (time.perf_counter() - t0))
    plain = rates["plain"]
    rows = [[name, spread(r), spread([p / x for p, x in zip(plain, r)], "{:.2f}")] for name, r in rates.items()]
    note = load_note()
    title = (
        f"TTA and ensemble cost ({DEFAULT_MODEL}, {args.size} px, torch fp32, batch 32, "
        f"{args.images} synthetic images, {args.rounds} interleaved rounds)"
    )
    md = (
        markdown_table(["variant", "img/s median (min-max)", "time vs plain, per round"], rows)
        + f"\n\n{note}; {torch.get_num_threads()} torch threads.\n"
    )
    data = {k: stats(v) for k, v in rates.items()} | {"note": note}
    save_result(RESULTS / "tta_ensemble_speed.json", data, title=title, markdown=md)
    print(md)


if __name__ == "__main__":
    main()
