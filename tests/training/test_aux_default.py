"""The default auxiliary classes: pneumonia when the data holds such films, else none."""

import numpy as np
from PIL import Image

from cxrkit.training.config import TrainConfig
from cxrkit.training.fit import resolve_aux_classes


def _folders(root, labels):
    for label in labels:
        (root / label).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((16, 16), 40 * i, np.uint8)).save(root / label / f"{label}_{i}.png")
    return root


def test_pneumonia_films_become_an_auxiliary_class_by_default(tmp_path):
    data = _folders(tmp_path / "d", ["covid", "viral_pneumonia", "normal", "pneumonia", "bacterial_pneumonia"])
    assert resolve_aux_classes(TrainConfig(data=str(data), out="x")) == ["pneumonia"]
    assert resolve_aux_classes(TrainConfig(data=str(data), out="x", aux_classes=["none"])) == []
    given = TrainConfig(data=str(data), out="x", aux_classes=["bacterial_pneumonia"])
    assert resolve_aux_classes(given) == ["bacterial_pneumonia"]


def test_data_without_pneumonia_trains_as_before(tmp_path):
    data = _folders(tmp_path / "d", ["covid", "viral_pneumonia", "normal"])
    assert resolve_aux_classes(TrainConfig(data=str(data), out="x")) == []
    assert resolve_aux_classes(TrainConfig(data=str(data), out="x", classes="all")) == []


def test_demo_takes_nih_beside_cxr_when_present(tmp_path, monkeypatch):
    from cxrkit.cli import demo

    monkeypatch.delenv("CXR_DATA", raising=False)
    monkeypatch.setattr(demo, "SHARED_DATA", _folders(tmp_path / "cxr", ["normal"]))
    monkeypatch.setattr(demo, "SHARED_EXTRA", tmp_path / "nih")
    assert demo.find_data(None) == str(tmp_path / "cxr")
    _folders(tmp_path / "nih", ["normal"])
    assert demo.find_data(None) == [str(tmp_path / "cxr"), str(tmp_path / "nih")]
