"""int8 ONNX: static quantization of a run's export, calibrated on its own train images.

``quantize_run(run)`` (``cxr export RUN --onnx --int8``) makes sure ``model.onnx`` is there
and current (else calls :func:`~cxrkit.inference.export.export_onnx`), then:

1. **calibration**: ``calibration`` images (default 128) drawn evenly from the run's *train*
   split (split.csv), decoded and preprocessed by the run's own Predictor (``prepare``), fed
   as the ONNX input; the graph goes through onnxruntime's ``quant_pre_process`` first
   (shape inference, graph optimisation); activation ranges by MinMax;
2. **formats**: quantizes to QDQ and to QOperator (uint8 activations, int8 weights per
   channel in a 7-bit range, ``reduce_range``: x86 CPUs without VNNI, like this project's AVX2
   host, multiply u8 x s8 with a saturating 16-bit add; with full-range weights the tiny test
   model's mean |dp| was 0.073 whatever the calibration method, with reduce_range 0.001), times
   both on a batch of 32 (one thread, as the Predictor runs each pass) in interleaved rounds
   and keeps the faster one that passes parity;
3. **parity** against the fp32 export on ``check`` images (default 200) of the *val* split,
   never used for calibration: top-1 agreement >= ``MIN_AGREEMENT`` and mean |p_int8 - p_fp32|
   <= ``MAX_MEAN_PROB_DIFF``, probabilities with the run's temperature. A model that fails
   is not written into the card (:class:`QuantizationError`);
4. writes ``model.int8.onnx`` and the card section ``onnx_int8`` (file, format, calibration,
   check numbers, timings, weights hash): :class:`OnnxInt8Backend` refuses a stale one.
"""

from __future__ import annotations

import csv
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from ..errors import CxrkitError
from ..run import RunDir, read_card, update_card, writes_run
from .backends import INT8_CARD_SECTION as CARD_SECTION
from .backends import INT8_FILE, OnnxInt8Backend, file_sha256, onnx_input, onnx_session
from .predictor import Predictor

__all__ = ["OnnxInt8Backend", "QuantizationError", "quantize_run"]  # the backend lives with the backends
MIN_AGREEMENT = 0.99
MAX_MEAN_PROB_DIFF = 0.02
FORMATS = ("qdq", "qoperator")


class QuantizationError(CxrkitError, RuntimeError):
    """The int8 model does not reproduce the fp32 export closely enough (or cannot be made)."""


def split_images(run_dir: str | Path, split: str, n: int) -> list[Path]:
    """Up to ``n`` image paths of ``split``, evenly spaced over the run's split.csv (deterministic)."""
    run = RunDir(run_dir)
    card = read_card(run_dir)
    root = Path(card.data.get("path") or "")
    with open(run.split, newline="") as fh:
        rows = [r["file"] for r in csv.DictReader(fh) if r.get("split") == split]
    if not rows:
        raise QuantizationError(f"{run.split}: no {split!r} images to draw int8 calibration/check images from")
    picked = rows[:: max(1, len(rows) // n)][:n]
    paths = [p if p.is_absolute() else root / p for p in map(Path, picked)]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise QuantizationError(
            f"{missing[0]}: {split} image of {run.split} not found (data moved? the card's "
            f"data.path is {root}); int8 calibration reads the run's own images"
        )
    return paths


def _inputs(predictor, paths: list[Path]) -> np.ndarray:
    """The ONNX float32 input (N, 1, S, S) for image files, through the run's Predictor."""
    return onnx_input(predictor.preprocessing, np.stack([predictor.prepare(p) for p in paths])[:, None])


def _logits(session, x: np.ndarray, batch: int = 32) -> np.ndarray:
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x[i : i + batch]})[0] for i in range(0, len(x), batch)])


def _proba(logits: np.ndarray, temperature: float) -> np.ndarray:
    z = logits / temperature
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def parity(p_ref: np.ndarray, p_new: np.ndarray) -> dict:
    """Top-1 agreement and probability differences of two (N, K) probability arrays."""
    diff = np.abs(p_new - p_ref)
    return {
        "images": len(p_ref),
        "top1_agreement": float((p_ref.argmax(1) == p_new.argmax(1)).mean()),
        "max_abs_prob_diff": float(diff.max()),
        "mean_abs_prob_diff": float(diff.mean()),
    }


def _quantize(src: Path, dst: Path, fmt: str, calibration: np.ndarray) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self, name: str):
            self.batches = iter([{name: calibration[i : i + 16]} for i in range(0, len(calibration), 16)])

        def get_next(self):
            return next(self.batches, None)

    name = onnx_session(src).get_inputs()[0].name
    quantize_static(
        str(src),
        str(dst),
        Reader(name),
        quant_format=QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
        reduce_range=True,
    )


