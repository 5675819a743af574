"""Real 2-process DDP training on CPU (gloo), launched the way users launch it."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from cxrkit.inference import Predictor
from cxrkit.inference.splits import predict_split
from cxrkit.run import read_card


@pytest.mark.timeout(300)
def test_two_process_ddp_on_cpu_matches_single_process_metrics(
    blob_writer, tmp_path, multiprocess_env, tiny_train_argv
):
    data = blob_writer(tmp_path / "data", per_class=25)
    out = tmp_path / "run"
    cmd = tiny_train_argv(data, out, tmp_path / "cache", "--input-size", "64", "--batch-size", "8", "--lr", "3e-3")
    cmd += ["--warmup-epochs", "0.5", "--fractions", "0.6,0.2,0.2", "--accelerator", "cpu", "--devices", "2"]
    cmd += ["--strategy", "ddp"]
    proc = subprocess.run(cmd, env=multiprocess_env, capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in proc.stdout + proc.stderr

    # one set of checkpoints and one run directory, written by rank 0
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    card = read_card(out)
    assert card.training["epochs_run"] == 2
    counts = card.data["split_counts"]
    n_val = sum(counts["val"].values())
    assert n_val % 2 == 1  # uneven shards: a padded sampler would count one image twice

    # the val metrics synced over both processes equal those of one process over all of val
    preds = predict_split(Predictor.from_run(out, precision="32"), split="val", workers=1, cache_dir=tmp_path / "cache")
    logits, y = torch.from_numpy(preds.logits), torch.from_numpy(preds.y_true)
    train_counts = np.array([counts["train"][c] for c in card.classes], float)
    weights = torch.tensor(train_counts.sum() / (len(train_counts) * train_counts), dtype=torch.float32)
    loss = F.cross_entropy(logits, y, weight=weights, label_smoothing=0.1).item()
    acc = (logits.argmax(1) == y).float().mean().item()
    assert len(y) == n_val
    assert card.val_metrics["val/acc"] == pytest.approx(acc, abs=1e-6)
    assert card.val_metrics["val/loss"] == pytest.approx(loss, abs=1e-4)
