"""The model card: one typed description of a trained model, written and read only here.

Every step reads the card through :func:`read_card` (validated: a broken card is refused with
one line naming the file and the field, never turned into confident NaN answers) and changes
it through :func:`update_card` (one section at a time, atomically). The JSON layout is the one
cxrkit has written since its first release (``format: cxrkit-model-card/1``), so older run
directories still load; unknown keys are kept as they are.
"""

from __future__ import annotations

import dataclasses
import json
import math
import platform
import subprocess
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from .._io import atomic_write_json
from .._meta import RESEARCH_NOTICE, __version__
from .._precision import host_cpu
from ..errors import CxrkitError
from .layout import CARD_FILE, RunDir
from .lock import describe_holder, live_holder, lock_path

CARD_FORMAT = "cxrkit-model-card/1"
VERSIONED_PACKAGES = (
    "torch",
    "torchvision",
    "timm",
    "lightning",
    "torchmetrics",
    "numpy",
    "pillow",
    "pydicom",
    "safetensors",
    "onnxruntime",
)
# A model input side beyond this is a broken card, not a model (100000 px took 21 GB and the
# kernel killed the process); the largest timm CXR backbones use 512-1024.
MAX_INPUT_SIZE = 4096
MIN_INPUT_SIZE = 16
# Ranges a working model stays far inside (fit_temperature clips to 0.05..20; images are
# normalised from [0, 1], so std is about 0.2-0.3). A card outside them is damaged: with
# temperature or std 1e-300 every logit overflows and each image "gave non-finite outputs".
TEMPERATURE_RANGE = (0.01, 100.0)
STD_RANGE = (1e-3, 10.0)
MAX_ABS_MEAN = 10.0


class RunError(CxrkitError, ValueError):
    """A run directory that is missing files or does not describe a loadable model."""


@dataclass
class PreprocessingSpec:
    """How a decoded gray image becomes the model's input, as plain data (see data.transforms)."""

    input_size: int = 224
    mean: float = 0.5
    std: float = 0.5
    contrast: str = "percentile"
    channels: int = 1
    # roi "lungs": crop to the predicted lung box (+ roi_margin) of the lung run whose
    # model.safetensors has sha256 lung_run_sha256 (cxrkit.lungs.preprocess); absent = "none";
    # roi_blank: pixels outside the predicted lung mask are set to black before the resize
    roi: str = "none"
    roi_margin: float = 0.05
    roi_blank: bool = False
    lung_run: str | None = None
    lung_run_sha256: str | None = None
    extra: dict = field(default_factory=dict)  # later options, kept verbatim

    def to_dict(self) -> dict:
        d = {k: v for k, v in dataclasses.asdict(self).items() if k != "extra"}
        if self.roi == "none":  # cards without a ROI keep the layout cxrkit wrote before it
            d = {k: v for k, v in d.items() if k not in ROI_FIELDS}
        return {**d, **self.extra}


ROI_FIELDS = ("roi", "roi_margin", "roi_blank", "lung_run", "lung_run_sha256")


@dataclass
class ModelSpec:
    name: str
    in_chans: int = 1
    num_params: int | None = None
    trainable_params: int | None = None
    finetune: str = "full"
    cache_features: bool = False
    extra: dict = field(default_factory=dict)


