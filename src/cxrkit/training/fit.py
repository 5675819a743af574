"""``train(config)``: dataset -> split -> cached images -> Lightning fit -> run directory.

:func:`train` reads as its steps: check the start (a resume: epochs left to train, see
:mod:`.resume`), read and split the data, build the model (weights checked), cache the images,
write config + split (last, so a refused start or resume changes no file), fit, write weights
and the card. A start that fails before fitting removes the folder it created; a Ctrl-C while
fitting is :class:`~cxrkit.training.stop.TrainingStopped`, naming the checkpoint kept.
"""

from __future__ import annotations

import contextlib
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from .._distributed import cuda_wanted, is_launch_rank_zero
from .._io import atomic_write_text
from .._lightning import quiet_lightning
from .._precision import training_precision
from ..data.cache import cached_images, roi_report
from ..data.classes import normalise_label, parse_classes
from ..data.dataset import CxrDataset
from ..data.groups import group_codes, joint_group_codes
from ..data.multi import load_data
from ..data.prepare import prepare
from ..data.splits import split_fingerprint, split_to_csv
from ..data.transforms import Preprocessing
from ..errors import UsageError
from ..lungs.preprocess import carry_lung_run, with_lung_roi
from ..models import backbone_features, build_classifier, keep_outputs, save_weights
from ..run import ModelCard, ModelSpec, PreprocessingSpec, RunDir, run_lock, write_card
from .checkpoint_io import SafeCheckpointIO
from .config import DEFAULT_AUX_CLASSES, TrainConfig, with_absolute_paths
from .datamodule import CxrDataModule
from .features import FeatureHeadClassifier
from .freeze import apply_finetune, parse_finetune
from .left_out import report_left_out, write_skipped
from .module import CxrClassifier
from .resume import check_resume, stopped
from .stop import StopOnSignal


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        run_dir: the run directory written (``config.out``).
        card: the model card written there (None on the non-writing ranks of a distributed run).
        trainer: the Lightning trainer, for its logged metrics.
    """

    run_dir: Path
    card: ModelCard | None  # None on the non-writing ranks of a distributed run
    trainer: L.Trainer


def _precision(config: TrainConfig) -> str:
    """Lightning's precision for ``config.precision`` (auto, 32, bf16: inference's vocabulary)."""
    cuda = cuda_wanted(config.accelerator)
    precision, note = training_precision(config.precision, cuda, cuda and torch.cuda.is_bf16_supported())
    if note:
        warnings.warn(note, FutureWarning, stacklevel=2)
    return precision


def _loggers(run_dir: Path):
    """CSV (+ TensorBoard when installed) under logs/version_N: a resumed run adds a version."""
    loggers = [CSVLogger(run_dir, name="logs")]
    try:
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(run_dir, name="logs", version=loggers[0].version, default_hp_metric=False))
    except ModuleNotFoundError:  # tensorboard is optional
        pass
    return loggers


def resolve_aux_classes(config: TrainConfig) -> list[str]:
    """The auxiliary classes to train: as given (``["none"]``: none, see :func:`named_aux_classes`),
    or by default those of :data:`~cxrkit.training.config.DEFAULT_AUX_CLASSES` that the data
    holds and ``classes`` does not.

    Why ``pneumonia`` by default: trained on cxr + nih, it moved external/'s NIH AP normals called
    normal from 60.4% to 94.6% (issue 26, docs/results/external_recipes.md); a data set without
    such films trains exactly as before (no extra output that learnt nothing).
    """
    if config.aux_classes is not None:
        return named_aux_classes(config)
    if isinstance(config.classes, str) and config.classes.strip().lower() == "all":
        return []
    held = load_data(config.data, config.classes, allow_outside_paths=config.allow_outside_paths).excluded
    return [c for c in DEFAULT_AUX_CLASSES if held.get(c, 0) > 0]


def named_aux_classes(config: TrainConfig) -> list[str]:
    """``--aux-classes`` as the user named them (canonical names), refused when they make no sense:
    ``none`` mixed with names (``none viral_pneumonia`` dropped ``none``), a name that is one of
    the classes (it is trained as a class already), or a label of which the whole data holds no
    film (its output learnt only "never" and reported about 0.23 for every film). A protocol's
    selection may still leave a named class without training films: that output is dropped when
    the run is saved (:func:`_drop_empty_aux`)."""
    words = [w.strip() for w in config.aux_classes if w.strip()]
    if not words or [w.lower() for w in words] == ["none"]:
        return []
    given = " ".join(words)
    if "none" in (w.lower() for w in words):
        raise UsageError(
            f"--aux-classes {given}: 'none' means no auxiliary class; give either none or the labels, not both"
        )
    if isinstance(config.classes, str) and config.classes.strip().lower() == "all":
        raise UsageError(f"--aux-classes {given} needs an explicit --classes list, not 'all'")
    aux = list(dict.fromkeys(normalise_label(w) for w in words))
    classes = parse_classes(config.classes)
    clash = [a for a in aux if a in classes]
    if clash:
        raise UsageError(
            f"--aux-classes {given}: {', '.join(clash)} is one of the classes ({', '.join(classes)}); an "
            "auxiliary class is a label that is not a class: remove it from --aux-classes or from --classes"
        )
    held = load_data(config.data, classes, allow_outside_paths=config.allow_outside_paths).excluded
    absent = [a for a in aux if not held.get(a)]
    if absent:
        found = ", ".join(f"{label} ({n})" for label, n in sorted(held.items()) if n and ":" not in label) or "none"
        raise UsageError(
            f"--aux-classes {given}: the data holds no {' or '.join(absent)} film, so its output would learn "
            f"nothing (labels besides the classes: {found}); name labels the data holds, or leave --aux-classes out"
        )
    return aux


def prepare_data(
    config: TrainConfig, split_file: str | Path | None = None, progress: Callable[[int, int], None] | None = None
):
    """``config``'s dataset, decoded and split by its protocol (or by ``split_file``), with the
    auxiliary classes of :func:`resolve_aux_classes` (``config`` itself is not changed)."""
    return prepare(
        config.data,
        config.classes,
        split_file=split_file,
        seed=config.seed,
        fractions=config.fractions,
        max_distance=config.dup_threshold,
        workers=config.workers,
        progress=progress,
        cache_dir=config.cache_dir,
        allow_outside_paths=config.allow_outside_paths,
        split_by=config.split_by,
        holdout=config.holdout_source,
        select=config.select,
        aux_classes=resolve_aux_classes(config),
    )


def _check_start(config: TrainConfig, resume: bool) -> RunDir:
    training_precision(config.precision, cuda=False)  # an unknown --precision fails before any work
    if config.debias and config.cache_features:
        raise UsageError("debias trains the backbone's features; it cannot be combined with cache_features")
    if config.cache_features and parse_finetune(config.finetune) != 0:
        raise UsageError(
            "cache_features trains the head alone on frozen features: use it with "
            f"finetune='head' (got {config.finetune!r})"
        )
    run = RunDir(config.out)
    if resume and not run.last_checkpoint.is_file():
        raise UsageError(
            f"{run.last_checkpoint}: nothing to resume in {run.root}"
            + (" (the run finished; its model is in place)" if run.is_finished() else "")
        )
    if resume:
        try:  # refuse an unreadable or unsafe checkpoint now, not as a traceback inside Lightning
            checkpoint = SafeCheckpointIO().load_checkpoint(run.last_checkpoint)
        except Exception as exc:
            raise UsageError(
                f"{run.last_checkpoint}: not a checkpoint cxrkit can read safely "
                f"({type(exc).__name__}: {str(exc)[:200]}); nothing was changed. Start a new run with "
                "another --out"
            ) from None
        check_resume(config, run, checkpoint)  # epochs left to train, paths readable from here
    if not resume and run.has_started():
        raise UsageError(
            f"{run.root} already holds a run; continue it with --resume {run.root} "
            "or choose another --out (nothing was overwritten)"
        )
    return run


@dataclass
class _Built:
    model: torch.nn.Module
    info: object
    trainable: int
    pre: Preprocessing


def _build_model(config: TrainConfig, n_classes: int) -> _Built:
    model, info = build_classifier(
        config.model, n_classes, in_chans=1, pretrained=config.pretrained, weights=config.weights
    )
    trainable = apply_finetune(model, config.finetune)
    pre = Preprocessing(
        input_size=config.input_size or info.input_size[-1],
        mean=info.mean[0],
        std=info.std[0],
        contrast=config.contrast,
    )
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return _Built(model, info, trainable, pre)


def _train_val_indices(ds: CxrDataset, split, n_aux: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train and val rows, and train class counts; refuses splits that cannot train.

    The last ``n_aux`` classes are auxiliary: one without training images (e.g. a protocol
    whose selection leaves none) is allowed; its output learns only "never" and is dropped.
    """
    assignment = np.asarray(split.assignment)
    train_idx, val_idx = np.nonzero(assignment == "train")[0], np.nonzero(assignment == "val")[0]
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise UsageError(f"the split has {len(train_idx)} train and {len(val_idx)} val images; both must be non-empty")
    counts = np.bincount(ds.labels[train_idx], minlength=len(ds.classes))
    if (counts[: len(counts) - n_aux] == 0).any():
        missing = [c for c, n in zip(ds.classes[: len(counts) - n_aux], counts) if n == 0]
        raise UsageError(f"no training images for class(es) {', '.join(missing)}")
    return train_idx, val_idx, counts


