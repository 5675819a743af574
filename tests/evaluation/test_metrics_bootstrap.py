"""Metrics agree with scikit-learn; bootstrap CIs behave; patients stay whole."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

from cxrkit.evaluation import bootstrap_ci, classification_metrics

CLASSES = ["covid", "viral_pneumonia", "normal"]


def fixed_case(n=300, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    logits = rng.normal(size=(n, 3))
    logits[np.arange(n), y] += 1.5
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return y, probs


def test_metrics_match_scikit_learn():
    y, probs = fixed_case()
    pred = probs.argmax(1)
    m = classification_metrics(y, probs, CLASSES)
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert m["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    sens = recall_score(y, pred, average=None)
    ppv = precision_score(y, pred, average=None)
    f1 = f1_score(y, pred, average=None)
    for i, c in enumerate(CLASSES):
        assert m[f"sensitivity/{c}"] == pytest.approx(sens[i])
        assert m[f"ppv/{c}"] == pytest.approx(ppv[i])
        assert m[f"f1/{c}"] == pytest.approx(f1[i])
        assert m[f"auc/{c}"] == pytest.approx(roc_auc_score(y == i, probs[:, i]))
        neg = y != i
        assert m[f"specificity/{c}"] == pytest.approx((pred[neg] != i).mean())
        assert m[f"npv/{c}"] == pytest.approx((y[pred != i] != i).mean())


def test_undefined_metrics_are_nan_not_errors():
    y = np.array([0, 0, 0])
    probs = np.array([[0.9, 0.05, 0.05]] * 3)
    m = classification_metrics(y, probs, CLASSES)
    assert m["accuracy"] == 1.0
    assert np.isnan(m["auc/covid"]) and np.isnan(m["sensitivity/normal"])


def _accuracy_fn(y, probs):
    return lambda idx: {"accuracy": float((probs[idx].argmax(1) == y[idx]).mean())}


def test_ci_covers_the_point_estimate_and_narrows_with_more_data():
    widths = []
    for n in (100, 1600):
        y, probs = fixed_case(n, seed=1)
        ci = bootstrap_ci(_accuracy_fn(y, probs), n, n_resamples=400)["accuracy"]
        assert ci["lo"] <= ci["value"] <= ci["hi"]
        widths.append(ci["hi"] - ci["lo"])
    assert widths[1] < widths[0] / 2  # ~1/sqrt(16) = 1/4 in theory


def test_same_seed_same_interval():
    y, probs = fixed_case()
    a = bootstrap_ci(_accuracy_fn(y, probs), len(y), n_resamples=200, seed=3)
    b = bootstrap_ci(_accuracy_fn(y, probs), len(y), n_resamples=200, seed=3)
    assert a == b


def test_patient_resampling_keeps_patients_whole():
    groups = [f"p{i // 4}" for i in range(40)] + [None] * 5  # 10 patients x 4 images, 5 without id
    seen = []

    def record(idx):
        seen.append(np.sort(idx))
        return {"n": float(len(idx))}

    bootstrap_ci(record, len(groups), groups=groups, n_resamples=50)
    for idx in seen[1:]:
        counts = np.bincount(idx, minlength=len(groups))
        for p in range(10):
            member_counts = counts[4 * p : 4 * p + 4]
            assert len(set(member_counts.tolist())) == 1  # all 4 images drawn equally often


def test_patient_resampling_gives_wider_intervals_for_correlated_images():
    # 50 patients x 10 identical images: the image-level bootstrap pretends there are 500
    # independent cases; resampling patients must give a clearly wider interval.
    rng = np.random.default_rng(0)
    correct_by_patient = rng.random(50) < 0.8
    y = np.zeros(500, int)
    probs = np.where(np.repeat(correct_by_patient, 10)[:, None], [[0.9, 0.05, 0.05]], [[0.1, 0.8, 0.1]])
    groups = np.repeat(np.arange(50), 10).astype(str).tolist()
    fn = _accuracy_fn(y, probs)
    w_img = np.diff([bootstrap_ci(fn, 500, n_resamples=300)["accuracy"][k] for k in ("lo", "hi")])[0]
    w_pat = np.diff([bootstrap_ci(fn, 500, groups, n_resamples=300)["accuracy"][k] for k in ("lo", "hi")])[0]
    assert w_pat > 2 * w_img


def test_empty_set_is_a_clear_error():
    with pytest.raises(ValueError, match="empty"):
        bootstrap_ci(lambda idx: {}, 0)
