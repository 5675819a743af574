"""Which process this is in a distributed launch, readable before Lightning sets anything up,
and whether an ``--accelerator`` choice means the CUDA GPU.

torchrun sets ``RANK``/``LOCAL_RANK``/``GROUP_RANK``, Lightning's own launcher ``LOCAL_RANK``
and ``NODE_RANK`` in the processes it starts, SLURM's srun ``SLURM_PROCID``. A process is the
global rank 0 when none of them says otherwise; only that process writes shared files.
"""

from __future__ import annotations

import os

RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID")


def is_launch_rank_zero() -> bool:
    """True unless a launcher marked this process as another rank than global rank 0."""
    return all(os.environ.get(name, "0").strip() in ("", "0") for name in RANK_VARIABLES)


def cuda_wanted(accelerator: str) -> bool:
    """True when ``accelerator`` (auto, cpu, gpu, cuda) asks for the GPU and PyTorch sees one."""
    import torch

    return accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
