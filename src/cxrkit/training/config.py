"""The training configuration: plain data, saved as ``config.yaml`` in every run directory.

Every field carries its help text (``metadata["help"]``); ``cxr train`` and ``cxr demo`` build
their flags from these fields (:mod:`cxrkit.cli._config_args`), so a default is written once,
here. Kept free of heavy imports so ``--help`` shows instantly.

Resolution order (as with timm / Lightning): dataclass default < ``--config FILE.yaml`` (or a
preset name from ``cxrkit/configs/``) < command-line flags. The resolved config is what lands in the
run directory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import numbers
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from ..errors import UsageError

# Same as cxrkit.models.DEFAULT_MODEL (a test checks); repeated so this module stays light.
DEFAULT_MODEL = "tf_efficientnet_lite0"
CONFIG_FILE = "config.yaml"
# Presets ship inside the package (cxrkit/configs/*.yaml, declared as package data), so
# `--config fast` works from a source checkout and from an installed wheel alike; a path
# relative to the checkout would exist only in the first.
PRESET_DIR = Path(str(resources.files("cxrkit") / "configs"))
# labels trained as auxiliary outputs when the data holds them and --aux-classes is not given
DEFAULT_AUX_CLASSES = ("pneumonia",)
# What `cxr demo` changes from TrainConfig's defaults: nothing, so the demo trains the recipe
# chosen on val and external/ (docs/recipes.md). Its former cap (8 epochs, 18 minutes) cut the
# cosine schedule short; the full 12 epochs took 37 minutes on cxr + nih on a 2-core Xeon.
DEMO_DEFAULTS: dict = {}


def _f(default=dataclasses.MISSING, help: str = "", *, factory=None, **meta):
    """A dataclass field with its help text (and CLI hints: choices, values, group, cli)."""
    meta = {"help": help, **meta}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    """Everything that defines a training run; saved as ``config.yaml`` in the run directory."""

    data: str | list[str] = _f(
        help="dataset folder or CSV manifest (see `cxr data inspect --help`); several are read as one "
        "dataset, patient ids kept apart per dataset, one split over all (e.g. --data data/cxr data/nih)",
        group="data",
        nargs="+",
        metavar="DATA",
    )
    out: str = _f(help="run directory to create", group="data")
    classes: str | None = _f(
        None,
        "classes to keep, in order (default covid,viral_pneumonia,normal; 'all' keeps every class found)",
        group="data",
    )
    aux_classes: list[str] | None = _f(
        None,
        "auxiliary classes: labels that are not classes, trained as extra outputs and reported as one "
        "'other abnormal' probability (flagged at a threshold fitted on val); their images only join "
        "train. Default: pneumonia when the data has such films (e.g. ../shared/data/nih); 'none' for none",
        group="data",
        metavar="CLASS",
    )
    allow_outside_paths: bool = _f(
        False,
        "read manifest rows whose path leaves the manifest's folder (../ or "
        "absolute paths); without it they are skipped and listed",
        group="data",
    )
    model: str = _f(DEFAULT_MODEL, "timm model name or resdense_tiny/small/base", group="model")
    pretrained: bool = _f(
        True,
        "auto: ImageNet weights (offline for tf_efficientnet_lite0/1/2, else timm's hub); none: from scratch",
        values={"auto": True, "none": False},
        group="model",
    )
    weights: str | None = _f(None, "local .safetensors/.pt state dict to start from", group="model")
    input_size: int | None = _f(None, "image side in px (default: the backbone's pretrained size)", group="model")
    contrast: str = _f(
        "percentile",
        "per-image contrast normalisation: percentile (1st-99th stretch), equalize (stretch + "
        "histogram equalisation), clahe (stretch + adaptive equalisation) or none",
        choices=("percentile", "equalize", "clahe", "none"),
        group="model",
    )
    roi: str = _f(
        "none",
        "region of interest: none (the whole film) or lungs (crop each image to its predicted lung box "
        "grown by 0.05 of its size each side, before the resize; needs --lung-run)",
        choices=("none", "lungs"),
        group="model",
    )
    lung_run: str | None = _f(None, "lung segmentation run of `cxr lungs train` used by --roi lungs", group="model")
    roi_blank: bool = _f(
        False,
        "with --roi lungs, also set the pixels outside the predicted lung mask to black (the model sees "
        "only lung; films that fall back to the whole image are not blanked)",
        group="model",
    )
    epochs: int = _f(12, "maximum epochs", group="recipe")
    batch_size: int = _f(32, "images per step", group="recipe")
    lr: float = _f(1e-3, "peak AdamW learning rate", group="recipe")
    weight_decay: float = _f(0.05, "AdamW weight decay", group="recipe")
    warmup_epochs: float = _f(1.0, "linear warm-up before the cosine decay, in epochs", group="recipe")
    label_smoothing: float = _f(0.1, "label smoothing of the cross-entropy", group="recipe")
    balance: str = _f(
        "loss",
        "class imbalance: weighted loss, balanced sampler, group (sampler that also balances "
        "population groups within each class, e.g. adult vs pediatric normals), or none",
        choices=("loss", "sampler", "group", "none"),
        group="recipe",
    )
    balance_by: list[str] = _f(
        help="with --balance group: the metadata columns whose combined groups are drawn equally often "
        "within each class, e.g. population view (AP and PA normals as often as each other)",
        factory=lambda: ["population"],
        group="recipe",
        metavar="COLUMN",
    )
    debias: list[str] | None = _f(
        None,
        "metadata columns (population, subsource) that an adversarial head must not read from the "
        "features, given the class (gradient reversal); needs a manifest with those columns",
        group="recipe",
        metavar="COLUMN",
    )
    debias_weight: float = _f(0.3, "weight of the adversarial heads' loss (with --debias)", group="recipe")
    finetune: str = _f("full", "full, head (linear probe) or last-N (last N blocks + head)", group="recipe")
    cache_features: bool = _f(
        False,
        "with --finetune head: compute the frozen backbone's features once and "
        "train the head on them (seconds per epoch on a CPU; no augmentation)",
        group="recipe",
    )
    augment: str = _f(
        "robust",
        "batch augmentation: basic (rotation, zoom, shift, brightness, contrast, gamma), robust (basic, "
        "wider, plus blur/sharpen, down-up resampling, JPEG, noise: acquisition traces), robust-fourier / "
        "robust-histogram (robust, and half the images take another image's amplitude spectrum or "
        "grey-level histogram), none",
        choices=("none", "basic", "robust", "robust-fourier", "robust-histogram"),
        group="recipe",
    )
    patience: int = _f(5, "early-stopping patience in epochs on val loss", group="recipe")
    seed: int = _f(0, "seed of the split and the training", group="split")
    split_file: str | None = _f(None, "reuse a saved split.csv instead of making a new split", group="split")
    fractions: tuple[float, float, float] = _f((0.7, 0.15, 0.15), "train,val,test shares", group="split")
    dup_threshold: int = _f(
        36,
        "max differing bits (of 256) for two images to count as near-duplicates and stay in one split (-1 disables)",
        group="split",
    )
    split_by: str = _f(
        "patient",
        "split protocol: patient (whole patients and near-duplicates), image (random per "
        "image: leaky, the original 2020 protocol), source (--holdout-source to test)",
        choices=("patient", "image", "source"),
        group="split",
    )
    holdout_source: list[str] | None = _f(
        None,
        "with split_by source: subsource values (ieee8023) or column=value "
        "rules ('label=normal population=adult') whose images all go to test",
        group="split",
    )
    select: list[str] | None = _f(
        None,
        "rules for the images that enter at all, e.g. 'label=covid n=219' "
        "(seeded draw) 'label=normal subsource=Kermany-train'",
        group="split",
    )
    accelerator: str = _f("auto", "auto, cpu or gpu", group="hardware")
    devices: str | int = _f("auto", "number of devices or auto", group="hardware")
    num_nodes: int = _f(1, "machines in a distributed run", group="hardware")
    strategy: str = _f("auto", "Lightning strategy: auto, ddp, ...", group="hardware")
    precision: str | None = _f(
        None,
        "auto, 32, bf16 or 16, as in cxr predict (default auto: bf16/16 mixed on GPU, 32 on CPU); "
        "Lightning's names (bf16-mixed, 32-true) are deprecated",
        group="hardware",
    )
    channels_last: bool = _f(True, "channels_last memory format (1.7x faster on CPU here)", group="hardware")
    workers: int = _f(
        help="processes that decode images (default: all cores)", factory=lambda: os.cpu_count() or 1, group="hardware"
    )
    cache_dir: str | None = _f(
        None, "where decoded images are cached (default ~/.cache/cxrkit or $CXR_CACHE)", group="hardware"
    )
    max_minutes: float | None = _f(
        None, "stop training after this many minutes (best val checkpoint kept)", group="hardware"
    )

    def __post_init__(self):
        # one root stays a plain string (config.yaml as before 0.2); several are a list
        if isinstance(self.data, (list, tuple)):
            self.data = str(self.data[0]) if len(self.data) == 1 else [str(d) for d in self.data]

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["fractions"] = list(self.fractions)
        return d

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, d: dict, source: str = "config") -> "TrainConfig":
        """A config from ``d``; an empty or incomplete one is a :class:`UsageError` naming ``source``."""
        d = check_keys(d, source)
        required = [f.name for f in dataclasses.fields(cls) if f.default is f.default_factory is dataclasses.MISSING]
        missing = [n for n in required if n not in d]
        if missing:
            what = "is empty" if not d else f"has no {', '.join(missing)}"
            raise UsageError(f"{source} {what}; it cannot describe a run (restore it, or start a new run)")
        try:
            return cls(**d)
        except TypeError as exc:  # a value of the wrong type that a check compared or called
            raise UsageError(f"{source}: malformed config ({exc})") from None

    @classmethod
    def from_yaml(cls, text: str, source: str = "config") -> "TrainConfig":
        return cls.from_dict(parse_yaml(text, source), source)


# Fields that name files or folders. config.yaml stores them absolute (:func:`with_absolute_paths`):
# `data: data/tiny` as typed was read from the folder the run was started in, so `cxr train
# --resume /abs/run` from anywhere else said the data folder did not exist.
PATH_FIELDS = ("data", "weights", "lung_run", "split_file", "cache_dir")


def with_absolute_paths(config: TrainConfig) -> TrainConfig:
    """``config`` with its :data:`PATH_FIELDS` made absolute (``~`` expanded) against the current
    folder; ``out`` stays as given (a run directory may be moved and is resumed by its own path)."""

    def absolute(path: str) -> str:
        return os.path.abspath(os.path.expanduser(str(path)))

    changes = {}
    for name in PATH_FIELDS:
        value = getattr(config, name)
        if value is not None:
            changes[name] = [absolute(v) for v in value] if isinstance(value, (list, tuple)) else absolute(value)
    return dataclasses.replace(config, **changes)


def check_keys(d: dict, source: str) -> dict:
    """``d`` with known keys only (else a UsageError naming them and ``source``), fractions a tuple."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(d) - names
    if unknown:
        raise UsageError(
            f"{source}: unknown config key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(names))}"
        )
    d = dict(d)
    if isinstance(d.get("augment"), bool):  # config.yaml before 0.2: augment: true/false
        d["augment"] = "basic" if d["augment"] else "none"
    fields = {f.name: f.type for f in dataclasses.fields(TrainConfig)}
    for name, value in d.items():
        if isinstance(value, str) and "float" in str(fields[name]) and not _type_ok(value, str(fields[name])):
            with contextlib.suppress(ValueError):  # YAML 1.1 reads 1e-3 (no dot) as a string
                d[name] = value = float(value)
        if not _type_ok(value, str(fields[name])):
            raise UsageError(f"{source}: {name} must be {fields[name]}, got {value!r}"[:300])
    if "fractions" in d:
        d["fractions"] = tuple(d["fractions"])
    return d


