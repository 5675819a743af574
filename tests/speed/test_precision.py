"""--precision auto|32|bf16: detection from /proc/cpuinfo flags and the autocast it gives."""

from __future__ import annotations

import pytest
import torch

from cxrkit._precision import autocast, cpu_flags, host_cpu, native_bf16, resolve_precision
from cxrkit.errors import UsageError

ZEN4 = frozenset({"avx2", "avx512f", "avx512_bf16", "avx512_vnni"})
SAPPHIRE_RAPIDS = frozenset({"avx2", "avx512f", "amx_tile", "amx_bf16"})
AVX2_ONLY = frozenset({"avx2", "fma"})


def test_flags_are_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: X\nflags\t\t: fpu avx2 avx512_bf16\n\nprocessor\t: 1\n")
    assert cpu_flags(info) == {"fpu", "avx2", "avx512_bf16"}
    assert native_bf16("cpu", cpu_flags(info))
    assert cpu_flags(tmp_path / "missing") == frozenset()
    host = host_cpu(info)
    assert host["cpu_model"] == "X" and host["cpu_flags"] == ["avx2", "avx512_bf16"] and host["cpu_count"] >= 1


@pytest.mark.parametrize("flags", [ZEN4, SAPPHIRE_RAPIDS])
def test_auto_is_bf16_where_native(flags):
    assert resolve_precision("auto", "cpu", flags) == ("bf16", "")
    assert resolve_precision("bf16", "cpu", flags) == ("bf16", "")


def test_auto_falls_back_to_fp32_and_says_why():
    name, note = resolve_precision("auto", "cpu", AVX2_ONLY)
    assert name == "32" and "avx512_bf16" in note and "fp32" in note
    name, note = resolve_precision("bf16", "cpu", AVX2_ONLY)  # asked for: honoured, with a warning
    assert name == "bf16" and "emulated" in note
    assert resolve_precision("32", "cpu", ZEN4) == ("32", "")


def test_unknown_precision_is_a_usage_error():
    with pytest.raises(UsageError, match="--precision must be one of auto, 32, bf16"):
        resolve_precision("fp16", "cpu")
    with pytest.raises(UsageError):
        autocast("auto")


def test_autocast_runs_the_forward_in_bf16_and_32_leaves_it_alone():
    layer, x = torch.nn.Linear(8, 3), torch.randn(4, 8)
    with torch.inference_mode():
        with autocast("bf16"):
            assert layer(x).dtype == torch.bfloat16
        with autocast("32"):
            assert layer(x).dtype == torch.float32


def test_training_speaks_the_inference_precision_vocabulary():
    from cxrkit._precision import training_precision

    assert training_precision("bf16", cuda=True) == ("bf16-mixed", "")
    assert training_precision("32", cuda=True) == ("32-true", "")
    assert training_precision(None, cuda=False) == ("32-true", "")  # auto on a CPU: fp32
    assert training_precision("auto", cuda=True, cuda_bf16=True)[0] == "bf16-mixed"
    assert training_precision("auto", cuda=True, cuda_bf16=False)[0] == "16-mixed"
    old, note = training_precision("bf16-mixed", cuda=True)
    assert old == "bf16-mixed" and "deprecated: use --precision bf16" in note
    with pytest.raises(UsageError, match="--precision must be one of auto, 32, bf16, 16"):
        training_precision("fp8", cuda=False)
