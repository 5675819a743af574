"""Inference precision: ``auto`` runs bf16 where the hardware computes it natively, else fp32.

bf16 autocast made lite0 inference ~1.7x faster on a Zen 4 CPU with AVX-512 BF16 (issue 15:
fp32 177-196 vs bf16 307-334 img/s, model only). Without native bf16 (AVX2 only, e.g. this
project's current 2-core host), torch emulates it and bf16 is far *slower* (measured there,
lite0 batch 32: 0.3-1.9 vs 26-27 img/s fp32), so ``auto`` picks fp32 there and says why.
Native means, on a CPU, the ``avx512_bf16`` or ``amx_bf16`` flag in /proc/cpuinfo;
on CUDA, ``torch.cuda.is_bf16_supported()``.

No torch at import: the CLI's ``--help`` imports this.
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

from .errors import UsageError

PRECISIONS = ("auto", "32", "bf16")
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.lru_cache(maxsize=4)
def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> frozenset[str]:
    """The first processor's flags in ``cpuinfo`` (empty where the file is missing: not Linux)."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):  # x86 / arm64
            return frozenset(value.split())
    return frozenset()


# The CPU features that decide which kernels run (and so the speed and even the rounding).
HOST_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "amx_tile")


def host_cpu(cpuinfo: str | Path = "/proc/cpuinfo") -> dict:
    """The CPU a number was made on: its model name, the HOST_FLAGS it has and the core count.

    Hosts differ (2-core AVX2, AVX-512 BF16, AMX) and speeds and even the last bits of a result
    follow the CPU, so model cards, site reports and bench results all record this one dict.
    """
    import os
    import platform

    model = platform.processor() or platform.machine() or "unknown"
    try:
        for line in Path(cpuinfo).read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    have = cpu_flags(cpuinfo)
    return {"cpu_model": model, "cpu_flags": [f for f in HOST_FLAGS if f in have], "cpu_count": os.cpu_count()}


def native_bf16(device: str = "cpu", flags: frozenset[str] | None = None) -> bool:
    """Whether ``device`` ("cpu", "cuda", "cuda:1", ...) computes bf16 natively."""
    kind = str(device).split(":")[0]
    if kind == "cuda":
        import torch

        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if kind != "cpu":
        return False
    return any(f in (cpu_flags() if flags is None else flags) for f in BF16_CPU_FLAGS)


def resolve_precision(requested: str, device: str = "cpu", flags: frozenset[str] | None = None) -> tuple[str, str]:
    """``("32" | "bf16", note)``: what to run for ``--precision requested`` on ``device``.

    ``auto`` gives bf16 on native hardware, else fp32 with a note saying why (print it once).
    An explicit ``bf16`` is honoured, with a note when it is emulated (slower than fp32).
    ``note`` is "" when there is nothing to say. Anything else raises :class:`UsageError`.
    """
    if requested not in PRECISIONS:
        raise UsageError(f"--precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    if requested == "32":
        return "32", ""
    native = native_bf16(device, flags)
    what = f"{device} has no native bf16" + (
        f" (no {' / '.join(BF16_CPU_FLAGS)} in /proc/cpuinfo)" if str(device).startswith("cpu") else ""
    )
    if requested == "bf16":
        return "bf16", "" if native else f"{what}: bf16 runs emulated, >10x slower than fp32"
    return ("bf16", "") if native else ("32", f"{what}: running fp32 (--precision auto)")


TRAINING_PRECISIONS = {"32": "32-true", "bf16": "bf16-mixed", "16": "16-mixed"}  # ours -> Lightning's


def training_precision(requested: str | None, cuda: bool, cuda_bf16: bool = False) -> tuple[str, str]:
    """(Lightning's precision string, note) for ``cxr train --precision requested``.

    One vocabulary with inference: ``auto``, ``32``, ``bf16`` (and ``16``: fp16 mixed, GPU only).
    ``auto`` (or None) trains mixed precision on a GPU (bf16 where supported, else fp16) and fp32
    on a CPU, where emulated bf16 autocast slows training down. Lightning's own names
    (``bf16-mixed``, ``32-true``...) still work, with a note naming ours (they will go).
    """
    requested = "auto" if requested in (None, "") else str(requested)
    if requested == "auto":
        return (("bf16-mixed" if cuda_bf16 else "16-mixed") if cuda else "32-true"), ""
    if requested in TRAINING_PRECISIONS:
        return TRAINING_PRECISIONS[requested], ""
    ours = {v: k for k, v in TRAINING_PRECISIONS.items()}.get(requested)
    if ours is None:
        choices = ", ".join(["auto", *TRAINING_PRECISIONS])
        raise UsageError(f"--precision must be one of {choices}, got {requested!r}")
    return requested, f"--precision {requested} is Lightning's name and is deprecated: use --precision {ours}"


def autocast(precision: str, device: str = "cpu"):
    """A context manager running the model's forward in ``precision`` ("32": no change).

    Wrap only the forward pass and cast the logits back with ``.float()``: softmax and
    calibration stay fp32. Weights stay fp32 (autocast casts per op), so one model serves both.
    """
    if precision == "32":
        return contextlib.nullcontext()
    if precision != "bf16":
        raise UsageError(f"precision must be '32' or 'bf16' after resolve_precision, got {precision!r}")
    import torch

    return torch.autocast(str(device).split(":")[0], dtype=torch.bfloat16)