# What a value of each annotation may be: callers pass Paths for strings, numpy ints for ints.
_SCALARS = {"int": (numbers.Integral,), "float": (numbers.Real,), "str": (str, os.PathLike), "bool": (bool,)}


def _type_ok(value, annotation: str) -> bool:
    """``value`` fits the field annotation (a string here: ``int | None``, ``list[str]``, ...).

    A config file's values are otherwise taken as they are: ``epochs: abc`` in a saved
    config.yaml used to reach the trainer and end as "unexpected TypeError"."""
    for option in (o.strip() for o in annotation.split("|")):
        if option == "None" and value is None:
            return True
        if option in _SCALARS:
            if isinstance(value, _SCALARS[option]) and not (option != "bool" and isinstance(value, bool)):
                return True
        elif option.startswith(("list[", "tuple[")):
            inner = option[option.index("[") + 1 : -1].split(",")[0].strip()
            if isinstance(value, (list, tuple)) and all(_type_ok(v, inner) for v in value):
                return True
        elif option != "None":
            return True  # a type this check does not know: left to the config's own checks
    return False


def parse_yaml(text: str, source: str) -> dict:
    try:
        d = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise UsageError(f"{source}: not valid YAML ({exc})") from None
    if not isinstance(d, dict):
        raise UsageError(f"{source}: a config file must be a mapping of TrainConfig fields, got {type(d).__name__}")
    return d


