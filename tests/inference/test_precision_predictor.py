"""The Predictor's precision: resolved once, recorded, and bf16 close to fp32 on a tiny model."""

from __future__ import annotations

import numpy as np
import pytest

from cxrkit.inference import Predictor


def test_precision_is_resolved_and_recorded(tiny_run):
    p32 = Predictor.from_run(tiny_run.run_dir, precision="32")
    assert p32.precision == "32" and p32.precision_note == ""
    auto = Predictor.from_run(tiny_run.run_dir, precision="auto")
    assert auto.precision in ("32", "bf16")
    assert (auto.precision == "32") == bool(auto.precision_note)  # fp32 under auto always says why


def test_bf16_probabilities_stay_close_to_fp32(tiny_run, synth_array):
    images = np.stack([synth_array(seed, (64, 64)) for seed in range(16)])
    p32 = Predictor.from_run(tiny_run.run_dir, precision="32")
    pbf = Predictor.from_run(tiny_run.run_dir, precision="bf16")
    a, b = p32.proba_from_uint8(images), pbf.proba_from_uint8(images)
    assert np.isfinite(b).all() and np.abs(a - b).max() < 0.05
    assert (a.argmax(1) == b.argmax(1)).mean() >= 0.9


def test_unknown_precision_is_a_usage_error(tiny_run):
    from cxrkit.errors import UsageError

    with pytest.raises(UsageError, match="precision"):
        Predictor.from_run(tiny_run.run_dir, precision="fp8")
