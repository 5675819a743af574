"""A run directory is the unit every later step starts from.

It holds ``config.yaml`` (the resolved training config), ``split.csv``,
``model.safetensors`` (weights only: loading never runs pickled code) and
``model_card.json`` (classes, preprocessing, backbone, weights source, data fingerprint,
split hash, val metrics, versions, git commit). :func:`load_run` needs nothing else.
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import torch
from safetensors.torch import load_file, save

from .. import RESEARCH_NOTICE, __version__
from .._io import atomic_write_bytes, atomic_write_json
from ..data.dataset import CxrDataset
from ..data.transforms import Preprocessing
from ..errors import CxrkitError

CARD_FORMAT = "cxrkit-model-card/1"
MODEL_FILE = "model.safetensors"
CARD_FILE = "model_card.json"
SPLIT_FILE = "split.csv"
VERSIONED_PACKAGES = ("torch", "torchvision", "timm", "lightning", "torchmetrics", "numpy", "pillow",
                      "pydicom", "safetensors")


class RunError(CxrkitError, ValueError):
    """A run directory that is missing files or does not describe a loadable model."""


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
        res = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() or None if res.returncode == 0 else None


def data_fingerprint(dataset: CxrDataset) -> str:
    """sha256 over (relative path, label, file size) of every record: cheap, order-independent."""
    h = hashlib.sha256()
    for line in sorted(f"{dataset.relpath(r)}\0{r.label}\0{r.path.stat().st_size}" for r in dataset.records):
        h.update(line.encode() + b"\n")
    return h.hexdigest()[:16]


def save_weights(run_dir: Path, model: torch.nn.Module) -> Path:
    """Write ``model.safetensors`` atomically (contiguous CPU tensors, no shared storage)."""
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    return atomic_write_bytes(run_dir / MODEL_FILE, save(state, metadata={"format": "pt"}))


def write_card(run_dir: Path, card: dict) -> Path:
    card = {"format": CARD_FORMAT, "notice": RESEARCH_NOTICE,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "versions": package_versions(), "git_commit": git_commit(), **card}
    return atomic_write_json(run_dir / CARD_FILE, card)


def read_card(run_dir: str | Path) -> dict:
    path = Path(run_dir) / CARD_FILE
    if not path.is_file():
        raise RunError(f"{run_dir}: not a run directory (no {CARD_FILE}); train one with `cxr train`")
    try:
        card = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise RunError(f"{path}: not valid JSON ({exc})") from None
    if card.get("format") != CARD_FORMAT:
        raise RunError(f"{path}: unknown model card format {card.get('format')!r}")
    return card


@dataclass
class LoadedRun:
    run_dir: Path
    model: torch.nn.Module
    card: dict
    classes: list[str]
    preprocessing: Preprocessing


def load_run(run_dir: str | Path, device: str | torch.device = "cpu") -> LoadedRun:
    """Rebuild the trained model from a run directory (weights from safetensors only)."""
    from ..models import create_model

    run_dir = Path(run_dir)
    card = read_card(run_dir)
    weights = run_dir / MODEL_FILE
    if not weights.is_file():
        raise RunError(f"{run_dir}: no {MODEL_FILE}; the run did not finish (resume it with "
                       f"`cxr train --resume {run_dir}`)")
    m = card["model"]
    model, _ = create_model(m["name"], len(card["classes"]), in_chans=m["in_chans"], pretrained=False)
    try:
        model.load_state_dict(load_file(str(weights)), strict=True)
    except (RuntimeError, OSError) as exc:
        raise RunError(f"{weights}: weights do not fit model {m['name']} ({exc})") from None
    model.eval().to(device)
    return LoadedRun(run_dir, model, card, list(card["classes"]),
                     Preprocessing.from_dict(card["preprocessing"]))
