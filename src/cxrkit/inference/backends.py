"""Where the Predictor's arithmetic runs: one small object per backend, chosen by name.

Each backend turns a uint8 batch (B, 1, S, S) into float32 logits (B, K) and says how many
batches may be in flight at once (``streams``). The ONNX backend never builds the torch
network: it needs only the card, the export and onnxruntime.

* ``torch``: the run's PyTorch model, channels_last, one batch at a time on all of torch's
  threads, optionally under bf16 autocast (``precision``); holds ``lock`` while it runs, so
  CAM code that hooks the model can never see another request's activations.
* ``onnx``: one single-threaded onnxruntime pass per core, each on its own batch: no pass waits
  at a thread barrier for a core that a decoding thread holds (measured on 2 cores: +6%
  model-only, +8% end to end).
"""

from __future__ import annotations

import functools
import os
import threading
from pathlib import Path

import numpy as np
import torch

from .._io import file_sha256 as file_sha256_uncached
from .._precision import autocast, resolve_precision
from ..models import LoadedRun
from ..run import RunDir, RunError


class TorchBackend:
    name = "torch"
    streams = 1

    def __init__(self, run: LoadedRun, device: str | torch.device = "cpu", precision: str = "32"):
        if run.model is None:
            raise RunError(f"{run.run_dir}: the torch backend needs the model's weights (loaded without them)")
        self.device = torch.device(device)
        self.model = run.model.to(self.device).eval().to(memory_format=torch.channels_last)
        self.preprocessing = run.preprocessing
        self.precision, self.precision_note = resolve_precision(precision, self.device.type)
        self.lock = threading.RLock()

    def model_input(self, batch: np.ndarray) -> torch.Tensor:
        """uint8 images (B, S, S) -> normalised, on the device, channels_last."""
        x = self.preprocessing.normalise(torch.from_numpy(np.array(batch))[:, None].to(self.device))
        return x.contiguous(memory_format=torch.channels_last)

    def forward(self, batch: np.ndarray) -> np.ndarray:
        with self.lock, torch.inference_mode(), autocast(self.precision, self.device.type):
            return self.model(self.model_input(batch[:, 0])).float().cpu().numpy()


class OnnxBackend:
    name = "onnx"
    precision, precision_note = "32", ""

    def __init__(self, run: LoadedRun, device=None, precision: str = "32"):
        self.preprocessing = run.preprocessing
        self.session = _onnx_session(run)
        self.input_name = self.session.get_inputs()[0].name
        self.streams = os.cpu_count() or 1
        self.lock = threading.RLock()  # not needed by onnxruntime (run() is thread-safe); CAM code asks for it
        self.model = None

    def forward(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: onnx_input(self.preprocessing, batch)})[0]


INT8_FILE = "model.int8.onnx"  # made by cxrkit.inference.quantize (cxr export --onnx --int8)
INT8_CARD_SECTION = "onnx_int8"


class OnnxInt8Backend(OnnxBackend):
    """The ``onnx-int8`` backend: the int8 model, run like the fp32 ONNX one."""

    name = "onnx-int8"

    def __init__(self, run: LoadedRun, device=None, precision: str = "32"):
        entry = run.card.extra.get(INT8_CARD_SECTION)
        how = f"make it with `cxr export {run.run_dir} --onnx --int8`"
        if not entry:
            raise RunError(f"{run.run_dir}: no int8 model in the model card; {how}")
        path = run.run_dir / entry["file"]
        if not path.is_file():
            raise RunError(f"{path}: int8 model listed in the model card is missing; {how}")
        if entry.get("preprocessing") != run.preprocessing.to_dict() or entry.get("weights_sha256") != file_sha256(
            RunDir(run.run_dir).weights
        ):
            raise RunError(f"{path}: made from other weights or preprocessing than the run's; {how}")
        self.preprocessing = run.preprocessing
        self.session = onnx_session(path)
        self.input_name = self.session.get_inputs()[0].name
        self.streams = os.cpu_count() or 1
        self.lock, self.model = threading.RLock(), None


BACKEND_CLASSES = {"torch": TorchBackend, "onnx": OnnxBackend, "onnx-int8": OnnxInt8Backend}
NEEDS_TORCH_MODEL = {"torch"}


