"""Adapting a trained run to a new site: fine-tune it on the site's labeled films.

Why: a model of public data loses 15-20 points on the normal films of a later acquisition that
no recipe saw (``../shared/data/site``: children's normals called normal ~78% of the time, 99%
on the earlier acquisition). A hospital labels a few dozen films and adapts. Three pieces:

* :func:`load_site` reads the base run (weights, card, its own training data and split) and the
  site's films once, mapping site labels onto the base's outputs (a label that is neither a
  class nor an auxiliary output is left out unless ``label_map`` names the output it trains);
* :func:`fit_adapted` fine-tunes a copy of the base network on chosen site films plus
  ``replay`` films drawn from the base run's own training split (so it does not forget the
  rest of the world), optionally pulled toward the base weights (L2-SP, ``anchor``);
* :func:`write_adapted` writes a run directory like any other: the base's classes, auxiliary
  outputs and preprocessing, its split (``cxr evaluate NEW_RUN`` scores the base's own test
  split: what the adaptation cost elsewhere) and a card whose ``adaptation`` section names the
  base run and the site films used.

Calibration (evaluation layer) and the measured site report live in
:mod:`cxrkit.workflows.adapt`.
"""

from __future__ import annotations

import copy
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
import yaml

from .._io import atomic_write_text, file_sha256, read_text
from .._lightning import quiet_lightning
from .._precision import training_precision
from ..data.cache import cached_images
from ..data.classes import normalise_label
from ..data.dataset import CxrDataset
from ..data.multi import load_data
from ..data.prepare import prepare
from ..data.scan import scan_dataset
from ..errors import CxrkitError, UsageError
from ..models import LoadedRun, load_run, save_weights
from ..run import ModelCard, RunDir, read_card, write_card
from .adapt_config import DROP, SITE_WEIGHTS, AdaptSettings
from .datamodule import CxrDataModule
from .module import CxrClassifier


@dataclass
class SiteData:
    """The base run and the site's films, decoded once (several fits reuse them)."""

    base: LoadedRun
    outputs: list[str]  # the base's classes, then its auxiliary outputs
    augment: str
    base_images: np.ndarray  # the base run's training films (its split's train rows), preprocessed
    base_labels: np.ndarray
    site: CxrDataset  # the site films that map to an output, in order
    site_images: np.ndarray
    site_labels: np.ndarray  # index into ``outputs``
    mapping: dict[str, str]  # site label -> output it trains
    left_out: dict[str, int]  # site label -> films left out (no output to train)
    skipped: list[dict]  # unreadable site files: {"path", "reason"}

    @property
    def patients(self) -> list[str]:
        """Patient id of every site film (a film without one is its own patient)."""
        return [r.patient_id or f"file:{self.site.relpath(r)}" for r in self.site.records]


def _refuse_ensemble(base: Path) -> None:
    run = RunDir(base)
    if run.is_ensemble():
        raise UsageError(
            f"{base} is an ensemble; adapt one member (cxr adapt MEMBER_RUN --data SITE --out NEW_RUN) "
            "or each member, then combine the adapted runs with `cxr ensemble create`"
        )
    if not run.card.is_file():
        raise UsageError(f"{base}: not a finished run directory (no {run.card.name}); train one with `cxr train`")


def map_labels(site_labels: list[str], outputs: list[str], label_map: dict[str, str]) -> dict:
    """Site label -> output name, or ``DROP``: a class or auxiliary output by name, then
    ``label_map`` (e.g. ``{"bacterial_pneumonia": "pneumonia"}``), else left out.

    Why left out by default: on site/'s held-out folds, with every labeled patient, its 33
    bacterial films trained as the base's auxiliary ``pneumonia`` output cost normal or viral films
    in all three comparisons (normals / viral, left out against trained: lr 1e-4 92.9 / 97.1
    against 91.1 / 94.3, on other folds 92.0 / 97.1 against 91.1 / 97.1; lr 3e-4 with site films
    alike 94.6 / 98.6 against 92.9 / 92.9) and tripled the cost on the base's test split (-0.4 ->
    -1.2 points); children's bacterial films look like the viral ones the classes must tell
    apart. With 25 patients per label they helped (balanced 93.8 against 92.4 and 91.7).
    """
    given = {normalise_label(k): (DROP if v == DROP else normalise_label(v)) for k, v in label_map.items()}
    bad = sorted(v for v in given.values() if v != DROP and v not in outputs)
    if bad:
        raise UsageError(
            f"--map names {', '.join(bad)}, not an output of the base run (its outputs: {', '.join(outputs)}; "
            f"or '{DROP}')"
        )
    out = {}
    for label in site_labels:
        if label in outputs:
            out[label] = label
        elif label in given:
            out[label] = given[label]
        else:
            out[label] = DROP
    return out


