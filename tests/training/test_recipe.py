"""The recipe's small parts: which parameters train (freeze.py) and the warm-up + cosine schedule."""

from __future__ import annotations

import math

import pytest
import timm
from torch import nn

import cxrkit.models  # noqa: F401  (registers resdense_*)
from cxrkit.errors import UsageError
from cxrkit.training.freeze import apply_finetune, parse_finetune
from cxrkit.training.module import warmup_cosine


def _trainable(model: nn.Module) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("name", ["resdense_tiny", "tf_efficientnet_lite0"])
def test_last_n_trains_the_head_and_exactly_n_more_blocks(name):
    model = timm.create_model(name, num_classes=3, in_chans=1)
    head = {f"{n}" for n, _ in model.named_parameters() if n.startswith(("head", "classifier"))}
    n_all = sum(p.numel() for p in model.parameters())
    counts = []
    for spec in ("head", "last-1", "last-2", "full"):
        n = apply_finetune(model, spec)
        assert n == sum(p.numel() for p in model.parameters() if p.requires_grad)
        assert head <= _trainable(model), f"{spec}: the head must always train"
        counts.append(n)
    assert counts[0] < counts[1] < counts[2] < counts[3] == n_all
    apply_finetune(model, "last-1")
    last1 = _trainable(model)
    apply_finetune(model, "last-2")
    assert last1 < _trainable(model)  # last-2 adds a block before last-1's, keeps last-1's


def test_last_n_larger_than_the_model_trains_everything():
    model = timm.create_model("resdense_tiny", num_classes=3, in_chans=1)
    assert apply_finetune(model, "last-99") == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("bad", ["last", "last-x", "half", "", "last--1"])
def test_bad_finetune_specs_say_what_works(bad):
    with pytest.raises(UsageError, match="full, head or last-N"):
        parse_finetune(bad)


def test_warmup_then_cosine_to_zero():
    warmup, total = 10, 110
    f = [warmup_cosine(s, warmup, total) for s in range(total + 1)]
    assert f[0] == pytest.approx(0.1) and f[warmup - 1] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(f[: warmup - 1], f[1:warmup]))  # rises linearly
    assert f[warmup] == pytest.approx(1.0)
    assert f[warmup + 50] == pytest.approx(0.5, abs=1e-9)  # half way through the cosine
    assert all(a >= b for a, b in zip(f[warmup:], f[warmup + 1 :]))  # never rises again
    assert f[total] == pytest.approx(0.0, abs=1e-12)
    assert warmup_cosine(0, 0, 100) == pytest.approx(1.0)  # no warm-up: start at the peak
    assert math.isfinite(warmup_cosine(5, 5, 5))  # degenerate totals do not divide by zero
