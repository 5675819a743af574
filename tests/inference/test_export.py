"""ONNX export: card entry, dynamic batch, parity with PyTorch on synthetic and real images."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

from cxrkit.inference import Predictor
from cxrkit.inference.export import PARITY_TOLERANCE, max_prob_difference
from cxrkit.run import RunError, read_card
from cxrkit.run.layout import CARD_FILE


def test_export_records_file_input_preprocessing_and_opset(onnx_run):
    card = read_card(onnx_run)
    entry = card.onnx
    assert entry["file"] == "model.onnx" and (onnx_run / "model.onnx").is_file()
    assert entry["preprocessing"] == card.preprocessing.to_dict()
    s = card.preprocessing.input_size
    assert entry["input"]["shape"] == ["batch", 1, s, s] and entry["input"]["dtype"] == "float32"
    assert entry["output"]["classes"] == card.classes
    assert entry["opset"] >= 17 and entry["check"]["max_abs_prob_diff"] <= PARITY_TOLERANCE
    session = ort.InferenceSession(str(onnx_run / "model.onnx"), providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert inp.shape[1:] == [1, s, s] and isinstance(inp.shape[0], str)  # dynamic batch axis
    assert inp.type == "tensor(float)" and out.shape[1] == len(card.classes)


def test_parity_on_synthetic_images_at_several_batch_sizes(onnx_run, blob_dataset):
    torch_p, onnx_p = (
        Predictor.from_run(onnx_run, backend="torch", precision="32"),
        Predictor.from_run(onnx_run, backend="onnx"),
    )
    files = sorted(blob_dataset.glob("*/*.png"))[::6]
    images = np.stack([torch_p.prepare(f) for f in files])
    for n in (1, 3, len(images)):
        assert max_prob_difference(torch_p, onnx_p, images[:n]) <= PARITY_TOLERANCE
    a, b = torch_p.predict(files).results, onnx_p.predict(files).results
    assert [r.predicted_class for r in a] == [r.predicted_class for r in b]


@pytest.mark.realdata
def test_parity_on_real_radiographs(onnx_run, real_images):
    torch_p, onnx_p = (
        Predictor.from_run(onnx_run, backend="torch", precision="32"),
        Predictor.from_run(onnx_run, backend="onnx"),
    )
    images = np.stack([torch_p.prepare(f) for f in real_images])  # the run's own preprocessing
    assert max_prob_difference(torch_p, onnx_p, images) <= PARITY_TOLERANCE


def test_stale_export_is_refused(onnx_run, tmp_path):
    import shutil

    run = shutil.copytree(onnx_run, tmp_path / "run")
    card = json.loads((run / CARD_FILE).read_text())
    card["onnx"]["weights_sha256"] = "0" * 64
    (run / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(RunError, match="other weights"):
        Predictor.from_run(run, backend="onnx")
    (run / "model.onnx").unlink()
    with pytest.raises(RunError, match="missing"):
        Predictor.from_run(run, backend="onnx")


def test_onnx_input_is_bit_identical_to_the_torch_normalisation():
    import torch

    from cxrkit.data.transforms import Preprocessing
    from cxrkit.inference.backends import onnx_input

    batch = np.arange(256, dtype=np.uint8).reshape(1, 1, 16, 16)
    for pre in (Preprocessing(16), Preprocessing(16, mean=0.485, std=0.229)):
        expected = pre.normalise(torch.from_numpy(batch)).numpy()
        got = onnx_input(pre, batch)
        assert got.dtype == np.float32 and np.array_equal(got, expected)


def test_onnx_batches_in_flight_keep_input_order_and_failures(onnx_run, blob_dataset, tmp_path):
    # several single-threaded onnxruntime passes run at once; results must still come back
    # in input order, with the unreadable file reported where it was and the rest predicted
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    files = sorted(blob_dataset.glob("*/*.png"))[::4]
    inputs = files[:5] + [bad] + files[5:]
    torch_p = Predictor.from_run(onnx_run, batch_size=2, backend="torch", precision="32")
    onnx_p = Predictor.from_run(onnx_run, batch_size=2, backend="onnx")
    onnx_p.streams = 3  # more than this machine may have cores: exercise the pipelining
    seen = []
    a = torch_p.predict(inputs)
    b = onnx_p.predict(inputs, progress=lambda done, total: seen.append((done, total)))
    assert [r.name for r in b.results] == [str(f) for f in files] == [r.name for r in a.results]
    assert [e.name for e in b.errors] == [str(bad)]
    for x, y in zip(a.results, b.results):
        assert max(abs(x.probabilities[c] - y.probabilities[c]) for c in x.probabilities) <= PARITY_TOLERANCE
    assert seen[-1] == (len(inputs), len(inputs)) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    np.testing.assert_allclose(
        onnx_p.logits_from_uint8(np.stack([onnx_p.prepare(f) for f in files])),
        torch_p.logits_from_uint8(np.stack([torch_p.prepare(f) for f in files])),
        atol=1e-3,
    )