def load_site(
    base_run: str | Path,
    site: str | Path,
    label_map: dict[str, str] | None = None,
    workers: int = 2,
    cache_dir: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    on_stage: Callable[[str], None] = lambda m: None,
) -> SiteData:
    """Read ``base_run`` and the labeled films of ``site`` (any layout ``cxr data inspect`` reads)."""
    base_run = Path(base_run)
    _refuse_ensemble(base_run)
    base = load_run(base_run)
    card = base.card
    outputs = [*base.classes, *base.aux_classes]
    on_stage(f"reading the site's films in {site}")
    try:
        listed = load_data(site, "all", min_classes=1)
    except CxrkitError as exc:
        raise UsageError(f"{exc} (the site's labeled films, --data)") from None
    whole, _ = scan_dataset(listed, workers=workers, cache_dir=cache_dir)
    skipped = [{"path": str(s.path), "reason": s.reason} for s in whole.skipped]
    mapping = map_labels(list(whole.classes), outputs, label_map or {})
    counts = Counter(r.label for r in whole.records)
    left_out = {lab: counts[lab] for lab, to in mapping.items() if to == DROP and counts[lab]}
    keep = [mapping.get(r.label, DROP) != DROP for r in whole.records]
    site_ds = whole.select(keep)
    if len(site_ds) == 0:
        found = ", ".join(f"{c} ({n})" for c, n in counts.items()) or "no readable films"
        raise UsageError(
            f"{site}: no film maps to an output of {base_run} (found: {found}; outputs: {', '.join(outputs)}); "
            "name the mapping with --map LABEL=CLASS"
        )
    index = {o: i for i, o in enumerate(outputs)}
    site_labels = np.array([index[mapping[r.label]] for r in site_ds.records], dtype=np.int64)
    on_stage(f"reading the base run's training data ({', '.join(map(str, _as_list(card.data['path'])))})")
    base_ds, base_labels, base_images = _base_training_films(base, outputs, workers, cache_dir, progress)
    site_images = cached_images(site_ds, base.preprocessing, cache_dir, workers=workers, progress=progress)
    return SiteData(
        base,
        outputs,
        _base_augment(base.run_dir),
        base_images,
        base_labels,
        site_ds,
        np.asarray(site_images),
        site_labels,
        {k: v for k, v in mapping.items() if v != DROP},
        left_out,
        skipped,
    )


def _as_list(x) -> list:
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _base_training_films(base: LoadedRun, outputs, workers, cache_dir, progress):
    """The base run's training-split films (its own split.csv), decoded at its input size."""
    run = RunDir(base.run_dir)
    if not run.split.is_file():
        raise UsageError(f"{run.split}: missing; replay needs the base run's own split of its training data")
    try:
        prep = prepare(
            base.card.data["path"],
            list(base.classes),
            split_file=run.split,
            workers=workers,
            cache_dir=cache_dir,
            aux_classes=list(base.aux_classes) or None,
            allow_outside_paths=run.reads_outside_paths(),
            progress=progress,
        )
    except UsageError as exc:
        raise UsageError(
            f"the base run's training data could not be read for replay ({exc}); run cxr adapt where "
            f"{base.card.data['path']} is reachable"
        ) from None
    train = prep.split.subset(prep.dataset, "train")
    images = cached_images(train, base.preprocessing, cache_dir, workers=workers, progress=progress)
    index = {o: i for i, o in enumerate(outputs)}
    labels = np.array([index[r.label] for r in train.records], dtype=np.int64)
    return train, labels, images


def _base_augment(run_dir: Path) -> str:
    """The augmentation the base was trained with (its config.yaml), "robust" (the default) if unknown."""
    try:
        config = yaml.safe_load(RunDir(run_dir).config.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        config = {}
    return str(config.get("augment") or "robust") if isinstance(config, dict) else "robust"


class AnchoredClassifier(CxrClassifier):
    """:class:`CxrClassifier` plus ``anchor`` x the squared distance to the starting weights
    (L2-SP, Li et al. 2018): the fine-tune may move where the site needs it, and is pulled back
    everywhere else. With ``film_weights`` (one per training film; batches then carry each film's
    row as their group code) the loss weighs each film by its own weight instead of its class's."""

    def __init__(self, *args, anchor: float = 0.0, film_weights: np.ndarray | None = None, **kw):
        super().__init__(*args, **kw)
        self.anchor = anchor
        self._start = [p.detach().clone() for p in self.model.parameters()] if anchor > 0 else []
        w = torch.as_tensor(film_weights, dtype=torch.float32) if film_weights is not None else None
        self.register_buffer("film_weights", w, persistent=False)

    def training_step(self, batch, batch_idx):
        if self.film_weights is None:
            loss = super().training_step(batch, batch_idx)
        else:  # F.cross_entropy's weighted mean, with a weight per film
            x, y, rows = batch
            per_film = F.cross_entropy(self(x), y, reduction="none", label_smoothing=self.hparams.label_smoothing)
            w = self.film_weights[rows[:, 0]]
            loss = (w * per_film).sum() / w.sum()
            self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(y))
        if self.anchor > 0:
            drift = sum(((p - p0.to(p.device)) ** 2).sum() for p, p0 in zip(self.model.parameters(), self._start))
            loss = loss + self.anchor * drift
        return loss