def _group_codes(config: TrainConfig, ds: CxrDataset) -> tuple[np.ndarray | None, dict[str, int]]:
    """(N, K) group codes of the ``debias`` columns and {column: number of groups}; (None, {}) without."""
    if not config.debias:
        return None, {}
    codes = {col: group_codes(ds, col) for col in config.debias}
    return np.stack([c for c, _ in codes.values()], 1), {col: len(values) for col, (_, values) in codes.items()}


def _module_and_data(
    config: TrainConfig, built: _Built, ds: CxrDataset, images, train_idx, val_idx, counts, on_stage, data_progress
):
    labels = ds.labels
    present = counts > 0  # an auxiliary class may have no training images: weight 0, never a target
    weights = np.where(present, counts.sum() / (present.sum() * np.maximum(counts, 1)), 0.0)
    class_weights = weights.tolist() if config.balance == "loss" else None
    settings = dict(
        lr=config.lr,
        weight_decay=config.weight_decay,
        warmup_epochs=config.warmup_epochs,
        label_smoothing=config.label_smoothing,
        channels_last=config.channels_last,
    )
    if config.aux_classes:
        settings["n_report"] = _n_reported(config, ds)
    pre = built.pre
    if config.cache_features:
        on_stage(f"computing frozen {config.model} features of {len(train_idx) + len(val_idx)} images once")
        rows = np.concatenate([train_idx, val_idx])
        device = "cuda" if cuda_wanted(config.accelerator) else "cpu"
        features = backbone_features(built.model, images, pre, rows, device=device, progress=data_progress)
        dm = CxrDataModule(
            features,
            labels[rows],
            np.arange(len(train_idx)),
            np.arange(len(train_idx), len(rows)),
            config.batch_size,
            balance=config.balance,
            seed=config.seed,
        )
        module = FeatureHeadClassifier(
            built.model.get_classifier(), list(ds.classes), pre.to_dict(), class_weights, augment="none", **settings
        )
    else:
        groups, debias = _group_codes(config, ds)
        dm = CxrDataModule(
            images,
            labels,
            train_idx,
            val_idx,
            config.batch_size,
            balance=config.balance,
            seed=config.seed,
            groups=groups,
            balance_groups=joint_group_codes(ds, config.balance_by) if config.balance == "group" else None,
        )
        module = CxrClassifier(
            built.model,
            list(ds.classes),
            pre.to_dict(),
            class_weights,
            augment=config.augment,
            debias=debias,
            debias_weight=config.debias_weight,
            **settings,
        )
    return module, dm


