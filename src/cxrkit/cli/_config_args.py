"""Command-line flags generated from a config dataclass's fields (``TrainConfig``).

Why a small generator and not jsonargparse / LightningCLI: both import their whole stack (and
LightningCLI imports Lightning and torch) before ``--help`` can print, while ``cxr --help`` must
stay under a second; and our config is one flat dataclass, which ~80 lines cover. Every flag's
default is ``SUPPRESS``, so the namespace holds only what the user typed: that is how a
``--config FILE`` and flags combine (flags win) without restating any default.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Iterable

from ..errors import UsageError


def _parse_bool(text: str) -> bool:
    t = text.strip().lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _parse_devices(text: str) -> str | int:
    return int(text) if text.isdigit() else text


def parse_fractions(text: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(x) for x in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3:
        raise UsageError(f"--fractions must be three numbers like 0.7,0.15,0.15, got {text!r}")
    return parts  # type: ignore[return-value]


def _base_type(tp):
    """``int | None`` -> int; ``str | int`` -> (str, int); list[str] -> list."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = tuple(a for a in typing.get_args(tp) if a is not type(None))
        return _base_type(args[0]) if len(args) == 1 else args
    return origin or tp


def _default_text(f: dataclasses.Field) -> str:
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return ""
    d = f.default
    if d is dataclasses.MISSING or d is None:
        return ""
    values = f.metadata.get("values")
    if values:
        d = next((k for k, v in values.items() if v == d), d)
    elif isinstance(d, bool):
        return " (default: on)" if d else " (default: off)"
    elif isinstance(d, tuple):
        d = ",".join(str(x) for x in d)
    return f" (default: {d})"


def add_config_arguments(
    parser: argparse.ArgumentParser, config_cls, skip: Iterable[str] = (), defaults: dict | None = None
) -> None:
    """One ``--flag`` per field of ``config_cls`` (help from ``metadata['help']``), grouped.

    ``defaults`` overrides the shown default of a field (e.g. the demo's shorter epochs); it is
    applied by the caller through :func:`cxrkit.training.config.resolve_config`'s ``base``.
    """
    hints = typing.get_type_hints(config_cls)
    groups: dict[str, argparse._ArgumentGroup] = {}
    defaults = defaults or {}
    for f in dataclasses.fields(config_cls):
        if f.name in skip or f.metadata.get("cli") is False:
            continue
        group_name = f.metadata.get("group", "options")
        group = groups.get(group_name) or groups.setdefault(group_name, parser.add_argument_group(group_name))
        flag = "--" + f.name.replace("_", "-")
        shown = f" (default: {defaults[f.name]})" if f.name in defaults else _default_text(f)
        help_text = f.metadata.get("help", "") + shown
        kw: dict = dict(dest=f.name, default=argparse.SUPPRESS, help=help_text)
        tp = _base_type(hints[f.name])
        values = f.metadata.get("values")
        if values:
            group.add_argument(flag, choices=list(values), type=str, **kw)
        elif tp is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        elif f.name == "fractions":
            group.add_argument(flag, type=parse_fractions, metavar="TRAIN,VAL,TEST", **kw)
        elif tp is list or f.metadata.get("nargs"):
            group.add_argument(flag, nargs="+", metavar=f.metadata.get("metavar", f.name.upper().rstrip("S")), **kw)
        elif isinstance(tp, tuple):  # str | int: devices
            group.add_argument(flag, type=_parse_devices, **kw)
        else:
            group.add_argument(flag, type=tp, choices=f.metadata.get("choices"), **kw)


def config_values(args: argparse.Namespace, config_cls) -> dict:
    """The fields the user gave on the command line (and only those), as config values."""
    out = {}
    for f in dataclasses.fields(config_cls):
        if f.name in vars(args):
            value = getattr(args, f.name)
            values = f.metadata.get("values")
            out[f.name] = values[value] if values else value
    return out