def n_replay(settings: AdaptSettings, n_site: int) -> int:
    """Replayed films for ``n_site`` site films: ``replay`` at most, ``replay_ratio`` per site film.

    Why a ratio: replay is there so the fine-tune does not forget; 15 site films (5 patients per
    label) take a few dozen steps that need far less of it than 200 do, and 800 replayed films
    would drown them (and cost the time of a full fit on each step of a learning curve).
    """
    return int(min(settings.replay, round(settings.replay_ratio * n_site)))


def replay_rows(n_available: int, n: int, seed: int) -> np.ndarray:
    """``n`` of the base's training films (all when fewer), drawn once per seed."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_available, size=min(n, n_available), replace=False))


def site_films_alike(class_weighted: np.ndarray, n_replay: int) -> np.ndarray:
    """Film weights (replayed films first, then site films) for ``site_weights="films"``.

    Replayed films keep their class weight (the base's balance). The site films share the same
    total as with class weights, but alike: the site's own label mix then counts. Why try it: on
    site/ the class weights gave a site viral film 1.7x the weight of a site normal one (the replay
    is rich in normals), and every normal film the fine-tune still missed was called viral. With
    lr 3e-4 it helped on one set of folds (normals 92.9 -> 94.6%) but not on others; an option.
    """
    w = np.asarray(class_weighted, dtype=np.float64).copy()
    site = w[n_replay:]
    if len(site):
        w[n_replay:] = site.sum() / len(site)
    return w


def fit_adapted(
    sd: SiteData,
    site_rows: np.ndarray | None = None,
    settings: AdaptSettings = AdaptSettings(),
    callbacks: tuple = (),
    progress_bar: bool = False,
) -> torch.nn.Module:
    """A copy of the base network fine-tuned on ``site_rows`` (default: every site film) plus
    ``settings.replay`` of the base's training films; returned in eval mode on the CPU."""
    site_rows = _rows(sd, site_rows)
    if len(site_rows) == 0:
        raise UsageError("no site films to adapt on")
    if settings.site_weights not in SITE_WEIGHTS:
        raise UsageError(f"site_weights must be one of {', '.join(SITE_WEIGHTS)}, got {settings.site_weights!r}")
    quiet_lightning()
    L.seed_everything(settings.seed, workers=True, verbose=False)
    replay = replay_rows(len(sd.base_labels), n_replay(settings, len(site_rows)), settings.seed)
    repeated = np.tile(site_rows, max(1, settings.site_repeats))
    images = np.concatenate([np.asarray(sd.base_images[replay]), sd.site_images[repeated]])
    labels = np.concatenate([sd.base_labels[replay], sd.site_labels[repeated]])
    counts = np.bincount(labels, minlength=len(sd.outputs))
    present = counts > 0
    weights = np.where(present, counts.sum() / (present.sum() * np.maximum(counts, 1)), 0.0)
    film_weights = site_films_alike(weights[labels], len(replay)) if settings.site_weights == "films" else None
    model = copy.deepcopy(sd.base.model).train()
    module = AnchoredClassifier(
        model,
        sd.outputs,
        sd.base.preprocessing.to_dict(),
        weights.tolist() if film_weights is None else None,
        lr=settings.lr,
        warmup_epochs=min(1.0, settings.epochs / 4),
        augment=sd.augment,
        n_report=len(sd.base.classes),
        anchor=settings.anchor,
        film_weights=film_weights,
    )
    rows = None if film_weights is None else np.arange(len(labels))[:, None]  # each film's row, to look up its weight
    dm = CxrDataModule(
        images, labels, np.arange(len(labels)), np.arange(0), settings.batch_size, seed=settings.seed, groups=rows
    )
    precision, _ = training_precision(settings.precision, cuda=False)
    trainer = L.Trainer(
        max_epochs=settings.epochs,
        accelerator="cpu",
        devices=1,
        precision=precision,
        callbacks=list(callbacks),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=progress_bar,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        deterministic=True,
    )
    trainer.fit(module, datamodule=dm)
    return model.eval()


def _rows(sd: SiteData, site_rows: np.ndarray | None) -> np.ndarray:
    return np.arange(len(sd.site)) if site_rows is None else np.asarray(site_rows)


def site_record(sd: SiteData, site_rows: np.ndarray | None = None) -> dict:
    """What the card says of the site films used: folder, fingerprint, films and patients per label."""
    rows = _rows(sd, site_rows)
    used = [sd.site.records[i] for i in rows]
    patients = sd.patients
    per_label = Counter(r.label for r in used)
    return {
        "path": str(sd.site.root),
        "fingerprint": sd.site.fingerprint(),
        "films": dict(sorted(per_label.items())),
        "patients": len({patients[i] for i in rows}),
        "label_map": dict(sd.mapping),
        "left_out": dict(sd.left_out),
        "skipped": sd.skipped,
    }


def write_adapted(
    sd: SiteData,
    model: torch.nn.Module,
    out: str | Path,
    settings: AdaptSettings,
    site_rows: np.ndarray | None = None,
    seconds: float | None = None,
) -> ModelCard:
    """Write ``out`` as a run directory: weights, the base's split, and a card with lineage.

    The calibration section is left out: the caller refits it on the base's val split
    (:func:`cxrkit.workflows.adapt.adapt`), as ``cxr train`` does at its end.
    """
    run, base_run = RunDir(out), RunDir(sd.base.run_dir)
    if run.has_started() or run.split.exists():
        raise UsageError(f"{run.root} already holds a run; choose another --out (nothing was overwritten)")
    run.root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run.split, read_text(base_run.split))
    save_weights(run.root, model)
    base_card = read_card(base_run.root)
    card = replace(
        base_card,
        calibration=None,
        onnx=None,
        val_metrics={},
        training={"adapted": True, "epochs_run": settings.epochs, "fit_seconds": round(seconds or 0.0, 1)},
        extra={
            **{k: v for k, v in base_card.extra.items() if k != "adaptation"},
            "adaptation": {
                "base_run": str(base_run.root.resolve()),
                "base_weights_sha256": file_sha256(base_run.weights)[:16],
                "base_created": base_card.created,
                "base_adaptation": base_card.extra.get("adaptation"),  # lineage of a twice-adapted run
                "site": site_record(sd, site_rows),
                "settings": settings.to_dict(),
                "replayed_films": int(min(n_replay(settings, len(_rows(sd, site_rows))), len(sd.base_labels))),
                "method": "fine-tune on site films + replay of the base's training split"
                + (f" + L2-SP toward the base weights ({settings.anchor:g})" if settings.anchor > 0 else "")
                + (", site films weighted alike" if settings.site_weights == "films" else ""),
            },
        },
    )
    write_card(run.root, card)
    return read_card(run.root)