def read_config_file(spec: str | Path) -> dict:
    """The fields set by ``--config``: a YAML path, or a preset name from ``cxrkit/configs/`` (e.g. ``fast``).

    Args:
        spec: a YAML file of TrainConfig fields, or a preset's name.

    Returns:
        The fields the file sets (unknown keys are refused), for ``TrainConfig(**fields, ...)``.
    """
    path = Path(spec)
    if not path.is_file() and not path.suffix and (PRESET_DIR / f"{spec}.yaml").is_file():
        path = PRESET_DIR / f"{spec}.yaml"
    if not path.is_file():
        presets = sorted(p.stem for p in PRESET_DIR.glob("*.yaml")) if PRESET_DIR.is_dir() else []
        raise UsageError(f"--config {spec}: no such file" + (f" or preset ({', '.join(presets)})" if presets else ""))
    return check_keys(parse_yaml(path.read_text(), str(path)), str(path))


def resolve_config(
    file_values: dict | None = None, flag_values: dict | None = None, base: dict | None = None
) -> TrainConfig:
    """Defaults < ``base`` (e.g. the demo's own defaults) < config file < flags."""
    merged = {**(base or {}), **(file_values or {}), **(flag_values or {})}
    missing = [n for n in ("data", "out") if not merged.get(n)]
    if missing:
        raise UsageError(f"missing {' and '.join('--' + m for m in missing)} (give them as flags or in --config)")
    return TrainConfig.from_dict(merged, "config")