def choose_backend(run: LoadedRun) -> tuple[str, str]:
    """``backend="auto"``: (name, why) of the fastest backend the run is ready for.

    Order: the int8 export (``cxr export --onnx --int8``; it exists only if it passed the parity
    gate) when its own timing at export beat the fp32 export's, then the fp32 ONNX export, then
    torch. Exports made from other weights or preprocessing are skipped, and the reason is
    given. Why ONNX before torch: lite0 at 224 px on this 2-core CPU, end to end from PNGs,
    onnxruntime 97 img/s vs torch 56 (``bench/infer_speed.py``, 2026-12-02). On a CPU with
    native bf16 (AVX512-BF16/AMX), torch bf16 may be faster: name ``--backend torch`` there.
    """
    skipped = []
    int8 = run.card.extra.get(INT8_CARD_SECTION) or {}
    if int8:
        ms = (int8.get("candidates", {}).get(int8.get("format"), {}) or {}).get("ms_per_batch32")
        fp32_ms = int8.get("fp32_ms_per_batch32")
        if ms is not None and fp32_ms is not None and ms >= fp32_ms:
            skipped.append(f"int8 export not faster than fp32 at export ({ms} vs {fp32_ms} ms per batch of 32)")
        else:
            try:
                OnnxInt8Backend(run)
                return "onnx-int8", "auto: int8 ONNX export (passed parity with fp32 at export)"
            except RunError as exc:
                skipped.append(str(exc))
    if run.card.onnx:
        try:
            _onnx_session(run)
            return "onnx", "auto: fp32 ONNX export" + (f" ({'; '.join(skipped)})" if skipped else "")
        except RunError as exc:
            skipped.append(str(exc))
    why = (
        "; ".join(skipped)
        or f"no ONNX export (`cxr export {run.run_dir} --onnx` makes one: 1.7x faster end to end on 2 CPU cores)"
    )
    return "torch", f"auto: torch ({why})"


def onnx_input(preprocessing, batch: np.ndarray) -> np.ndarray:
    """The ONNX model's float32 input for a uint8 batch: ``Preprocessing.normalise`` as a lookup.

    The table is ``normalise`` applied to the 256 levels, so the result is bit-identical to
    its uint8 torch path (tested). One numpy lookup costs a third of the float arithmetic, and
    no torch op runs between onnxruntime runs: a torch op wakes torch's OpenMP threads, which
    then fight onnxruntime's for the cores (measured 20-30x slower normalisation on 2 cores).
    """
    return np.take(_normalise_table(preprocessing), batch)


@functools.lru_cache(maxsize=8)
def _normalise_table(preprocessing) -> np.ndarray:
    levels = np.arange(256, dtype=np.float32) / np.float32(255)
    return np.asarray(preprocessing.normalise(levels), np.float32)


def _identity(path: str | Path) -> tuple[str, int, int]:
    """A file's resolved path, mtime and size: the key of the caches below (a rewritten file is a new key)."""
    st = os.stat(path)
    return str(Path(path).resolve()), st.st_mtime_ns, st.st_size


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, computed once per file version: ``backend="auto"`` checks the export's
    weights hash, then the chosen backend checks it again (12 MB for lite0, ~30 ms each)."""
    return _sha256(_identity(path))


@functools.lru_cache(maxsize=32)
def _sha256(identity: tuple[str, int, int]) -> str:
    return file_sha256_uncached(identity[0])


def _onnx_session(run: LoadedRun):
    """An onnxruntime session for the run's export, refused when it is missing, stale or broken."""
    entry = run.card.onnx
    how = f"export it with `cxr export {run.run_dir} --onnx`"
    if not entry:
        raise RunError(f"{run.run_dir}: no ONNX model in the model card; {how}")
    path = run.run_dir / entry["file"]  # an absolute "file" stays absolute
    if not path.is_file():
        raise RunError(f"{path}: ONNX model listed in the model card is missing; {how}")
    if entry.get("preprocessing") != run.preprocessing.to_dict():
        raise RunError(f"{path}: exported with other preprocessing than the run's; {how}")
    weights = RunDir(run.run_dir).weights
    if not weights.is_file() or entry.get("weights_sha256") != file_sha256(weights):
        raise RunError(f"{path}: exported from other weights than {weights.name}; {how}")
    try:
        return onnx_session(path)
    except Exception as exc:  # onnxruntime raises its own untyped errors on truncated files
        raise RunError(
            f"{path}: onnxruntime cannot load it ({type(exc).__name__}); the file is damaged; {how}"
        ) from None


def onnx_session(path: str | Path, threads: int = 1):
    """An onnxruntime CPU session running each pass on ``threads`` threads (the Predictor runs
    one single-threaded pass per core), whose idle threads sleep instead of spinning: spinning
    threads would take the cores from the decode threads (and from torch) between runs.

    Sessions are shared per file version (``run()`` is thread-safe): ``backend="auto"`` opens the
    export to check that it loads, and the backend it picks then reuses that session instead of
    loading and optimising the graph a second time."""
    return _session(_identity(path), threads)


@functools.lru_cache(maxsize=8)
def _session(identity: tuple[str, int, int], threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(identity[0], options, providers=["CPUExecutionProvider"])