def adapt_run(
    base_run: str | Path,
    site: str | Path,
    out: str | Path,
    settings: AdaptSettings = AdaptSettings(),
    workers: int = 2,
    cache_dir: str | Path | None = None,
    callbacks: tuple = (),
    progress_bar: bool = False,
    on_stage: Callable[[str], None] = lambda m: None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[ModelCard, SiteData]:
    """Load, fit on every site film and write ``out`` (uncalibrated; see :func:`write_adapted`)."""
    sd = load_site(base_run, site, settings.label_map, workers, cache_dir, progress, on_stage)
    for label, to in sd.mapping.items():
        if label != to:
            on_stage(f"site label {label} trains the base's output {to}")
    for label, n in sd.left_out.items():
        on_stage(f"left out: {n} film(s) labeled {label} (no output of the base; --map {label}=CLASS to use them)")
    if sd.skipped:
        on_stage(f"{len(sd.skipped)} unreadable site file(s) skipped, listed in the card: {sd.skipped[0]['path']} ...")
    if len(set(sd.patients)) < 2:
        on_stage("warning: one site patient; the adaptation cannot be measured (use cxr adapt --folds on more)")
    on_stage(
        f"fine-tuning {sd.base.card.model.name} on {len(sd.site)} site film(s) + "
        f"{min(n_replay(settings, len(sd.site)), len(sd.base_labels))} replayed training films, "
        f"{settings.epochs} epochs"
    )
    start = time.perf_counter()
    model = fit_adapted(sd, None, settings, callbacks, progress_bar)
    return write_adapted(sd, model, out, settings, None, time.perf_counter() - start), sd
