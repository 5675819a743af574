"""Ensembles of run directories: one Predictor over several trained runs.

Why: runs that differ in seed or recipe make partly independent mistakes off-distribution;
the mean of their probabilities is the cheapest robustness there is: M forward passes (2
lite0 members: 5.7 img/s vs 11.0 plain, 1.96x the time, docs/results/tta_ensemble_speed.md).

Rule: member probabilities, each after the member's own temperature (and TTA when asked), are
averaged; the ensemble's own temperature (1.0 until ``cxr evaluate ENS`` fits one on val and
saves it in the ensemble's card) is applied to the log of that mean. Members must have the same
classes in the same order, the same auxiliary outputs (``model.aux_outputs``, or none) and the
same split hash (the same split.csv): an ensemble is chosen on one val split, and no member may
have trained on another member's test images.

An ensemble directory (``cxr ensemble create --out ENS RUN_A RUN_B``)::

    ENS/
      ensemble.json     {"format", "classes", "members": [{"path", "split_hash", "model"}]}
      model_card.json   classes, data and split of the members; "ensemble" marks it
      split.csv         the members' split (identical by hash), so evaluate reads it like a run's

Members with different preprocessing are fed from one decode: :class:`PackedInput` puts each
member's prepared image end to end in one uint8 vector per image.

Auxiliary outputs (members trained with ``--aux-classes``): the ensemble's "other abnormal"
probability is the mean of the members' (each after its own temperature and TTA), its class
probabilities stay the mean of the members' renormalised ones. The flag's threshold is the one
``cxr evaluate ENS`` fits on val for the ensemble itself (5% of val normals flagged, as for a
run); until then the mean of the members' fitted thresholds (None when a member has none, so
nothing is flagged, as for an unfitted run). These outputs used to be dropped without a word.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._io import atomic_write_json
from .._numeric import other_abnormal, softmax
from ..data.cache import cached_images
from ..data.pipeline import ROI_OK
from ..errors import CxrkitError, UsageError
from ..models import LoadedRun, load_run
from ..run import ModelCard, ModelSpec, RunDir, read_card, write_card, writes_run
from .defaults import DEFAULT_BACKEND, DEFAULT_PRECISION, DEFAULT_THRESHOLD
from .predictor import FallbackLog, Predictor
from .splits import SplitPredictions
from .tta import average_views, views

ENSEMBLE_FORMAT = "cxrkit-ensemble/1"
_TINY = 1e-30  # floor of the mean probability before its log (float64): softmax(log p) == p
AUX_RULE = (
    "mean of the members' other-abnormal probability; flag: the ensemble's fitted threshold, else the members' mean"
)


class EnsembleError(CxrkitError, ValueError):
    """Runs that cannot be combined, or an ensemble directory that no longer matches its members."""


def check_members(cards: list[tuple[Path, ModelCard]]) -> None:
    """Refuse members that would be averaged wrongly or chosen on different splits."""
    if not cards:
        raise EnsembleError("an ensemble needs at least one member run")
    path0, card0 = cards[0]
    for path, card in cards:
        if card.is_ensemble:
            raise EnsembleError(f"{path} is itself an ensemble; list its members instead")
        if card.classes != card0.classes:
            raise EnsembleError(
                f"{path} has classes {card.classes}, {path0} has {card0.classes}: members must have "
                "the same classes in the same order"
            )
        if card.aux_outputs != card0.aux_outputs:
            raise EnsembleError(
                f"members disagree about auxiliary outputs: {path} has {_aux(card)}, {path0} has {_aux(card0)}; "
                "an ensemble averages one set of outputs, so combine runs trained with the same --aux-classes"
            )
        if card.split_hash != card0.split_hash:
            raise EnsembleError(
                f"{path} was trained on split {card.split_hash[:12]}, {path0} on {card0.split_hash[:12]}: "
                "ensemble members must share one split.csv (same split hash), or the ensemble's test "
                "images may be another member's training images; retrain with the same --split-file"
            )


def _aux(card: ModelCard) -> str:
    return ", ".join(card.aux_outputs) if card.aux_outputs else "none"


def ensemble_card(cards: list[tuple[Path, ModelCard]]) -> ModelCard:
    """The card of an ensemble: classes, data, split and (nominal) preprocessing of the first member."""
    c0 = cards[0][1]
    names = ", ".join(sorted({c.model.name for _, c in cards}))
    aux = {"aux_outputs": c0.aux_outputs, "aux_rule": AUX_RULE} if c0.aux_outputs else {}
    return ModelCard(
        classes=list(c0.classes),
        preprocessing=copy.deepcopy(c0.preprocessing),
        model=ModelSpec(name=f"ensemble of {len(cards)} ({names})", in_chans=c0.model.in_chans, extra=aux),
        data=dict(c0.data),
        split=dict(c0.split),
        training={"members": [str(p) for p, _ in cards]},
        extra={"ensemble": {"file": RunDir(".").ensemble.name, "members": len(cards)}},
    )


@writes_run("cxr ensemble create", "out")
def create_ensemble(out: str | Path, members: list[str | Path]) -> Path:
    """Write the ensemble directory ``out`` (see the module docstring); returns it.

    Member paths are stored relative to ``out`` (moving the parent folder keeps it working). An
    existing ensemble with the same members is kept as it is (its fitted temperature too).
    """
    out = Path(out)
    cards = [(Path(m), read_card(m)) for m in members]
    check_members(cards)
    for path, _ in cards:
        if not RunDir(path).weights.is_file():
            raise EnsembleError(f"{path}: no {RunDir(path).weights.name}; only finished runs can be members")
    entries = [
        {"path": os.path.relpath(p.resolve(), out.resolve()), "split_hash": c.split_hash, "model": c.model.name}
        for p, c in cards
    ]
    spec = {"format": ENSEMBLE_FORMAT, "classes": list(cards[0][1].classes), "members": entries}
    run = RunDir(out)
    if run.ensemble.is_file() and json.loads(run.ensemble.read_text())["members"] == entries:
        return out
    if out.exists() and any(out.iterdir()):
        raise EnsembleError(f"{out} exists and is not this ensemble; choose another --out or remove it")
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(RunDir(cards[0][0]).split, run.split)
    write_card(out, ensemble_card(cards))
    atomic_write_json(run.ensemble, spec)  # last: its presence marks a complete ensemble directory
    return out


def default_ensemble_dir(members: list[str | Path]) -> Path:
    """``ensemble-A+B`` beside the first member (``cxr evaluate --ensemble A B``)."""
    return Path(members[0]).parent / ("ensemble-" + "+".join(Path(m).name for m in members))


def member_paths(ens_dir: str | Path) -> list[Path]:
    """The members of an ensemble directory, checked against what ``ensemble.json`` recorded."""
    run = RunDir(ens_dir)
    try:
        spec = json.loads(run.ensemble.read_text(encoding="utf-8"))
        entries = spec["members"]
        assert spec["format"] == ENSEMBLE_FORMAT and entries
    except (OSError, ValueError, KeyError, TypeError, AssertionError) as exc:
        raise EnsembleError(f"{run.ensemble}: not a readable {ENSEMBLE_FORMAT} file ({exc}); recreate it") from None
    paths = []
    for e in entries:
        path = Path(os.path.normpath(run.root / e["path"]))  # an absolute path stays absolute
        card = read_card(path)
        if card.split_hash != e["split_hash"] or card.classes != spec["classes"]:
            raise EnsembleError(
                f"{run.ensemble}: member {path} changed since the ensemble was made (split or classes); "
                f"recreate it with `cxr ensemble create --out {run.root} ...`"
            )
        paths.append(path)
    return paths


@dataclass(frozen=True)
class PackedInput:
    """The ensemble's chain when members differ: each member's uint8 image, flattened, end to end
    in one vector, so one decode feeds every member through the Predictor's batching.

    It is a :class:`~cxrkit.data.pipeline.Pipeline` with one exception: its pixels are not one
    (S, S) model input, so what needs one (a CAM, the audit's network) refuses the ensemble
    and names a member to use instead (:meth:`EnsemblePredictor.no_network_error`).
    """

    specs: tuple
    batched = True  # the members' ROI steps hold models

    @property
    def input_size(self) -> int:
        return max(s.input_size for s in self.specs)

    @property
    def roi(self) -> str:
        return next((s.roi for s in self.specs if s.roi != "none"), "none")

    @property
    def lung_run_dir(self) -> str | None:
        return next((s.lung_run_dir for s in self.specs if s.lung_run_dir), None)

    @property
    def length(self) -> int:
        return sum(s.input_size**2 for s in self.specs)

    def to_uint8(self, gray: np.ndarray) -> np.ndarray:
        return self.to_uint8_many([gray])[0][0]

    def to_uint8_many(self, grays: list[np.ndarray]) -> tuple[np.ndarray, list[str]]:
        """Each member's pixels end to end; an image's outcome is the first member's fallback
        reason (``member k: reason``), else ``ok``."""
        parts = [s.to_uint8_many(grays) for s in self.specs]
        packed = np.concatenate([p.reshape(len(grays), -1) for p, _ in parts], axis=1)
        reasons = []
        for i in range(len(grays)):
            bad = [f"member {k + 1}: {r[i]}" for k, (_, r) in enumerate(parts) if r[i] != ROI_OK]
            reasons.append(bad[0] if bad else ROI_OK)
        return packed, reasons

    def view(self, gray: np.ndarray) -> np.ndarray:
        return gray  # no single model input: CAMs of an ensemble are refused before this is asked

    def to_dict(self) -> dict:
        return {"members": [s.to_dict() for s in self.specs]}

    def roi_settings(self) -> dict:
        return {"members": [s.roi_settings() or {"roi": "none"} for s in self.specs]} if self.roi != "none" else {}

    def unpack(self, batch: np.ndarray) -> list[np.ndarray]:
        out, start = [], 0
        for s in self.specs:
            n = s.input_size
            out.append(np.ascontiguousarray(batch[:, start : start + n * n]).reshape(-1, n, n))
            start += n * n
        return out


class EnsemblePredictor(Predictor):
    """:class:`Predictor`'s public face over member Predictors (see the module docstring).

    ``predict``, ``results_from_uint8``, ``prepare``, ``decode`` are the Predictor's own; only
    the arithmetic (``logits_from_uint8``/``proba_from_uint8``) and the inputs differ.
    """

    def __init__(self, members: list[Predictor], run: LoadedRun, threshold: float = DEFAULT_THRESHOLD):
        self.members = members
        self.run = run
        self.device = members[0].device
        self.engine = None
        self.classes = list(run.card.classes)
        self.aux_classes = list(members[0].aux_classes)  # the same in every member (check_members)
        specs = [m.preprocessing for m in members]
        self.shared = all(s == specs[0] for s in specs)
        self.preprocessing = specs[0] if self.shared else PackedInput(tuple(specs))
        self.fallbacks = FallbackLog()
        self.batch_size = members[0].batch_size
        self.backend = "+".join(dict.fromkeys(m.backend for m in members))  # auto may choose per member
        notes = dict.fromkeys(m.backend_note for m in members if m.backend_note)
        self.backend_note = "; ".join(notes)
        self.threshold = threshold
        self.lock = threading.RLock()
        self.streams = 1  # members run their own batches in flight
        self.tta = members[0].tta

    @classmethod
    def from_run(
        cls,
        run_dir,
        device="cpu",
        batch_size=32,
        backend=DEFAULT_BACKEND,
        threshold=DEFAULT_THRESHOLD,
        precision=DEFAULT_PRECISION,
        tta="none",
    ) -> EnsemblePredictor:
        """The ensemble of an ensemble directory (members checked, see :func:`member_paths`);
        also exported as :func:`load_ensemble`."""
        kw = dict(device=device, batch_size=batch_size, backend=backend, threshold=threshold, precision=precision)
        members = [Predictor.from_run(p, tta=tta, **kw) for p in member_paths(run_dir)]
        return cls(members, load_run(run_dir, with_model=False), threshold)

    @classmethod
    def from_members(cls, run_dirs: list[str | Path], **kw) -> EnsemblePredictor:
        """An ensemble of run directories without an ensemble directory (``cxr predict A B ...``)."""
        cards = [(Path(p), read_card(p)) for p in run_dirs]
        check_members(cards)
        card = ensemble_card(cards)
        name = Path("ensemble(" + "+".join(p.name for p, _ in cards) + ")")
        pre = load_run(cards[0][0], with_model=False).preprocessing
        return cls([Predictor.from_run(p, **kw) for p, _ in cards], LoadedRun(name, None, card, card.classes, pre))

    def no_network_error(self) -> UsageError:
        return UsageError(
            f"{self.run.run_dir} is an ensemble of {len(self.members)} runs and has no single network "
            "to explain or probe (Grad-CAM, audit); use one member, e.g. "
            f"`cxr explain {self.members[0].run.run_dir} ...`"
        )

    @property
    def model(self):
        raise self.no_network_error()

    def model_input(self, batch):
        return self.model

    @property
    def precision(self) -> str:
        return self.members[0].precision

    @property
    def precision_note(self) -> str:
        return self.members[0].precision_note

    @property
    def member_ids(self) -> list[str]:
        return [m.model_id for m in self.members]

    def member_inputs(self, images: np.ndarray) -> list[np.ndarray]:
        images = np.asarray(images)
        return [images] * len(self.members) if self.shared else self.preprocessing.unpack(images)

    def logits_from_uint8(self, images: np.ndarray) -> np.ndarray:
        """log of the mean member probability (each member's temperature and TTA applied)."""
        return self.all_logits_from_uint8(images)[:, : len(self.classes)]

    def all_logits_from_uint8(self, images: np.ndarray) -> np.ndarray:
        """Every output, as a run gives them: the classes, then the auxiliary ones (see
        :meth:`logits_from_member_uint8`)."""
        return self.logits_from_member_uint8(self.member_inputs(images))

    def logits_from_member_uint8(self, inputs: list[np.ndarray]) -> np.ndarray:
        """The ensemble's outputs from each member's own model pixels (one array per member, in
        member order): how a split is scored when members differ in preprocessing.

        Without auxiliary outputs: log of the mean class probability. With them: logits whose
        softmax over the classes is that mean and whose softmax mass after the classes is the
        members' mean other-abnormal probability (each auxiliary output its mean share), i.e.
        ``log([p * (1 - other), aux])``, so the ensemble reads like one run everywhere."""
        outs = [_member_outputs(m, x) for m, x in zip(self.members, inputs)]
        mean = np.mean([p for p, _ in outs], axis=0, dtype=np.float64)
        if self.aux_classes:
            aux = np.mean([a for _, a in outs], axis=0, dtype=np.float64)
            mean = np.concatenate([mean * (1 - aux.sum(1, keepdims=True)), aux], 1)
        return np.log(np.maximum(mean, _TINY)).astype(np.float32)

    def dataset_logits(self, dataset, cache_dir=None, workers: int = 2) -> np.ndarray:
        """Each member on its own cached pixels (members may differ in preprocessing)."""
        inputs = [cached_images(dataset, m.preprocessing, cache_dir, workers=workers) for m in self.members]
        return self.logits_from_member_uint8(inputs)

    def proba_from_uint8(self, images: np.ndarray, temperature: float | None = None) -> np.ndarray:
        t = self.temperature if temperature is None else temperature
        return softmax(self.logits_from_uint8(images), t)

    def proba_and_other_from_uint8(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Class probabilities and the other-abnormal probability (None without auxiliary
        outputs), from one pass of each member (TTA is inside the members)."""
        if not self.aux_classes:
            return self.proba_from_uint8(images), None
        logits, n, t = self.all_logits_from_uint8(images), len(self.classes), self.temperature
        return softmax(logits[:, :n], t), other_abnormal(logits, n, t)

    @property
    def other_abnormal_threshold(self) -> float | None:
        """The threshold ``cxr evaluate`` fitted for this ensemble on val; else the mean of the
        members' fitted thresholds (None when any member has none: nothing is flagged)."""
        if not self.aux_classes:
            return None
        own = self.run.card.other_abnormal_threshold
        if own is not None:
            return own
        limits = [m.other_abnormal_threshold for m in self.members]
        return None if any(x is None for x in limits) else float(np.mean(limits))

    @property
    def other_abnormal_rule(self) -> str:
        """Where :attr:`other_abnormal_threshold` comes from, for the JSON a prediction writes."""
        if self.run.card.other_abnormal_threshold is not None:
            return "fitted on val for this ensemble"
        if self.other_abnormal_threshold is not None:
            return "mean of the members' thresholds (not fitted for the ensemble: `cxr evaluate` on it fits one)"
        return "not fitted (a member has none): nothing is flagged until `cxr evaluate` fits one"

    def blank_input(self, value: int = 128) -> np.ndarray:
        return super().blank_input(value) if self.shared else np.full((1, self.preprocessing.length), value, np.uint8)


load_ensemble = EnsemblePredictor.from_run  # the function name the API and the CLI use


def _member_outputs(member: Predictor, images: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(class probabilities renormalised over the classes, probability of each auxiliary output
    among all outputs or None) of one member, after its temperature and averaged over its TTA views."""
    if not member.aux_classes:
        return member.proba_from_uint8(images), None
    n, t = len(member.classes), member.temperature

    def both(view: np.ndarray) -> np.ndarray:
        every = softmax(member.all_logits_from_uint8(view), t)
        return np.concatenate([every[:, :n] / every[:, :n].sum(1, keepdims=True), every[:, n:]], 1)

    out = average_views(both, images, member.tta)
    return out[:, :n], out[:, n:]


@dataclass
class ViewSplitPredictions(SplitPredictions):
    """Split predictions under TTA: ``probs(T)`` is the mean over views of softmax(logits_v / T)."""

    view_logits: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0), np.float32))  # (V, N, K)

    def probs(self, temperature: float = 1.0) -> np.ndarray:
        return softmax(self.view_logits, temperature).mean(0)


def with_tta(predictor: Predictor, preds: SplitPredictions, workers: int = 2, cache_dir=None) -> SplitPredictions:
    """``preds`` of a single run re-scored under the predictor's TTA (logits of every view kept,
    so evaluation's before/after-temperature probabilities both average over the views)."""
    if predictor.tta == "none" or isinstance(predictor, EnsemblePredictor):
        return preds  # an ensemble's members already apply TTA inside logits_from_uint8
    images = cached_images(preds.dataset, predictor.preprocessing, cache_dir, workers=workers)
    view_logits = np.stack([predictor.logits_from_uint8(v) for v in views(np.asarray(images), predictor.tta)])
    fields = {**vars(preds), "abnormal": preds.abnormal and with_tta(predictor, preds.abnormal, workers, cache_dir)}
    return ViewSplitPredictions(**fields, view_logits=view_logits)
