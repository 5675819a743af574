"""Temperature scaling and calibration measures."""

from __future__ import annotations

import numpy as np
import pytest

from cxrkit._numeric import softmax
from cxrkit.evaluation.calibration import brier, ece, fit_temperature, nll, reliability


def overconfident(n=2000, seed=0, scale=4.0):
    """Logits whose softmax is right ~70% of the time but says ~99%."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    logits = rng.normal(size=(n, 3))
    logits[np.arange(n), y] += 1.2
    return y, logits * scale


def test_temperature_scaling_lowers_nll_on_a_miscalibrated_model():
    y, logits = overconfident()
    t = fit_temperature(logits[:1000], y[:1000])
    assert t > 2  # overconfident -> soften
    before, after = softmax(logits[1000:]), softmax(logits[1000:], t)
    assert nll(y[1000:], after) < nll(y[1000:], before) - 0.2
    assert ece(y[1000:], after) < ece(y[1000:], before)
    assert (after.argmax(1) == before.argmax(1)).all()  # predictions unchanged


def test_temperature_of_a_calibrated_model_stays_near_one():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(4000, 3)) * 2
    probs = softmax(logits)
    y = np.array([rng.choice(3, p=p) for p in probs])  # labels drawn from the model itself
    assert fit_temperature(logits, y) == pytest.approx(1.0, abs=0.1)


def test_reliability_bins_and_brier():
    y = np.array([0, 1])
    probs = np.array([[0.95, 0.05, 0.0], [0.6, 0.4, 0.0]])
    r = reliability(y, probs)
    assert sum(r["count"]) == 2 and r["count"][9] == 1 and r["count"][5] == 1
    assert r["accuracy"][9] == 1.0 and r["accuracy"][5] == 0.0
    assert brier(y, np.eye(3)[y]) == 0.0
    assert ece(y, probs) == pytest.approx((0.05 + 0.6) / 2)


def test_fitting_on_nothing_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        fit_temperature(np.zeros((0, 3)), np.zeros(0, int))


@pytest.mark.parametrize("allow", [False, True])
def test_val_fitted_sharpening_is_refused_unless_allowed(tiny_run, tmp_path, monkeypatch, allow):
    import shutil

    import cxrkit
    from cxrkit.evaluation import evaluate as evaluate_module

    run = shutil.copytree(tiny_run.run_dir, tmp_path / "run")
    monkeypatch.setattr(evaluate_module, "fit_temperature", lambda logits, y: 0.5)
    monkeypatch.setattr(evaluate_module, "MIN_CALIBRATION_IMAGES", 1)
    cal = evaluate_module.calibrate_run(cxrkit.load(run), workers=1, allow_sharpening=allow)
    assert cal["val_optimum"] == 0.5
    assert cal["temperature"] == (0.5 if allow else 1.0)