def _seconds_per_batch(sessions: dict, x: np.ndarray, rounds: int = 3) -> dict[str, float]:
    """Median seconds of one single-threaded run on ``x``, per session, interleaved rounds."""
    times: dict[str, list[float]] = {k: [] for k in sessions}
    name = next(iter(sessions.values())).get_inputs()[0].name
    for s in sessions.values():
        s.run(None, {name: x})  # warm-up
    for _ in range(rounds):
        for k, s in sessions.items():
            t = time.perf_counter()
            s.run(None, {name: x})
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def _fp32_export(run_dir: Path) -> Path:
    """The run's current fp32 ONNX export, made now if missing or stale."""
    from .export import export_onnx

    card, weights = read_card(run_dir), RunDir(run_dir).weights
    entry = card.onnx or {}
    path = run_dir / entry.get("file", "model.onnx")
    if not path.is_file() or entry.get("weights_sha256") != file_sha256(weights):
        entry = export_onnx(run_dir)
        path = run_dir / entry["file"]
    return path


@writes_run("cxr export --int8")
def quantize_run(
    run_dir: str | Path,
    calibration: int = 128,
    check: int = 200,
    formats: tuple[str, ...] = FORMATS,
    keep_failed: str | Path | None = None,
) -> dict:
    """Quantize the run's ONNX export to int8 (see the module docstring); returns the card entry.

    ``keep_failed``: where to save the fastest candidate when none passes (benches measure it;
    the card is still left alone).
    """
    run_dir = Path(run_dir)
    if unknown := set(formats) - set(FORMATS):
        raise QuantizationError(f"unknown int8 format(s) {sorted(unknown)}; choose from {FORMATS}")
    src = _fp32_export(run_dir)
    predictor = Predictor.from_run(run_dir, backend="onnx")
    calib = _inputs(predictor, split_images(run_dir, "train", calibration))
    held_out = _inputs(predictor, split_images(run_dir, "val", check))
    temperature = predictor.temperature
    fp32 = onnx_session(src)
    p_ref = _proba(_logits(fp32, held_out), temperature)
    out = run_dir / INT8_FILE
    with tempfile.TemporaryDirectory(dir=run_dir, prefix=".int8.") as tmp:
        from onnxruntime.quantization.shape_inference import quant_pre_process

        prepared = Path(tmp) / "prepared.onnx"  # shapes inferred, graph optimised, as onnxruntime asks
        quant_pre_process(str(src), str(prepared))
        candidates, checks = {}, {}
        for fmt in formats:
            path = Path(tmp) / f"{fmt}.onnx"
            _quantize(prepared, path, fmt, calib)
            candidates[fmt] = onnx_session(path)
            checks[fmt] = parity(p_ref, _proba(_logits(candidates[fmt], held_out), temperature))
        timing = _seconds_per_batch({"fp32": fp32, **candidates}, calib[:32])
        passing = [
            f
            for f in formats
            if checks[f]["top1_agreement"] >= MIN_AGREEMENT and checks[f]["mean_abs_prob_diff"] <= MAX_MEAN_PROB_DIFF
        ]
        if not passing:
            if keep_failed:
                os.replace(Path(tmp) / f"{min(formats, key=timing.get)}.onnx", keep_failed)
            raise QuantizationError(
                f"{run_dir}: no int8 model passed parity with the fp32 export on {len(held_out)} val images "
                f"(need top-1 agreement >= {MIN_AGREEMENT:.0%} and mean |dp| <= {MAX_MEAN_PROB_DIFF}): "
                + "; ".join(f"{f}: {c['top1_agreement']:.1%}, {c['mean_abs_prob_diff']:.3f}" for f, c in checks.items())
                + ". Keep using the fp32 export (--backend onnx)"
            )
        best = min(passing, key=timing.get)
        os.replace(Path(tmp) / f"{best}.onnx", out)
    entry = {
        "file": INT8_FILE,
        "format": best,
        "activations": "uint8",
        "weights": "int8 per channel, 7-bit range",
        "calibration": {"split": "train", "images": len(calib), "method": "MinMax"},
        "check": {
            "split": "val",
            **checks[best],
            "min_agreement": MIN_AGREEMENT,
            "max_mean_prob_diff": MAX_MEAN_PROB_DIFF,
        },
        "candidates": {f: {**checks[f], "ms_per_batch32": round(timing[f] * 1e3, 1)} for f in formats},
        "fp32_ms_per_batch32": round(timing["fp32"] * 1e3, 1),
        "preprocessing": predictor.run.preprocessing.to_dict(),  # without a lung ROI: the backend compares this
        "weights_sha256": file_sha256(RunDir(run_dir).weights),
        "fp32_onnx_sha256": file_sha256(src),
    }
    update_card(run_dir, CARD_SECTION, entry)
    return entry