@dataclass
class Calibration:
    temperature: float = 1.0
    fitted_on: str = "val"
    val_images: int | None = None
    val_nll_before: float | None = None
    val_nll_after: float | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class ModelCard:
    """What a run's model is, how to feed it and what it was selected on."""

    classes: list[str]
    preprocessing: PreprocessingSpec
    model: ModelSpec
    weights_source: Any = None
    data: dict = field(default_factory=dict)  # path, source, fingerprint, images, split_counts
    split: dict = field(default_factory=dict)  # file, hash, seed, fractions
    training: dict = field(default_factory=dict)  # epochs_run, best_checkpoint, seconds, ...
    val_metrics: dict = field(default_factory=dict)
    calibration: Calibration | None = None
    onnx: dict | None = None
    format: str = CARD_FORMAT
    notice: str = RESEARCH_NOTICE
    created: str | None = None
    versions: dict = field(default_factory=dict)
    git_commit: str | None = None
    host: dict = field(default_factory=dict)  # the CPU the card was written on (cxrkit._precision.host_cpu)
    extra: dict = field(default_factory=dict)  # sections this version does not know, kept verbatim

    @property
    def temperature(self) -> float:
        return self.calibration.temperature if self.calibration else 1.0

    @property
    def aux_outputs(self) -> list[str]:
        """Auxiliary classes whose outputs the weights carry after ``classes`` (``model.aux_outputs``).

        Trained as extra classes (e.g. NIH ``pneumonia``: abnormal, but not a class of the task)
        and reported as one "other abnormal" probability instead of being dropped; runs saved
        before this field dropped them (their card lists ``aux_classes`` only).
        """
        return list(self.model.extra.get("aux_outputs") or [])

    @property
    def other_abnormal_threshold(self) -> float | None:
        """The "other abnormal" flag's threshold fitted on val (None: not fitted, or no aux outputs)."""
        fitted = (self.calibration.extra.get("other_abnormal") or {}) if self.calibration else {}
        return fitted.get("threshold")

    @property
    def is_ensemble(self) -> bool:
        """The card of an ensemble directory (members in ensemble.json, no weights of its own)."""
        return "ensemble" in self.extra

    @property
    def split_hash(self) -> str:
        return str(self.split.get("hash", "nosplit"))

    def to_dict(self) -> dict:
        out: dict = {
            "format": self.format,
            "notice": self.notice,
            "created": self.created,
            "versions": self.versions,
            "git_commit": self.git_commit,
            "classes": list(self.classes),
            "preprocessing": self.preprocessing.to_dict(),
            "model": _flat(self.model),
            "weights_source": self.weights_source,
            "data": self.data,
            "split": self.split,
            "training": self.training,
            "val_metrics": self.val_metrics,
        }
        if self.calibration is not None:
            out["calibration"] = _flat(self.calibration)
        if self.onnx is not None:
            out["onnx"] = self.onnx
        if self.host:  # cards written before it was stamped have none
            out["host"] = self.host
        return {**out, **self.extra}

    @classmethod
    def from_dict(cls, d: Any, source: str = "model card") -> "ModelCard":
        """Parse and validate; a :class:`RunError` names ``source`` and the bad field."""
        if not isinstance(d, dict):
            raise RunError(f"{source}: a model card must be a JSON object, got {type(d).__name__}")
        if d.get("format") != CARD_FORMAT:
            raise RunError(f"{source}: unknown model card format {d.get('format')!r} (expected {CARD_FORMAT})")
        for key in ("classes", "preprocessing", "model"):
            if key not in d:
                raise RunError(f"{source}: no {key!r} section; the card is incomplete (retrain or restore it)")
        known = {f.name for f in dataclasses.fields(cls)}
        try:
            card = cls(
                classes=d["classes"],
                preprocessing=_section(PreprocessingSpec, d["preprocessing"]),
                model=_section(ModelSpec, d["model"]),
                calibration=_section(Calibration, d["calibration"]) if d.get("calibration") else None,
                **{k: v for k, v in d.items() if k in known - {"classes", "preprocessing", "model", "calibration"}},
                extra={k: v for k, v in d.items() if k not in known},
            )
        except (TypeError, ValueError) as exc:
            raise RunError(f"{source}: malformed card ({exc})") from None
        card.validate(source)
        return card

    def validate(self, source: str = "model card") -> None:
        """Refuse cards that would give wrong answers (every check here was a real failure)."""

        def bad(what: str) -> RunError:
            return RunError(f"{source}: {what}; the run directory is damaged (retrain, or restore the card)")

        c = self.classes
        if not isinstance(c, list) or len(c) < 2 or not all(isinstance(x, str) and x for x in c):
            raise bad(f"'classes' must be a list of at least two names, got {c!r}")
        if len(set(c)) != len(c):
            raise bad(f"'classes' names a class twice: {c!r}")
        p = self.preprocessing
        if not isinstance(p.input_size, int) or not MIN_INPUT_SIZE <= p.input_size <= MAX_INPUT_SIZE:
            raise bad(f"preprocessing.input_size must be {MIN_INPUT_SIZE}..{MAX_INPUT_SIZE} px, got {p.input_size!r}")
        lo, hi = STD_RANGE
        if not _finite(p.mean) or not _finite(p.std) or not lo <= p.std <= hi or abs(p.mean) > MAX_ABS_MEAN:
            raise bad(
                f"preprocessing mean/std must be finite, |mean| <= {MAX_ABS_MEAN:g} and std in {lo:g}..{hi:g}, "
                f"got {p.mean!r}/{p.std!r}"
            )
        if p.channels != 1:
            raise bad(f"preprocessing.channels must be 1 (gray), got {p.channels!r}")
        if p.roi not in ("none", "lungs"):  # a missing lung_run is named when the ROI is built
            raise bad(f"preprocessing.roi must be 'none' or 'lungs', got {p.roi!r}")
        if not isinstance(self.model.name, str) or not self.model.name:
            raise bad("model.name is missing")
        aux = self.model.extra.get("aux_outputs") or []
        if not isinstance(aux, list) or not all(isinstance(x, str) and x for x in aux) or set(aux) & set(c):
            raise bad(f"model.aux_outputs must be a list of names that are not classes, got {aux!r}")
        if self.calibration is not None:
            t = self.calibration.temperature
            lo, hi = TEMPERATURE_RANGE
            if not _finite(t) or not lo <= t <= hi:
                raise bad(f"calibration.temperature must be a finite number in {lo:g}..{hi:g}, got {t!r}")


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _section(cls, d: Any):
    if not isinstance(d, dict):
        raise TypeError(f"{cls.__name__} section must be an object, got {type(d).__name__}")
    names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
    return cls(**{k: v for k, v in d.items() if k in names}, extra={k: v for k, v in d.items() if k not in names})