def _trainer(config: TrainConfig, run: RunDir, progress_bar: bool, callbacks) -> tuple[L.Trainer, ModelCheckpoint]:
    best = ModelCheckpoint(
        dirpath=run.checkpoints,
        filename="best",
        monitor="val/loss",
        mode="min",
        save_last=True,
        save_top_k=1,
        enable_version_counter=False,
    )
    callbacks = [
        best,
        EarlyStopping("val/loss", patience=config.patience, mode="min"),
        LearningRateMonitor("epoch"),
        StopOnSignal(run.last_checkpoint),  # SIGINT/SIGTERM: a checkpoint to resume from, then TrainingStopped
        *callbacks,
    ]
    if progress_bar:
        from lightning.pytorch.callbacks import RichProgressBar

        callbacks.append(RichProgressBar(console_kwargs={"stderr": True}))  # progress on stderr, as the CLI's
    trainer = L.Trainer(
        max_epochs=config.epochs,
        accelerator=config.accelerator,
        devices=config.devices,
        num_nodes=config.num_nodes,
        strategy=config.strategy,
        precision=_precision(config),
        callbacks=callbacks,
        logger=_loggers(run.root),
        plugins=[SafeCheckpointIO()],
        use_distributed_sampler=False,  # CxrDataModule shards train and val itself
        deterministic="warn" if torch.cuda.is_available() else True,
        enable_progress_bar=progress_bar,
        enable_model_summary=False,
        log_every_n_steps=10,
        max_time={"minutes": config.max_minutes} if config.max_minutes else None,
        default_root_dir=run.root,
    )
    return trainer, best


