"""Which parameters train: full fine-tune, linear probe (head only) or the last N blocks."""

from __future__ import annotations

import re

from torch import nn

from ..errors import UsageError


def parse_finetune(spec: str) -> int | None:
    """``"full"`` -> None (everything), ``"head"`` -> 0, ``"last-3"`` -> 3 blocks."""
    if spec == "full":
        return None
    if spec == "head":
        return 0
    m = re.fullmatch(r"last-(\d+)", spec)
    if not m:
        raise UsageError(f"--finetune must be full, head or last-N (e.g. last-2), got {spec!r}")
    return int(m.group(1))


def _ordered_groups(model: nn.Module) -> list[list[nn.Parameter]]:
    """Parameter groups from input to output: timm's ``group_matcher`` when the model has one."""
    if hasattr(model, "group_matcher"):
        from timm.models import group_parameters

        named = dict(model.named_parameters())
        groups = group_parameters(model, model.group_matcher(coarse=True))
        return [[named[n] for n in names] for _, names in sorted(groups.items())]
    return [list(child.parameters()) for child in model.children()]


def apply_finetune(model: nn.Module, spec: str) -> int:
    """Freeze all but the head and the last N blocks; returns the number of trainable params."""
    last_n = parse_finetune(spec)
    for p in model.parameters():
        p.requires_grad = last_n is None
    if last_n is not None:
        head = model.get_classifier() if hasattr(model, "get_classifier") else None
        head_params = {id(p) for p in head.parameters()} if isinstance(head, nn.Module) else set()
        groups = [g for g in _ordered_groups(model) if not head_params.issuperset(id(p) for p in g)]
        for group in groups[max(0, len(groups) - last_n) :] if last_n else []:  # N > blocks: all of them
            for p in group:
                p.requires_grad = True
        for p in model.parameters():
            if id(p) in head_params:
                p.requires_grad = True
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