def _flat(section) -> dict:
    d = {k: v for k, v in dataclasses.asdict(section).items() if k != "extra"}
    return {**d, **section.extra}


def package_versions() -> dict[str, str]:
    out = {"cxrkit": __version__, "python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def git_commit() -> str | None:
    """Commit of the cxrkit checkout in use, if it is a git checkout."""
    try:
        res = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() or None if res.returncode == 0 else None


def read_card(run_dir: str | Path) -> ModelCard:
    """The validated card of ``run_dir`` (a :class:`RunError` says what is wrong and what to do)."""
    path = RunDir(run_dir).card
    if not path.is_file():
        raise RunError(_no_card(run_dir))
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunError(f"{path}: not valid JSON ({exc}); the run directory is damaged") from None
    return ModelCard.from_dict(d, str(path))


def _no_card(run_dir: str | Path) -> str:
    """Why ``run_dir`` has no card, and what to do: a run still training or one that stopped
    (config.yaml, checkpoints) is not "not a run directory"; that would send the user to train anew."""
    run = RunDir(run_dir)
    if not (run.config.is_file() or run.checkpoints.is_dir()):
        return f"{run_dir}: not a run directory (no {CARD_FILE}); train one with `cxr train`"
    holder = live_holder(run.root)
    if holder:
        return (
            f"{run_dir}: still training ({describe_holder(holder)}, lock {lock_path(run.root)}); its "
            f"{CARD_FILE} is written when training ends: wait for it"
        )
    if run.last_checkpoint.is_file():
        return (
            f"{run_dir}: an unfinished run (training stopped before writing {CARD_FILE}; its last checkpoint "
            f"is kept): continue it with `cxr train --resume {run_dir}`"
        )
    return (
        f"{run_dir}: an unfinished run that stopped before its first checkpoint (no {CARD_FILE}, nothing "
        "to resume): train it again with the `cxr train` command that started it"
    )


def write_card(run_dir: str | Path, card: ModelCard) -> Path:
    """Write a new card (stamped with time, versions and commit), atomically."""
    card.validate(str(RunDir(run_dir).card))
    card.created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    card.versions = package_versions()
    card.git_commit = git_commit()
    card.host = host_cpu()
    return atomic_write_json(RunDir(run_dir).card, card.to_dict())


def update_card(run_dir: str | Path, section: str, value) -> ModelCard:
    """Replace one section (``calibration``, ``onnx``, ...) of the card on disk, atomically.

    Reads the card afresh so a concurrent writer's other sections are not lost; returns the
    updated card.
    """
    card = read_card(run_dir)
    if section not in {f.name for f in dataclasses.fields(ModelCard)} - {"extra"}:
        card.extra[section] = value
    else:
        if section == "calibration" and isinstance(value, dict):
            value = _section(Calibration, value)
        setattr(card, section, value)
    card.validate(str(RunDir(run_dir).card))
    atomic_write_json(RunDir(run_dir).card, card.to_dict())
    return card