def _n_reported(config: TrainConfig, ds: CxrDataset) -> int:
    """How many of ``ds.classes`` the run reports: all but the trailing auxiliary classes."""
    return len(ds.classes) - len(config.aux_classes or [])


def _drop_empty_aux(config: TrainConfig, model: torch.nn.Module, ds: CxrDataset, split, say) -> list[str]:
    """Remove from ``model`` the outputs of auxiliary classes that no training film taught (a
    protocol's selection left none; named ones without any film are refused by
    :func:`named_aux_classes`); returns their names. Such an output learnt only "never" and, with
    label smoothing, reported about 0.23 "other abnormal" for every film."""
    if not config.aux_classes:
        return []
    train = split.counts(ds)["train"]
    empty = [c for c in ds.classes[_n_reported(config, ds) :] if not train[c]]
    if empty:
        keep_outputs(model, [i for i, c in enumerate(ds.classes) if c not in empty])
        say(f"note: auxiliary output(s) {', '.join(empty)} had no training film; left out of the saved model")
    return empty


def _aux_card(config: TrainConfig, ds: CxrDataset, split, dropped: list[str]) -> dict:
    """The model card's record of the auxiliary classes (empty without them)."""
    if not config.aux_classes:
        return {}
    train = split.counts(ds)["train"]
    aux = ds.classes[_n_reported(config, ds) :]
    return {
        "aux_classes": list(aux),
        # the weights keep these outputs after the classes (cxrkit.run.ModelCard.aux_outputs):
        # the Predictor reports the classes renormalised plus their summed "other abnormal" mass
        "aux_outputs": [c for c in aux if c not in dropped],
        "aux_rule": "classes renormalised; auxiliary mass reported as other_abnormal",
        "aux_train_images": {c: train[c] for c in aux},
        **({"aux_outputs_dropped": dropped} if dropped else {}),  # no training film: not saved
    }


