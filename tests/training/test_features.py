"""training.features: the fast linear probe on frozen features computed once."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cxrkit.inference import Predictor
from cxrkit.inference.splits import predict_split
from cxrkit.models import build_classifier, load_run
from cxrkit.run import read_card
from cxrkit.training import train


def test_head_trained_on_cached_features_is_saved_in_the_full_model(blob_dataset, tiny_config, tmp_path):
    cfg = tiny_config(
        blob_dataset, tmp_path / "run", tmp_path / "cache", finetune="head", cache_features=True, epochs=3, lr=1e-2
    )
    result = train(cfg, progress_bar=False)
    card = read_card(result.run_dir)
    assert card.model.cache_features and card.model.finetune == "head"

    # the backbone is the seeded initial one, untouched; the head is not
    torch.manual_seed(cfg.seed)
    initial, _ = build_classifier(cfg.model, 3, in_chans=1, pretrained=False)
    trained = load_run(result.run_dir).model.state_dict()
    start = initial.state_dict()
    head_keys = {k for k in trained if k.startswith("head.") or k.startswith("fc.") or k.startswith("classifier.")}
    assert head_keys, sorted(trained)[-4:]
    for k in trained:
        if k in head_keys:
            assert not torch.equal(trained[k], start[k]), k
        elif trained[k].is_floating_point():
            torch.testing.assert_close(trained[k], start[k], msg=k)

    # the val metrics of the feature run are those of the saved full model on the val images
    preds = predict_split(
        Predictor.from_run(result.run_dir, precision="32"), split="val", workers=1, cache_dir=tmp_path / "cache"
    )
    acc = float((preds.logits.argmax(1) == preds.y_true).mean())
    assert card.val_metrics["val/acc"] == pytest.approx(acc, abs=1e-6)


def test_cached_features_need_the_head_only_mode(blob_dataset, tiny_config, tmp_path):
    cfg = tiny_config(blob_dataset, tmp_path / "run", tmp_path / "cache", cache_features=True)
    with pytest.raises(ValueError, match="finetune='head'"):
        train(cfg, progress_bar=False)
    assert not (tmp_path / "run").exists()


def test_backbone_features_keep_row_order(tiny_run):
    from cxrkit.models import backbone_features

    run = load_run(tiny_run.run_dir)
    images = np.random.default_rng(0).integers(0, 256, (10, 64, 64), dtype=np.uint8)
    rows = np.array([7, 2, 9, 0])
    feats = backbone_features(run.model, images, run.preprocessing, rows, batch_size=3)
    one_by_one = np.concatenate([backbone_features(run.model, images, run.preprocessing, np.array([r])) for r in rows])
    np.testing.assert_allclose(feats, one_by_one, atol=1e-5)
    assert feats.shape[0] == 4 and not np.allclose(feats[0], feats[1])
