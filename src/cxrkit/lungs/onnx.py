"""ONNX export of a lung run (``lungs.onnx`` beside its weights) and an onnxruntime network.

The exported graph is the network only (input: the standardised (N, 1, S, S) batch, output:
logits); resizing, standardisation and thresholding stay in :class:`LungSegmenter`, so both
backends share every other step. On this CPU onnxruntime ran the compact U-Net ~1.5x faster
than torch channels_last (``bench/lungs_speed.py``). The file records the weights' sha256 in
its metadata and is re-exported when they change.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from ..models.onnx_graph import export_graph, graph_metadata
from ..run import lung_card as cards

ONNX = "lungs.onnx"


def export_onnx(model: torch.nn.Module, size: int, path: str | Path, weights_sha256: str = "") -> Path:
    """``lungs.onnx`` through the shared exporter (TorchScript: see :mod:`cxrkit.models.onnx_graph`)."""
    meta = {"weights_sha256": weights_sha256}
    return export_graph(model, (1, 1, size, size), path, "x", "logits", dynamo=False, metadata=meta)


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
    run_dir = Path(run_dir)
    digest = hashlib.sha256((run_dir / cards.WEIGHTS).read_bytes()).hexdigest()
    path = run_dir / ONNX
    if not path.is_file() or graph_metadata(path).get("weights_sha256") != digest:
        export_onnx(model, size, path, digest)
    return OnnxNet(session(path, threads))