def _card(
    config: TrainConfig,
    built: _Built,
    ds: CxrDataset,
    split,
    split_csv: str,
    trainer: L.Trainer,
    best: ModelCheckpoint,
    best_path: Path,
    val: dict,
    n_train: int,
    fit_seconds: float,
    start: float,
    dropped_aux: list[str],
) -> ModelCard:
    run = RunDir(config.out)
    return ModelCard(
        classes=list(ds.classes[: _n_reported(config, ds)]),
        preprocessing=PreprocessingSpec(**built.pre.to_dict()),
        model=ModelSpec(
            name=config.model,
            in_chans=1,
            num_params=built.info.num_params,
            trainable_params=built.trainable,
            finetune=config.finetune,
            cache_features=config.cache_features,
            extra=_aux_card(config, ds, split, dropped_aux),
        ),
        weights_source=built.info.weights_source,
        data={
            # several roots: the list as given (what evaluate re-reads), each root's fingerprint below
            "path": [p["path"] for p in ds.parts] if ds.parts else str(ds.root),
            "source": ds.source,
            "fingerprint": ds.fingerprint(),
            "images": len(ds),
            "split_counts": split.counts(ds),
            **({"datasets": ds.parts} if ds.parts else {}),
        },
        split={
            "file": run.split.name,
            "hash": split_fingerprint(split_csv),
            "seed": config.seed,
            "fractions": list(config.fractions),
        },
        training={
            "epochs_run": trainer.current_epoch,
            "best_checkpoint": best_path.name,
            "best_val_loss": float(best.best_model_score) if best.best_model_score is not None else None,
            "fit_seconds": round(fit_seconds, 1),
            "wall_seconds": round(time.perf_counter() - start, 1),
            "train_images_per_epoch": int(n_train),
        },
        val_metrics={k: round(float(v), 6) for k, v in val.items()},
    )


def train(
    config: TrainConfig,
    resume: bool = False,
    progress_bar: bool = True,
    on_stage: Callable[[str], None] = lambda msg: None,
    data_progress: Callable[[int, int], None] | None = None,
    callbacks: tuple[L.Callback, ...] = (),
) -> TrainResult:
    """Train a model as ``config`` says and write the run directory ``config.out``.

    With ``resume`` the run continues from ``checkpoints/last.ckpt`` of that directory,
    using its saved split. ``callbacks`` are added to Lightning's (e.g. custom logging).
    The writing process holds the run directory's lock (:func:`cxrkit.run.run_lock`) throughout:
    a second writer into the same ``out`` is refused, naming the process that holds it.
    A first SIGINT or SIGTERM during the fit saves ``checkpoints/last.ckpt`` after the batch in
    progress and raises :class:`~cxrkit.training.stop.TrainingStopped` (resume with ``resume=True``).

    Args:
        config: the run's :class:`~cxrkit.training.config.TrainConfig` (``data`` and ``out`` at least).
        resume: continue the run in ``config.out`` from its last checkpoint.
        progress_bar: Lightning's rich progress bar.
        on_stage: called with one line per step ("caching 4911 images at 224 px", warnings).
        data_progress: called as ``data_progress(done, total)`` while images are read and cached.
        callbacks: more Lightning callbacks for the fit.

    Returns:
        :class:`TrainResult` (the run directory and its model card).

    Raises:
        UsageError: a config or start that cannot work (nothing is left behind).
        TrainingStopped: a signal stopped the fit (the checkpoint it can resume from is kept).
    """
    if not is_launch_rank_zero():  # the other ranks of a distributed run write nothing
        return _train(config, resume, progress_bar, on_stage, data_progress, callbacks)
    with run_lock(config.out, "cxr train" + (" --resume" if resume else ""), on_note=on_stage):
        return _train(config, resume, progress_bar, on_stage, data_progress, callbacks)


@contextlib.contextmanager
def _stops_on_ctrl_c(trainer: L.Trainer, run: RunDir, epochs: int):
    """Lightning turns Ctrl-C into ``sys.exit(1)`` with nothing said; make it :class:`TrainingStopped`."""
    try:
        yield
    except SystemExit:
        if not trainer.interrupted:
            raise
        raise stopped(run, epochs) from None


