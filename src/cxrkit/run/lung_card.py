"""The lung run directory: ``lung_card.json`` + ``model.safetensors`` (+ ``last.pt`` to resume).

It lives in the run-directory layer with the classifier's card (:mod:`cxrkit.run.card`) and
needs no torch to import (weights go through lazy imports). Every file is written atomically
(temporary file + rename) and weights are read with safetensors, so loading never runs pickled
code; the resume state is read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from .._io import atomic_write_bytes, atomic_write_json
from .._meta import RESEARCH_NOTICE
from ..errors import CxrkitError

CARD = "lung_card.json"
WEIGHTS = "model.safetensors"
RESUME = "last.pt"
KIND = "cxrkit-lung-segmenter"


class LungRunError(CxrkitError, ValueError):
    """A folder that is not a usable lung run; the message names the file."""


def write_card(run_dir: str | Path, card: dict) -> Path:
    card = {"kind": KIND, "notice": RESEARCH_NOTICE, **card}
    return atomic_write_json(Path(run_dir) / CARD, card)


def read_card(run_dir: str | Path) -> dict:
    path = Path(run_dir) / CARD
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise LungRunError(f"{path}: not found; is {run_dir} a run of 'cxr lungs train'?") from exc
    except json.JSONDecodeError as exc:
        raise LungRunError(f"{path}: not valid JSON ({exc})") from exc
    if card.get("kind") != KIND:
        raise LungRunError(f"{path}: kind is {card.get('kind')!r}, not {KIND!r}")
    return card


def save_weights(run_dir: str | Path, state_dict) -> Path:
    import safetensors.torch

    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    return atomic_write_bytes(Path(run_dir) / WEIGHTS, safetensors.torch.save(tensors))


def load_weights(run_dir: str | Path) -> dict:
    import safetensors.torch

    path = Path(run_dir) / WEIGHTS
    if not path.is_file():
        raise LungRunError(f"{path}: not found; the run did not finish an epoch")
    return safetensors.torch.load_file(str(path))


def save_resume(run_dir: str | Path, state: dict) -> Path:
    import torch

    buf = io.BytesIO()
    torch.save(state, buf)
    return atomic_write_bytes(Path(run_dir) / RESUME, buf.getvalue())


def load_resume(run_dir: str | Path) -> dict | None:
    import torch

    path = Path(run_dir) / RESUME
    return torch.load(path, map_location="cpu", weights_only=True) if path.is_file() else None
