"""The run directory's declared layout: every file a step writes or reads, named once.

A run directory is the contract between steps (train -> evaluate / explain / predict / export
/ serve). Like a MONAI bundle it is self-describing: ``model_card.json`` says what the model is
and how to feed it; nothing outside the folder is needed to load it.

::

    RUN/
      config.yaml          resolved TrainConfig (defaults < --config file < flags)
      split.csv            path,label,patient_id,split of every image used
      skipped.csv          path,reason of every file training left out (unreadable, outside the root, ...)
      model.safetensors    weights only (loading never runs pickled code)
      model_card.json      ModelCard: classes, preprocessing, backbone, data, split, metrics, ...
      model.onnx           optional, `cxr export --onnx` (recorded in card.onnx)
      lungs/               with roi: lungs, the lung model the ROI step runs (card: lung_run "lungs")
      checkpoints/         best.ckpt, last.ckpt (Lightning; read with weights_only=True)
      logs/version_N/      CSV (+ TensorBoard) metrics
      evaluation/          metrics.json, plots, report.html (`cxr evaluate`)
      audit/               audit.json (`cxr audit`)
      explain/             CAM overlays and summaries (`cxr explain --summary`)

An ensemble directory (`cxr ensemble create`) has no weights: ``ensemble.json`` lists the
member runs, ``model_card.json`` is marked ``ensemble`` and ``split.csv`` is the members' one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CONFIG_FILE = "config.yaml"
SPLIT_FILE = "split.csv"
SKIPPED_FILE = "skipped.csv"
MODEL_FILE = "model.safetensors"
CARD_FILE = "model_card.json"
ONNX_FILE = "model.onnx"
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
BEST_CHECKPOINT = "best.ckpt"
LOG_DIR = "logs"
EVALUATION_DIR = "evaluation"
METRICS_FILE = "metrics.json"
AUDIT_DIR = "audit"
AUDIT_FILE = "audit.json"
EXPLAIN_DIR = "explain"
ENSEMBLE_FILE = "ensemble.json"


@dataclass(frozen=True)
class RunDir:
    """Paths inside one run directory (no I/O on construction)."""

    root: Path

    def __init__(self, root: str | Path):
        object.__setattr__(self, "root", Path(root))

    def __fspath__(self) -> str:
        return str(self.root)

    @property
    def config(self) -> Path:
        return self.root / CONFIG_FILE

    def reads_outside_paths(self) -> bool:
        """Whether the run was trained with ``allow_outside_paths`` (its manifest lists files outside
        its folder): re-reading its data for evaluation must allow the same, or every row is refused."""
        import yaml

        try:
            config = yaml.safe_load(self.config.read_text()) or {}
        except (OSError, yaml.YAMLError):
            return False
        return isinstance(config, dict) and config.get("allow_outside_paths") is True

    @property
    def split(self) -> Path:
        return self.root / SPLIT_FILE

    @property
    def skipped(self) -> Path:
        return self.root / SKIPPED_FILE

    @property
    def weights(self) -> Path:
        return self.root / MODEL_FILE

    @property
    def card(self) -> Path:
        return self.root / CARD_FILE

    @property
    def onnx(self) -> Path:
        return self.root / ONNX_FILE

    @property
    def ensemble(self) -> Path:
        return self.root / ENSEMBLE_FILE

    @property
    def checkpoints(self) -> Path:
        return self.root / CHECKPOINT_DIR

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / LAST_CHECKPOINT

    @property
    def evaluation(self) -> Path:
        return self.root / EVALUATION_DIR

    @property
    def metrics(self) -> Path:
        return self.evaluation / METRICS_FILE

    @property
    def audit(self) -> Path:
        return self.root / AUDIT_DIR

    @property
    def explain(self) -> Path:
        return self.root / EXPLAIN_DIR

    def is_ensemble(self) -> bool:
        """An ensemble directory: members in ensemble.json, no weights of its own."""
        return self.ensemble.is_file()

    def is_finished(self) -> bool:
        """A card and weights exist: training finished and wrote its results."""
        return self.card.is_file() and self.weights.is_file()

    def has_started(self) -> bool:
        """Anything of a run is here (a new run must not overwrite it)."""
        return (
            self.card.exists()
            or self.weights.exists()
            or (self.checkpoints.is_dir() and any(self.checkpoints.iterdir()))
        )
