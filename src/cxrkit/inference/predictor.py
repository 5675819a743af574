"""One Predictor, loaded from a run directory, used by every command that runs the model.

Preprocessing comes from the run's model card (never re-coded per command), so evaluate,
predict, explain and serve see exactly the pixels training saw. The arithmetic runs on a
backend object (:mod:`cxrkit.inference.backends`): the PyTorch model (fp32 or bf16)
or the ONNX export made by ``cxr export`` (onnxruntime; the torch network is never built).
Non-finite outputs are never returned as an answer: such an input becomes a :class:`Failure`.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .._numeric import other_abnormal, softmax
from ..data.cache import cached_images
from ..data.images import ImageReadError, as_float01, read_gray
from ..data.pipeline import ROI_OK
from ..errors import CxrkitError, UsageError
from ..lungs.preprocess import build_pipeline
from ..models import LoadedRun, load_run
from ..run import RunDir, RunError
from .backends import BACKEND_CLASSES, NEEDS_TORCH_MODEL, choose_backend
from .defaults import BACKENDS, DEFAULT_BACKEND, DEFAULT_PRECISION, DEFAULT_THRESHOLD, check_threshold
from .tta import average_views, check_tta

ImageInput = str | Path | np.ndarray | bytes


@dataclass(frozen=True)
class Prediction:
    """The model's answer for one image (probabilities calibrated with the run's temperature).

    Attributes:
        name: the input's name (its path, or the name given with it).
        probabilities: class -> probability; they sum to 1 over the run's classes.
        predicted_class: the class with the top probability.
        confidence: the top probability.
        uncertain: ``confidence`` is below the threshold: read it as "no answer".
        other_abnormal: models trained with auxiliary classes only (else None): the probability
            of "abnormal, but none of the classes".
        other_abnormal_flag: ``other_abnormal`` reaches the threshold fitted on val; the film
            then needs a reader whatever ``predicted_class`` says (None without auxiliary classes).
    """

    name: str
    probabilities: dict[str, float]
    predicted_class: str
    confidence: float  # the top probability
    uncertain: bool  # confidence < threshold
    # models with auxiliary outputs only (None otherwise): the probability of "abnormal, but none
    # of the classes" and whether it reaches the threshold fitted on val (the film then needs a
    # reader whatever ``predicted_class`` says)
    other_abnormal: float | None = None
    other_abnormal_flag: bool | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        if self.other_abnormal is None:  # a model without auxiliary outputs: the fields mean nothing
            del d["other_abnormal"], d["other_abnormal_flag"]
        return d


@dataclass(frozen=True)
class Failure:
    """An input that could not be read; the batch went on without it.

    Attributes:
        name: the input's name.
        reason: why it could not be read or predicted, in one line.
    """

    name: str
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


NON_FINITE = "the model gave non-finite outputs (NaN/inf) for this input; no answer is given"


class NonFiniteOutput(CxrkitError, ValueError):
    """The model's output for an input was NaN or infinite: never reported as a prediction."""


@dataclass
class Predictions:
    """What :meth:`Predictor.predict` returns: the answers and the inputs that failed.

    Attributes:
        results: one :class:`Prediction` per input read, in input order.
        errors: one :class:`Failure` per input that could not be read or predicted.
    """

    results: list[Prediction] = field(default_factory=list)
    errors: list[Failure] = field(default_factory=list)


