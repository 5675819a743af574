"""Predictor backends are small objects chosen by name; the ONNX one never builds the torch network."""

from __future__ import annotations

import numpy as np
import pytest

from cxrkit.errors import UsageError
from cxrkit.inference import Predictor
from cxrkit.inference.backends import BACKEND_CLASSES, OnnxBackend, TorchBackend


def test_backends_are_registered_by_name():
    from cxrkit.inference.defaults import BACKENDS

    assert BACKEND_CLASSES["torch"] is TorchBackend and BACKEND_CLASSES["onnx"] is OnnxBackend
    assert set(BACKENDS) == {"auto", *BACKEND_CLASSES}  # auto chooses among them (test_parity.py)


def test_onnx_backend_never_builds_the_torch_model(onnx_run, monkeypatch, synth_array):
    import cxrkit.models.loading as loading

    def no_network(*a, **k):
        raise AssertionError("the ONNX backend built the torch network")

    monkeypatch.setattr(loading, "build_classifier", no_network)
    p = Predictor.from_run(onnx_run, backend="onnx")
    assert p.run.model is None and p.engine.model is None
    probs = p.proba_from_uint8(np.stack([synth_array(s, (64, 64)) for s in range(3)]))
    assert probs.shape == (3, 3) and np.allclose(probs.sum(1), 1, atol=1e-5)
    with pytest.raises(UsageError, match="no PyTorch model"):
        p.model  # noqa: B018  (CAMs need the torch backend, and say so)


def test_both_backends_agree(onnx_run, synth_array):
    images = np.stack([synth_array(s, (64, 64)) for s in range(6)])
    a = Predictor.from_run(onnx_run, backend="torch", precision="32").proba_from_uint8(images)
    b = Predictor.from_run(onnx_run, backend="onnx").proba_from_uint8(images)
    assert np.abs(a - b).max() < 1e-4
