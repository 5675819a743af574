"""Rebuild a trained network from a run directory (weights from safetensors only)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from .._io import atomic_write_bytes
from ..data.transforms import Preprocessing
from ..run import ModelCard, RunDir, RunError, read_card
from .factory import build_classifier


@dataclass
class LoadedRun:
    run_dir: Path
    model: torch.nn.Module | None  # None when loaded without weights (the ONNX backend)
    card: ModelCard
    classes: list[str]
    preprocessing: Preprocessing
    # outputs after ``classes`` (card ``model.aux_outputs``): summed into "other abnormal"
    aux_classes: list[str] = field(default_factory=list)


def preprocessing_of(card: ModelCard) -> Preprocessing:
    return Preprocessing.from_dict(card.preprocessing.to_dict())


def load_run(run_dir: str | Path, device: str | torch.device = "cpu", with_model: bool = True) -> LoadedRun:
    """The run's model in eval mode on ``device``, its validated card and preprocessing.

    ``with_model=False`` reads the card alone (no network is built): the ONNX backend's path.
    """
    run = RunDir(run_dir)
    card = read_card(run.root)
    if not with_model:
        return LoadedRun(run.root, None, card, list(card.classes), preprocessing_of(card), card.aux_outputs)
    if not run.weights.is_file():
        raise RunError(
            f"{run.root}: no {run.weights.name}; the run did not finish (resume it with "
            f"`cxr train --resume {run.root}`)"
        )
    n_out = len(card.classes) + len(card.aux_outputs)
    model, _ = build_classifier(card.model.name, n_out, in_chans=card.model.in_chans, pretrained=False)
    try:
        state = load_file(str(run.weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise RunError(
            f"{run.weights}: not readable safetensors ({exc}); the file is truncated or damaged "
            "(retrain, or restore it from a backup)"
        ) from None
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, OSError) as exc:
        raise RunError(f"{run.weights}: weights do not fit model {card.model.name} ({exc})") from None
    model.eval().to(device)
    return LoadedRun(run.root, model, card, list(card.classes), preprocessing_of(card), card.aux_outputs)


def keep_outputs(model: torch.nn.Module, keep: list[int]) -> None:
    """Keep only the outputs ``keep`` of the classifier's linear head, in place (the rows of its
    weight and bias): a trained output that must not be shipped is removed before saving."""
    head = model.get_classifier()
    if not isinstance(head, torch.nn.Linear):
        raise TypeError(f"{type(model).__name__}: its head is a {type(head).__name__}, not a linear layer")
    with torch.no_grad():
        head.weight = torch.nn.Parameter(head.weight[keep].clone())
        if head.bias is not None:
            head.bias = torch.nn.Parameter(head.bias[keep].clone())
    head.out_features = len(keep)
    if hasattr(model, "num_classes"):
        model.num_classes = len(keep)


def save_weights(run_dir: str | Path, model: torch.nn.Module) -> Path:
    """Write ``model.safetensors`` atomically (contiguous CPU tensors, no shared storage)."""
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    return atomic_write_bytes(RunDir(run_dir).weights, save(state, metadata={"format": "pt"}))
