"""How visible is age in the images themselves? The within-normals population probe on
features that never learnt the task, next to a trained run's own.

Issue 16 asks for the audit's within-normals pediatric-vs-adult probe on the model's features
to fall to <= 0.75 balanced accuracy. This bench measures the floor that target sits on: the
same probe (``cxrkit.evaluation.audit.confound_probes``: logistic regression, fitted on the
run's train split, scored on its val split) on

* ``run``: the trained run's pooled features (what the audit reads, here on val);
* ``imagenet``: the same backbone with its ImageNet weights, never trained on chest X-rays;
* ``random``: the same backbone with random weights;
* ``pixels``: the preprocessed image itself, block-averaged to 12 x 12 (144 numbers; the audit's
  own pixel baseline, ``cxrkit.evaluation.audit.pixel_features``).

If ``pixels`` and ``imagenet`` already tell children from adults, a probe on any useful
feature set will too: the probe then measures that a child's film looks like a child's film,
not that the classifier uses it. Val only; no test split is read.

    .venv/bin/python bench/probe_floor.py --run runs/r16/robust/patient/run --out bench/results/probe_floor
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

import cxrkit
from cxrkit import RESEARCH_NOTICE
from cxrkit.data.cache import cached_images
from cxrkit.data.prepare import prepare
from cxrkit.evaluation.audit import confound_probes, pixel_features
from cxrkit.models import backbone_features, build_classifier

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import save_result  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True, help="a patient-protocol run directory")
    ap.add_argument("--out", type=Path, default=Path("bench/results/probe_floor"), help="writes OUT.json")
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    torch.manual_seed(0)

    predictor = cxrkit.load(args.run, backend="torch", precision="32")  # the same features on every host
    spec, card = predictor.preprocessing, predictor.run.card
    prep = prepare(card.data["path"], predictor.classes, split_file=args.run / "split.csv", workers=args.workers)
    train, val = (prep.split.subset(prep.dataset, s) for s in ("train", "val"))
    im_tr, im_va = (cached_images(d, spec, workers=args.workers) for d in (train, val))

    def net_features(model) -> tuple[np.ndarray, np.ndarray]:
        return tuple(backbone_features(model, im, spec, np.arange(len(im))) for im in (im_tr, im_va))

    name, n_cls = card.model.name, len(predictor.classes)
    sets = {
        "run": net_features(predictor.model),
        "imagenet": net_features(build_classifier(name, n_cls, pretrained=True)[0]),
        "random": net_features(build_classifier(name, n_cls, pretrained=False)[0]),
        "pixels": (pixel_features(im_tr), pixel_features(im_va)),
    }
    rows = []
    for feature_set, (f_tr, f_va) in sets.items():
        for p in confound_probes(f_tr, train, f_va, val, ["population", "subsource"]):
            rows.append({"features": feature_set, "dim": int(f_tr.shape[1]), **p})
    result = {"run": str(args.run), "split": "val", "input_size": spec.input_size, "rows": rows}

    lines = [
        RESEARCH_NOTICE,
        "",
        f"`.venv/bin/python bench/probe_floor.py --run {args.run}`: probes fitted on the run's train split, "
        f"scored on its val split, {spec.input_size} px.",
        "",
        "| features | dim | attribute | scope | n val | probe bal. acc | chance | class probe |",
        "| --- | ---: | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['features']} | {r['dim']} | {r['attribute']} | {r['scope']} | {r['n_eval']} | "
            f"{r['balanced_accuracy']:.3f} | {r['chance']:.2f} | {r['class_balanced_accuracy']:.3f} |"
        )
    title = f"Probe floor: what the films themselves tell ({args.run})"
    save_result(args.out, result, title=title, markdown="\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