def _train(config, resume, progress_bar, on_stage, data_progress, callbacks) -> TrainResult:
    """The body of :func:`train`, run under the lock."""
    start = time.perf_counter()
    run = _check_start(config, resume)  # before any data is read: a refused resume costs nothing
    # the default auxiliary classes resolved once, on a copy: the caller's config stays as given,
    # and so does the run's config.yaml (a resume resolves them again; the card records the result)
    given, config = config, replace(config, aux_classes=resolve_aux_classes(config))
    quiet_lightning()
    L.seed_everything(config.seed, workers=True, verbose=False)
    # In a distributed run the launcher re-runs this function in every process; only global
    # rank 0 writes, and the other ranks train on the split rank 0 wrote before launching them.
    writer = is_launch_rank_zero()
    created = writer and not resume and not run.root.exists()
    try:
        on_stage("reading and splitting the dataset")
        split_file = run.split if resume or not writer else config.split_file
        prep = prepare_data(config, split_file, data_progress)
        ds, split = prep.dataset, prep.split
        say = on_stage if writer else (lambda m: None)
        left_out = report_left_out(run, ds, split.counts(ds), list(ds.classes[: _n_reported(config, ds)]), say)
        train_idx, val_idx, counts = _train_val_indices(ds, split, len(config.aux_classes or []))
        on_stage(f"building {config.model}")
        built = _build_model(config, len(ds.classes))
        split_csv = split_to_csv(ds, split)
        built.pre = with_lung_roi(
            built.pre, config.roi, config.lung_run, blank=config.roi_blank
        )  # crop before the resize
        skipped = f" ({len(ds.skipped)} skipped, see {run.skipped.name})" if ds.skipped else ""
        on_stage(f"caching {len(ds)} images at {built.pre.input_size} px{skipped}")
        images = cached_images(ds, built.pre, config.cache_dir, workers=config.workers, progress=data_progress)
        module, dm = _module_and_data(config, built, ds, images, train_idx, val_idx, counts, on_stage, data_progress)
        trainer, best = _trainer(config, run, progress_bar, callbacks)
        if writer:  # last: a start or resume refused above has changed no file of the run
            run.root.mkdir(parents=True, exist_ok=True)
            atomic_write_text(run.split, split_csv)
            atomic_write_text(run.config, with_absolute_paths(given).to_yaml())  # resumable from anywhere
            write_skipped(run, ds)
    except BaseException:
        if created:  # a failed start leaves nothing behind
            shutil.rmtree(run.root, ignore_errors=True)
        raise

    on_stage(f"training ({built.trainable:,} trainable parameters)")
    fit_start = time.perf_counter()
    with _stops_on_ctrl_c(trainer, run, config.epochs):
        trainer.fit(module, datamodule=dm, ckpt_path=str(run.last_checkpoint) if resume else None, weights_only=True)
    fit_seconds = time.perf_counter() - fit_start

    # by name in this run: a resumed checkpoint keeps the path of best.ckpt where the run was trained
    # (Lightning: "dirpath has changed"), which is another run's after a copy, or gone after a move
    best_path = run.checkpoints / Path(best.best_model_path).name if best.best_model_path else run.last_checkpoint
    module.load_state_dict(SafeCheckpointIO().load_checkpoint(best_path)["state_dict"])
    with _stops_on_ctrl_c(trainer, run, config.epochs):
        val = trainer.validate(module, datamodule=dm, verbose=False)[0]  # metrics of the saved model
    if trainer.global_rank != 0:
        return TrainResult(run.root, None, trainer)
    dropped = _drop_empty_aux(config, built.model, ds, split, on_stage)  # never shipped: the card says so
    save_weights(run.root, built.model)  # with cached features module.model is only the head, trained in place
    built.pre = carry_lung_run(built.pre, run.root)  # roi: lungs: the run keeps its own lung model
    card = _card(
        config, built, ds, split, split_csv, trainer, best, best_path, val, len(train_idx), fit_seconds, start, dropped
    )
    card.training.update(roi_report(ds, built.pre, config.cache_dir))  # lung-ROI fallbacks, if any
    card.data.update(left_out)  # skipped files and too-small classes, counted
    write_card(run.root, card)
    return TrainResult(run.root, card, trainer)