class Predictor:
    """Class probabilities for images, from a trained run.

    ``lock`` is held while the PyTorch model runs: code that hooks the model (CAMs) holds it
    too, so a concurrent forward pass can never leak into another request's activations.
    ``precision`` ("32", "bf16" or "auto": bf16 where the device computes it natively) applies
    to the torch backend; the resolved one is :attr:`precision`. ``backend`` and ``precision``
    default to the CLI's (:mod:`cxrkit.inference.defaults`: "auto"; the chosen backend is
    :attr:`backend`, why in :attr:`backend_note`). ``tta`` "standard" averages
    the probabilities over :mod:`cxrkit.inference.tta`'s views (7 forward passes per image).
    :meth:`from_run` loads one run; ``cxrkit.load`` (:func:`cxrkit.inference.loader.load_predictor`)
    loads a run or an ensemble directory.
    """

    def __init__(
        self,
        run: LoadedRun,
        device: str | torch.device = "cpu",
        batch_size: int = 32,
        backend: str = DEFAULT_BACKEND,
        threshold: float = DEFAULT_THRESHOLD,
        precision: str = DEFAULT_PRECISION,
        tta: str = "none",
    ):
        if backend not in BACKENDS:
            raise UsageError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        self.backend_note = ""
        if backend == "auto":
            backend, self.backend_note = choose_backend(run)
            if backend == "torch" and run.model is None:
                raise RunError(f"{run.run_dir}: {self.backend_note}, but the run was loaded without its weights")
        self.run = run
        self.device = torch.device(device)
        self.engine = BACKEND_CLASSES[backend](run, self.device, precision)
        self.classes = run.classes
        self.aux_classes = list(run.aux_classes)  # trained extra outputs, reported as "other abnormal"
        # the card's chain (roi: lungs puts the lung crop in front): cxrkit.lungs.preprocess.build_pipeline
        card = RunDir(run.run_dir).card
        self.preprocessing = build_pipeline(run.card.preprocessing.to_dict(), run.run_dir, str(card))
        self.fallbacks = FallbackLog()
        self.batch_size = batch_size
        self.backend = backend
        self.threshold = check_threshold(threshold)
        self.lock = self.engine.lock
        self.streams = self.engine.streams  # batches in flight
        self.tta = check_tta(tta)

    @classmethod
    def from_run(
        cls,
        run_dir: str | Path,
        device: str | torch.device = "cpu",
        batch_size: int = 32,
        backend: str = DEFAULT_BACKEND,
        threshold: float = DEFAULT_THRESHOLD,
        precision: str = DEFAULT_PRECISION,
        tta: str = "none",
    ) -> "Predictor":
        """The Predictor of one run directory (an ensemble directory: use ``cxrkit.load``).

        Args:
            run_dir: a run directory of ``cxr train``.
            device: "cpu", "cuda" or a torch device.
            batch_size: images per forward pass.
            backend: "auto" (the fastest export that passed parity, else torch), "torch",
                "onnx" or "onnx-int8".
            threshold: top probability below which a prediction is flagged ``uncertain``.
            precision: "auto", "32" or "bf16" (torch backend).
            tta: "none" or "standard" (7 views averaged).

        Returns:
            The Predictor; :attr:`backend_note` says why "auto" chose its backend.
        """
        if RunDir(run_dir).is_ensemble():
            raise UsageError(
                f"{run_dir} is an ensemble directory; load it with cxrkit.load() "
                "(cxrkit.inference.load_predictor), which also loads single runs"
            )
        note = ""
        if backend == "auto":  # chosen once here; the model's weights are read only when torch is the choice
            run = load_run(run_dir, device, with_model=False)
            backend, note = choose_backend(run)
            if backend in NEEDS_TORCH_MODEL:
                run = load_run(run_dir, device, with_model=True)
        else:
            run = load_run(run_dir, device, with_model=backend in NEEDS_TORCH_MODEL)
        predictor = cls(run, device, batch_size, backend, threshold, precision, tta)
        predictor.backend_note = note
        return predictor

    @property
    def model(self) -> torch.nn.Module:
        """The PyTorch network (CAMs, features); the ONNX backend has none."""
        if self.engine.model is None:
            raise UsageError(f"the {self.backend} backend has no PyTorch model; use backend='torch' for this")
        return self.engine.model

    @property
    def precision(self) -> str:
        return self.engine.precision

    @property
    def precision_note(self) -> str:
        """Why the precision differs from what was asked ("" when it does not)."""
        return self.engine.precision_note

    @property
    def temperature(self) -> float:
        """Calibration temperature fitted on val (1.0 when the run has none)."""
        return self.run.card.temperature

    @property
    def model_id(self) -> str:
        """Run name + split hash: names the model and the data split it was selected on."""
        return f"{self.run.run_dir.name}@{self.run.card.split_hash[:12]}"

    def logits_from_uint8(self, images: np.ndarray) -> np.ndarray:
        """Logits of the model's classes for preprocessed uint8 images (N, S, S), in batches."""
        return self.all_logits_from_uint8(images)[:, : len(self.classes)]

    def all_logits_from_uint8(self, images: np.ndarray) -> np.ndarray:
        """Every output (N, classes + :attr:`aux_classes`): the auxiliary ones come last."""
        batches = [
            np.asarray(images[start : start + self.batch_size])[:, None]
            for start in range(0, len(images), self.batch_size)
        ]
        with self._inference_pool() as pool:
            out = list(pool.map(self._forward, batches))
        width = len(self.classes) + len(self.aux_classes)
        return np.concatenate(out) if out else np.zeros((0, width), np.float32)

    def dataset_logits(self, dataset, cache_dir=None, workers: int = 2) -> np.ndarray:
        """Every output (classes, then auxiliary ones) for each image of ``dataset``, read
        through the image cache (scoring a split: :mod:`cxrkit.inference.splits`)."""
        return self.all_logits_from_uint8(cached_images(dataset, self.preprocessing, cache_dir, workers=workers))

    def _inference_pool(self) -> ThreadPoolExecutor | _InCallingThread:
        """Where batches run: a thread per stream for ONNX; the caller's own thread for PyTorch,
        whose callers may hold :attr:`lock` (CAMs) and would deadlock a worker thread."""
        if self.streams == 1:
            return _InCallingThread()
        return ThreadPoolExecutor(self.streams, thread_name_prefix="cxr-infer")

    def model_input(self, batch: np.ndarray) -> torch.Tensor:
        """uint8 images (B, S, S) -> the torch model's input: normalised, on the device, channels_last."""
        if not hasattr(self.engine, "model_input"):
            raise UsageError(f"the {self.backend} backend has no PyTorch input; use backend='torch' for this")
        return self.engine.model_input(batch)

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        """Logits of a uint8 batch (B, 1, S, S) on the chosen backend."""
        return self.engine.forward(batch)

    def proba_from_uint8(self, images: np.ndarray, temperature: float | None = None) -> np.ndarray:
        """Probabilities (after the temperature), averaged over the TTA views when ``tta`` is on."""
        t = self.temperature if temperature is None else temperature
        return average_views(lambda v: softmax(self.logits_from_uint8(v), t), images, self.tta)

    def proba_and_other_from_uint8(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """:meth:`proba_from_uint8` and the "other abnormal" probability from the same passes.

        Other abnormal: the softmax mass of the auxiliary outputs (None without them). The class
        probabilities stay renormalised over the classes, so they read as before and match
        evaluation; the flag (:attr:`other_abnormal_threshold`) says when the rest is large.
        """
        if not self.aux_classes:
            return self.proba_from_uint8(images), None
        n, t = len(self.classes), self.temperature

        def both(v: np.ndarray) -> np.ndarray:
            logits = self.all_logits_from_uint8(v)
            return np.concatenate([softmax(logits[:, :n], t), other_abnormal(logits, n, t)[:, None]], 1)

        out = average_views(both, images, self.tta)
        return out[:, :n], out[:, n]

    @property
    def other_abnormal_threshold(self) -> float | None:
        """Other-abnormal probability from which a film is flagged (fitted on val by
        ``cxr evaluate``; None before, or for a model without auxiliary outputs)."""
        return self.run.card.other_abnormal_threshold if self.aux_classes else None

    def blank_input(self, value: int = 128) -> np.ndarray:
        """One uniform model input (1, S, S) uint8: a health probe that needs no decoder."""
        s = self.preprocessing.input_size
        return np.full((1, s, s), value, np.uint8)

    def predict_proba(self, images: Iterable[str | Path | np.ndarray]) -> np.ndarray:
        """Probabilities for image files or decoded gray arrays in [0, 1].

        Args:
            images: paths, or 2-D gray arrays in [0, 1]; an unreadable one raises.

        Returns:
            Array (N, classes) of calibrated probabilities, in the order of ``classes``.
        """
        prepared = [self.prepare(img) for img in images]
        if not prepared:
            return np.zeros((0, len(self.classes)), np.float32)
        return self.proba_from_uint8(np.stack(prepared))

    def decode(self, item: ImageInput, name: str | None = None) -> np.ndarray:
        """One input -> gray float32 (H, W) in [0, 1]; :class:`ImageReadError` names bad ones.

        ``item`` is a path, raw file bytes (an upload; ``name`` labels errors) or a decoded
        2-D gray array (float in [0, 1], or integers scaled by their dtype's maximum).
        """
        return as_float01(self._read(item, name))

    def prepare(self, item: ImageInput, name: str | None = None) -> np.ndarray:
        """One input -> the model's uint8 image (:meth:`decode`, then the run's preprocessing;
        with a ROI step a fallback to the whole image is recorded under ``name``: :meth:`roi_fallback`)."""
        pixels, reason = self.prepare_with_roi(item, name)
        if name is not None:
            self.fallbacks.record(name, reason)
        return pixels

    def prepare_with_roi(self, item: ImageInput, name: str | None = None) -> tuple[np.ndarray, str | None]:
        """:meth:`prepare` and why this input got the whole film instead of its lungs (None: it got
        them, or the run has no ROI), returned rather than recorded: a server answering two
        uploads of the same name at once cannot mix them up."""
        pixels, (reason,) = self.preprocessing.to_uint8_many([self._read(item, name)])
        return pixels[0], None if reason == ROI_OK else reason

    def roi_fallback(self, name: str) -> str | None:
        """Why input ``name`` got the whole image instead of its lung box; None when it got its
        lungs or the run has no ROI."""
        return self.fallbacks.get(name)

    def _read(self, item: ImageInput, name: str | None) -> np.ndarray:
        """:meth:`decode` without the float conversion (8-bit files stay uint8: faster to preprocess)."""
        if isinstance(item, np.ndarray):
            return _gray_array(item, name or "<array>")
        return read_gray(item, name=name)

    def predict(
        self,
        inputs: ImageInput | Iterable[ImageInput],
        names: Iterable[str] | None = None,
        threshold: float | None = None,
        progress: Callable[[int, int], None] | None = None,
        workers: int | None = None,
    ) -> Predictions:
        """Predict every input; unreadable ones land in ``errors`` and the rest go on.

        Decoding runs in ``workers`` threads a batch ahead of the model, so reading files
        overlaps inference instead of adding to it.

        Args:
            inputs: one path, file bytes or 2-D gray array, a 3-D array (a stack), or an
                iterable of them (PNG, JPEG, BMP, TIFF, DICOM).
            names: one name per input (default: the path, or ``array[i]`` / ``bytes[i]``).
            threshold: top probability below which a prediction is flagged ``uncertain``
                (default: the predictor's).
            progress: called as ``progress(done, total)`` after each batch.
            workers: decoding threads (default: the CPU count, at most 4).

        Returns:
            :class:`Predictions`: ``results`` in input order and ``errors`` for the inputs
            that failed.
        """
        items = _as_items(inputs)
        names = [str(n) for n in names] if names is not None else [_name_of(x, i) for i, x in enumerate(items)]
        if len(names) != len(items):
            raise UsageError(f"got {len(names)} names for {len(items)} inputs")
        threshold = self.threshold if threshold is None else check_threshold(threshold)
        out, done = Predictions(), 0

        def collect(failures: list[Failure], n_read: int, results: Future | None) -> None:
            nonlocal done
            out.errors.extend(failures)
            if results is not None:
                for outcome in results.result():
                    (out.errors if isinstance(outcome, Failure) else out.results).append(outcome)
            done += n_read + len(failures)
            if progress:
                progress(done, len(items))

        with self._inference_pool() as pool:
            pending: deque = deque()
            for batch_names, images, failures in self._prepared_batches(items, names, workers):
                results = (
                    pool.submit(self._outcomes_from_uint8, np.stack(images), batch_names, threshold) if images else None
                )
                pending.append((failures, len(batch_names), results))
                if len(pending) > self.streams:
                    collect(*pending.popleft())
            while pending:
                collect(*pending.popleft())
        return out

    def results_from_uint8(
        self, images: np.ndarray, names: list[str], threshold: float | None = None
    ) -> list[Prediction]:
        """Predictions for images already through :meth:`prepare`; :class:`NonFiniteOutput` if the
        model gave NaN/inf for any of them (a damaged model or an input it cannot handle)."""
        threshold = self.threshold if threshold is None else check_threshold(threshold)
        outcomes = self._outcomes_from_uint8(images, names, threshold)
        bad = [o for o in outcomes if isinstance(o, Failure)]
        if bad:
            raise NonFiniteOutput(f"{bad[0].name}: {bad[0].reason}")
        return outcomes  # type: ignore[return-value]

    def _outcomes_from_uint8(
        self, images: np.ndarray, names: list[str], threshold: float
    ) -> list[Prediction | Failure]:
        out: list[Prediction | Failure] = []
        probs_all, other = self.proba_and_other_from_uint8(images)
        limit = self.other_abnormal_threshold
        for i, (name, probs) in enumerate(zip(names, probs_all)):
            if not np.isfinite(probs).all() or (other is not None and not np.isfinite(other[i])):
                out.append(Failure(name, NON_FINITE))
                continue
            top = int(probs.argmax())
            extra = {}
            if other is not None:
                flagged = limit is not None and bool(other[i] >= limit)
                extra = {"other_abnormal": float(other[i]), "other_abnormal_flag": flagged}
            out.append(
                Prediction(
                    name,
                    {c: float(p) for c, p in zip(self.classes, probs)},
                    self.classes[top],
                    float(probs[top]),
                    bool(probs[top] < threshold),
                    **extra,
                )
            )
        return out

    def try_decode(self, item: ImageInput, name: str) -> np.ndarray | Failure:
        """:meth:`decode`, with any decoding failure returned as a :class:`Failure`."""
        return _failure_or(self.decode, item, name)

    def _try_prepare(self, item: ImageInput, name: str) -> np.ndarray | Failure:
        return _failure_or(self.prepare, item, name)

    def _prepared_batches(
        self, items: list, names: list[str], workers: int | None
    ) -> Iterator[tuple[list[str], list[np.ndarray], list[Failure]]]:
        """(names, uint8 images, failures) per batch, decoded ahead of the batches in flight."""
        b = self.batch_size
        chunks = [(names[s : s + b], items[s : s + b]) for s in range(0, len(items), b)]
        workers = min(4, os.cpu_count() or 1) if workers is None else workers
        if workers < 1 or len(items) <= 1:
            for n, x in chunks:
                yield _split(n, list(map(self._try_prepare, x, n)))
            return
        with ThreadPoolExecutor(workers, thread_name_prefix="cxr-decode") as pool:
            pending: deque = deque()
            for n, x in chunks:
                pending.append((n, [pool.submit(self._try_prepare, xi, ni) for xi, ni in zip(x, n)]))
                if len(pending) > self.streams + 1:
                    n0, futures = pending.popleft()
                    yield _split(n0, [f.result() for f in futures])
            for n0, futures in pending:
                yield _split(n0, [f.result() for f in futures])


class FallbackLog:
    """Why inputs got the whole film instead of their lungs, by input name (bounded: a server's
    memory stays small); thread-safe, as decoding runs in threads."""

    MAX_RECORDED = 10_000

    def __init__(self):
        self._reasons: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def record(self, name: str, reason: str | None) -> None:
        with self._lock:
            self._reasons.pop(name, None)
            if reason is not None:
                self._reasons[name] = reason
                while len(self._reasons) > self.MAX_RECORDED:
                    self._reasons.popitem(last=False)

    def get(self, name: str) -> str | None:
        with self._lock:
            return self._reasons.get(name)


class _InCallingThread:
    """The part of the executor interface :class:`Predictor` uses, run at once in this thread."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None

    def map(self, fn, iterable):
        return map(fn, iterable)

    def submit(self, fn, *args) -> Future:
        done: Future = Future()
        try:
            done.set_result(fn(*args))
        except Exception as exc:  # delivered by .result(), as a pool would
            done.set_exception(exc)
        return done


def _failure_or(step: Callable[[ImageInput, str], np.ndarray], item: ImageInput, name: str) -> np.ndarray | Failure:
    """``step(item, name)``, or a :class:`Failure` saying why it could not read the input.

    Files come from users: a decoder bug on one odd file must not stop a batch or turn an
    upload into a server error, so unexpected exception types are reported too.
    """
    try:
        return step(item, name)
    except ImageReadError as exc:
        return Failure(name, exc.reason)
    except Exception as exc:  # untrusted input: see the docstring
        return Failure(name, f"cannot decode the image ({type(exc).__name__}: {exc})")


def _split(names: list[str], prepared: list[np.ndarray | Failure]):
    ok = [(n, p) for n, p in zip(names, prepared) if not isinstance(p, Failure)]
    return [n for n, _ in ok], [p for _, p in ok], [p for p in prepared if isinstance(p, Failure)]


def _as_items(inputs) -> list:
    if isinstance(inputs, (str, Path, bytes, bytearray)):
        return [inputs]
    if isinstance(inputs, np.ndarray):
        return [inputs] if inputs.ndim == 2 else list(inputs)
    return list(inputs)


def _name_of(item, index: int) -> str:
    if isinstance(item, (str, Path)):
        return str(item)
    return f"{'bytes' if isinstance(item, (bytes, bytearray)) else 'array'}[{index}]"


def _gray_array(arr: np.ndarray, name: str) -> np.ndarray:
    """A caller's 2-D gray array as :func:`read_gray` would give it (uint8/uint16 kept as they are)."""
    if arr.ndim != 2:
        raise ImageReadError(name, f"expected a 2-D grayscale array, got shape {arr.shape}")
    if arr.dtype in (np.uint8, np.uint16):
        return arr
    if arr.dtype.kind in "ui":
        return arr.astype(np.float32) / np.iinfo(arr.dtype).max
    if arr.dtype.kind != "f" or not np.isfinite(arr).all():
        raise ImageReadError(name, f"expected finite float or integer pixels, got dtype {arr.dtype}")
    return arr.astype(np.float32)
