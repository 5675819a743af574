"""Export a run's model to ONNX and record it in the model card.

The graph maps a normalised float32 batch (B, 1, S, S) to logits; the batch axis is dynamic.
Decoding and :class:`~cxrkit.data.transforms.Preprocessing` stay outside the graph and are
written into the card's ``onnx.preprocessing`` so any runtime can reproduce them, and
``Predictor(backend="onnx")`` reuses the very same Python preprocessing as the torch path.
Every export is checked against PyTorch before the card points at it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..errors import CxrkitError
from ..lungs.preprocess import make_self_contained
from ..models import load_run
from ..models.onnx_graph import export_graph
from ..run import RunDir, update_card, writes_run
from ..run.layout import ONNX_FILE
from .backends import file_sha256
from .predictor import Predictor

# Opset 18: the lowest the torch.export-based exporter emits without a lossy down-conversion.
ONNX_OPSET = 18
INPUT_NAME, OUTPUT_NAME = "image", "logits"
# Max |p_onnx - p_torch| accepted for the check images; float32 kernels differ by ~1e-6.
PARITY_TOLERANCE = 1e-4
# What an export is checked against: the fp32 PyTorch network, named because the API's default
# ("auto", cxrkit.inference.defaults) may pick an existing export or bf16 on this host.
PARITY_REFERENCE = {"backend": "torch", "precision": "32"}


class ExportError(CxrkitError, RuntimeError):
    """The exported graph does not reproduce the PyTorch model."""


def check_images(size: int, n: int = 4, seed: int = 0) -> np.ndarray:
    """Smooth random gray images in [0, 1] (N, size, size): deterministic export check inputs."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = [
        np.asarray(Image.fromarray(rng.random((8, 8), dtype=np.float32), mode="F").resize((size, size), Image.BICUBIC))
        for _ in range(n)
    ]
    return np.clip(np.stack(out), 0, 1).astype(np.float32)


def max_prob_difference(a: Predictor, b: Predictor, images: np.ndarray) -> float:
    """Max absolute difference of the two predictors' probabilities on preprocessed images."""
    return float(np.abs(a.proba_from_uint8(images) - b.proba_from_uint8(images)).max())


@writes_run("cxr export")
def export_onnx(run_dir: str | Path, out: str | Path | None = None, opset: int = ONNX_OPSET) -> dict:
    """Write the ONNX model (default ``RUN_DIR/model.onnx``), check it, record it in the card.

    A ``roi: lungs`` run that still names its lung run by an absolute path (made before runs
    carried their lung model) gets a copy of it first (:func:`~cxrkit.lungs.preprocess.make_self_contained`),
    so the exported run directory can be moved or copied whole.
    Returns the card's ``onnx`` entry. Raises :class:`ExportError` if onnxruntime's
    probabilities differ from PyTorch's by more than ``PARITY_TOLERANCE``.
    """
    run_dir = Path(run_dir)
    make_self_contained(run_dir)  # an older roi: lungs run takes its lung model in, as new ones do
    run = load_run(run_dir)
    pre = run.preprocessing
    out = Path(out) if out else run_dir / ONNX_FILE
    export_graph(run.model, (2, pre.channels, pre.input_size, pre.input_size), out, INPUT_NAME, OUTPUT_NAME, opset)
    s = pre.input_size
    entry = {
        "file": os.path.relpath(out.resolve(), run_dir.resolve())
        if out.resolve().is_relative_to(run_dir.resolve())
        else str(out.resolve()),
        "input": {
            "name": INPUT_NAME,
            "shape": ["batch", pre.channels, s, s],
            "dtype": "float32",
            "description": "gray image decoded to [0, 1], contrast-normalised and resized to "
            f"{s}x{s} as in 'preprocessing', quantised to uint8, then "
            "(x / 255 - mean) / std",
        },
        "output": {
            "name": OUTPUT_NAME,
            "shape": ["batch", len(run.classes) + len(run.aux_classes)],
            "classes": run.classes,
            **({"aux_outputs": run.aux_classes} if run.aux_classes else {}),
            "description": "logits; probabilities = softmax(logits / calibration.temperature)"
            + (" over the classes; the auxiliary outputs follow them (other abnormal)" if run.aux_classes else ""),
        },
        "preprocessing": pre.to_dict(),
        "opset": opset,
        "exporter": f"torch.onnx (dynamo) {torch.__version__}",
        "weights_sha256": file_sha256(RunDir(run_dir).weights),
    }
    torch_predictor = Predictor(run, **PARITY_REFERENCE)
    run.card.onnx = entry
    images = np.stack([pre.to_uint8(g) for g in check_images(s)])
    diff = max_prob_difference(torch_predictor, Predictor(run, backend="onnx"), images)
    if diff > PARITY_TOLERANCE:
        raise ExportError(
            f"{out}: ONNX probabilities differ from PyTorch by {diff:.2e} "
            f"(> {PARITY_TOLERANCE:.0e}); the card was not updated"
        )
    entry["check"] = {"images": len(images), "max_abs_prob_diff": diff}
    update_card(run_dir, "onnx", entry)
    return entry


@writes_run("cxr export", "ens_dir")
def export_ensemble_onnx(ens_dir: str | Path, opset: int = ONNX_OPSET) -> dict:
    """Export every member of an ensemble directory, then check the ensemble as a whole.

    Each member gets its own checked ``model.onnx`` (as ``cxr export MEMBER --onnx``), so members
    with different preprocessing export too and ``--backend onnx`` averages them exactly as the
    torch backend does; the ensemble under onnx must match it within ``PARITY_TOLERANCE``. The
    card's ``onnx_ensemble`` section lists the members' files and the check.
    """
    from .ensemble import load_ensemble, member_paths

    members = member_paths(ens_dir)
    files = [{"run": str(m), "file": export_onnx(m, None, opset)["file"]} for m in members]
    as_torch, as_onnx = load_ensemble(ens_dir, **PARITY_REFERENCE), load_ensemble(ens_dir, backend="onnx")
    pre = as_torch.preprocessing
    images = np.stack([pre.to_uint8(g) for g in check_images(pre.input_size)])
    diff = max_prob_difference(as_torch, as_onnx, images)
    if diff > PARITY_TOLERANCE:
        raise ExportError(
            f"{ens_dir}: the ensemble's ONNX probabilities differ from PyTorch by {diff:.2e} "
            f"(> {PARITY_TOLERANCE:.0e}); its card was not updated"
        )
    entry = {
        "members": files,
        "opset": opset,
        "combine": "mean of member softmax(logits / member temperature), then the ensemble's temperature",
        "check": {"images": len(images), "max_abs_prob_diff": diff},
    }
    update_card(ens_dir, "onnx_ensemble", entry)
    return entry
