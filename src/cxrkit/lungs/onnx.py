"""ONNX export of a lung run (``lungs.onnx`` beside its weights) and an onnxruntime network.

The exported graph is the network only (input: the standardised (N, 1, S, S) batch, output:
logits); resizing, standardisation and thresholding stay in :class:`LungSegmenter`, so both
backends share every other step. On this CPU onnxruntime ran the compact U-Net ~1.5x faster
than torch channels_last (``bench/lungs_speed.py``). The file records the weights' sha256 in
its metadata and is re-exported when they change.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import torch

from .._io import atomic_write_bytes
from ..run import lung_card as cards

ONNX = "lungs.onnx"


def export_onnx(model: torch.nn.Module, size: int, path: str | Path, weights_sha256: str = "") -> Path:
    import onnx

    buf = io.BytesIO()
    torch.onnx.export(
        model.eval(),
        torch.zeros(1, 1, size, size),
        buf,
        input_names=["x"],
        output_names=["logits"],
        dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}},
        dynamo=False,
    )
    proto = onnx.load_from_string(buf.getvalue())
    onnx.helper.set_model_props(proto, {"weights_sha256": weights_sha256})
    return atomic_write_bytes(path, proto.SerializeToString())


def session(path: str | Path, threads: int = 2):
    """onnxruntime CPU session whose idle threads sleep instead of spinning (a spinning pool
    takes the cores from the decoding and torch work between runs)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxNet:
    """Callable like the torch network: (N, 1, S, S) tensor in, logits tensor out."""

    def __init__(self, sess):
        self.sess = sess

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.sess.run(None, {"x": np.ascontiguousarray(x.numpy(), np.float32)})[0])

    def to(self, *args, **kwargs):
        return self

    def eval(self):
        return self


def onnx_net(run_dir: str | Path, model: torch.nn.Module, size: int, threads: int = 2) -> OnnxNet:
    """The run's ONNX network, exported first when missing or made from other weights."""
    import onnx

    run_dir = Path(run_dir)
    digest = hashlib.sha256((run_dir / cards.WEIGHTS).read_bytes()).hexdigest()
    path = run_dir / ONNX
    if (
        not path.is_file()
        or {p.key: p.value for p in onnx.load(str(path)).metadata_props}.get("weights_sha256") != digest
    ):
        export_onnx(model, size, path, digest)
    return OnnxNet(session(path, threads))
