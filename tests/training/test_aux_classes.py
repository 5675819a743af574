"""Auxiliary classes: trained as extra outputs, saved as an ordinary run of the reported classes."""

import numpy as np
import pytest
from PIL import Image

from cxrkit.data.prepare import prepare
from cxrkit.errors import UsageError


def _with_aux(blob_writer, root, per_class=16):
    blob_writer(root, per_class=per_class)
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[:64, :64]
    (root / "bacterial_pneumonia").mkdir()
    for i in range(per_class):
        img = rng.normal(100, 20, (64, 64)) + 120 * np.exp(-((yy - 48) ** 2 + (xx - 48) ** 2) / 60)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / "bacterial_pneumonia" / f"b_{i:03d}.png")
    return root


def test_main_split_is_unchanged_and_aux_only_trains(blob_writer, tmp_path):
    data = _with_aux(blob_writer, tmp_path / "d")
    cache = tmp_path / "cache"
    plain = prepare(data, "covid,viral_pneumonia,normal", workers=1, cache_dir=cache)
    aux = prepare(data, "covid,viral_pneumonia,normal", aux_classes=["bacteria"], workers=1, cache_dir=cache)
    assert aux.dataset.classes == ("covid", "viral_pneumonia", "normal", "bacterial_pneumonia")
    by_file = {plain.dataset.relpath(r): s for r, s in zip(plain.dataset.records, plain.split.assignment)}
    for rec, s in zip(aux.dataset.records, aux.split.assignment):
        key = aux.dataset.relpath(rec)
        if rec.label == "bacterial_pneumonia":
            assert s == "train"
        else:
            assert s == by_file[key]  # same val and test images as without auxiliary classes
    assert aux.split.stats["auxiliary"] == {"classes": ["bacterial_pneumonia"], "train": 16, "excluded": 0}


def test_aux_class_cannot_also_be_a_class(blob_writer, tmp_path):
    data = _with_aux(blob_writer, tmp_path / "d", per_class=4)
    with pytest.raises(UsageError, match="both as a class and as an auxiliary"):
        prepare(data, "covid,normal", aux_classes=["normal"], workers=1, cache_dir=tmp_path / "c")


@pytest.mark.slow
def test_trained_run_reports_only_the_kept_classes(blob_writer, tiny_config, tmp_path):
    import cxrkit
    from cxrkit.run import read_card
    from cxrkit.training import train

    data = _with_aux(blob_writer, tmp_path / "d")
    result = train(
        tiny_config(
            data, tmp_path / "run", tmp_path / "cache", aux_classes=["bacterial_pneumonia"], epochs=2, augment="robust"
        ),
        progress_bar=False,
    )
    card = read_card(result.run_dir)
    assert card.classes == ["covid", "viral_pneumonia", "normal"]
    assert card.model.extra["aux_classes"] == ["bacterial_pneumonia"]
    assert card.model.extra["aux_train_images"] == {"bacterial_pneumonia": 16}
    predictor = cxrkit.load(result.run_dir)
    probs = predictor.predict_proba([data / "normal" / "normal_000.png", data / "bacterial_pneumonia" / "b_000.png"])
    assert probs.shape == (2, 3) and np.allclose(probs.sum(1), 1, atol=1e-5)


@pytest.mark.slow
def test_an_auxiliary_class_without_images_is_allowed(blob_dataset, tiny_config, tmp_path):
    from cxrkit.run import read_card
    from cxrkit.training import train

    # the blob data has no bacterial pneumonia: the extra output trains to "never" and is dropped
    config = tiny_config(blob_dataset, tmp_path / "run", tmp_path / "cache", aux_classes=["bacteria"], epochs=1)
    card = read_card(train(config, progress_bar=False).run_dir)
    assert card.classes == ["covid", "viral_pneumonia", "normal"]
    assert card.model.extra["aux_train_images"] == {"bacterial_pneumonia": 0}
