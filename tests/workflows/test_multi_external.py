"""Train on two roots at once, then score an external set by view and age with abnormal films."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

BLOB_CENTRES = {"covid": (16, 16), "viral_pneumonia": (16, 48), "normal": (48, 32)}  # as conftest's blobs

pytestmark = pytest.mark.slow


def _blob(cy: float, cx: float, rng) -> Image.Image:
    yy, xx = np.mgrid[:64, :64]
    img = rng.normal(100, 20, (64, 64)) + 120 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 60)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def _manifest_root(root: Path, per_label: dict[str, int], seed: int) -> Path:
    """Blob images of each label (pneumonia: blob where covid's is, 'abnormal') + manifest with view and age."""
    rng = np.random.default_rng(seed)
    rows = []
    for label, n in per_label.items():
        cy, cx = BLOB_CENTRES.get(label, BLOB_CENTRES["covid"])
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            name = f"{label}/{label}_{seed}_{i:03d}.png"
            _blob(cy, cx, rng).save(root / name)
            view = ("AP Supine", "PA")[i % 2]
            rows.append({"file": name, "label": label, "patient_id": f"p{i}", "view": view, "age": 10 + 7 * i})
    with open(root / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root


def test_two_roots_train_and_external_by_view_with_abnormal_rule(blob_writer, tiny_config, tmp_path):
    from cxrkit.cli.main import main
    from cxrkit.run import read_card

    a = blob_writer(tmp_path / "a", per_class=16)
    b = _manifest_root(tmp_path / "b", {"normal": 12, "pneumonia": 6}, seed=1)
    ext = _manifest_root(tmp_path / "ext", {"covid": 8, "normal": 10, "pneumonia": 12}, seed=2)
    run = tmp_path / "run"
    cache = tmp_path / "cache"
    code = main(
        ["train", "--data", str(a), str(b), "--out", str(run), "--config", "fast", "--model", "resdense_tiny",
         "--input-size", "64", "--epochs", "2", "--batch-size", "8", "--workers", "1", "--cache-dir", str(cache),
         "--augment", "basic", "--aux-classes", "pneumonia"]
    )  # fmt: skip
    assert code in (0, None)
    card = read_card(run)
    assert card.data["path"] == [str(a), str(b)]
    assert [d["name"] for d in card.data["datasets"]] == ["a", "b"]
    assert card.data["datasets"][1]["class_counts"]["normal"] == 12
    assert all(len(d["fingerprint"]) == 16 for d in card.data["datasets"])
    cfg = (run / "config.yaml").read_text()
    assert f"- {a}" in cfg and f"- {b}" in cfg  # the list, re-readable by --resume and evaluate

    # the run's own test split, re-read from both roots
    assert main(["evaluate", str(run), "--workers", "1", "--resamples", "50", "--by", "dataset"]) in (0, None)
    ev = json.loads((run / "evaluation" / "metrics.json").read_text())
    assert ev["data"]["external"] is False and ev["data"]["path"] == [str(a), str(b)]

    out = tmp_path / "ext_eval"
    argv = ["evaluate", str(run), "--data", str(ext), "--by", "view", "age", "label+view", "--abnormal", "pneumonia",
            "--workers", "1", "--resamples", "50", "--out", str(out)]  # fmt: skip
    assert main(argv) in (0, None)
    ev = json.loads((out / "metrics.json").read_text())
    assert ev["data"]["external"] is True and ev["data"]["n_images"] == 18
    assert "pneumonia" not in ev["data"]["excluded"]  # scored by the rule, not left out
    abn = ev["abnormal"]
    assert abn["n_images"] == 12 and abn["labels"] == ["pneumonia"]
    assert set(abn["by"]["view"]) == {"AP", "PA"} and abn["by"]["view"]["AP"]["n_images"] == 6
    assert 0.0 <= abn["called_normal"]["value"] <= 1.0
    assert 0.0 <= abn["auc_not_normal"]["value"] <= 1.0 and abn["normal_films"] == 10
    assert set(ev["subgroups"]["view"]) == {"AP", "PA"}
    assert set(ev["subgroups"]["age"]) <= {"0-17", "18-39", "40-59", "60+"}
    assert ev["subgroups"]["label+view"]["normal/AP"]["class_counts"] == {"normal": 5}
    assert abn["by"]["label+view"]["pneumonia/PA"]["n_images"] == 6
    html = (out / "report.html").read_text()
    assert "Abnormal films called normal" in html and "view=AP" in html


def test_abnormal_label_that_is_a_model_class_is_refused(tiny_run, blob_dataset, tmp_path):
    from cxrkit.errors import UsageError
    from cxrkit.evaluation.evaluate import evaluate_run

    data = tmp_path / "copy"
    shutil.copytree(blob_dataset, data)
    with pytest.raises(UsageError, match="already a model class"):
        evaluate_run(tiny_run.run_dir, data, abnormal=["normal"], n_resamples=10, workers=1)


def test_a_run_on_a_manifest_with_outside_paths_evaluates_its_own_split(blob_writer, tiny_config, tmp_path):
    """Re-reading the training data honours the run's allow_outside_paths (was: every row refused)."""
    from cxrkit.evaluation.evaluate import evaluate_run
    from cxrkit.training import train

    data = blob_writer(tmp_path / "imgs", per_class=12)
    listing = tmp_path / "list"
    listing.mkdir()
    lines = ["file,label"] + [f"{p},{p.parent.name}" for p in sorted(data.rglob("*.png"))]
    (listing / "manifest.csv").write_text("\n".join(lines) + "\n")
    cfg = tiny_config(listing, tmp_path / "run", tmp_path / "cache", allow_outside_paths=True, epochs=1)
    run = train(cfg, progress_bar=False).run_dir
    ev = evaluate_run(run, n_resamples=10, workers=1)
    assert ev["data"]["external"] is False and ev["overall"]["n_images"] > 0
    assert ev["protocol"]["leaked_test_images"] == 0
