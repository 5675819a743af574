"""Fixtures for explain tests: predictors on the trained tiny run and on a random timm net."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def blob_centres(request) -> dict[str, tuple[int, int]]:
    """BLOB_CENTRES of the root conftest (conftest modules cannot be imported by name)."""
    for plugin in request.config.pluginmanager.get_plugins():
        if hasattr(plugin, "BLOB_CENTRES"):
            return plugin.BLOB_CENTRES
    raise LookupError("BLOB_CENTRES not found in tests/conftest.py")


@pytest.fixture(scope="session")
def tiny_predictor(tiny_run):
    """Predictor of the trained resdense_tiny run (64 px, 3 blob classes), in fp32 on every host."""
    from cxrkit.inference.predictor import Predictor

    return Predictor.from_run(tiny_run.run_dir, precision="32")


@pytest.fixture(scope="session")
def lite0_predictor(tiny_predictor):
    """A random-weight tf_efficientnet_lite0 at 64 px behind a Predictor: a timm backbone."""
    import timm

    from cxrkit.inference.predictor import Predictor
    from cxrkit.models import LoadedRun

    model = timm.create_model("tf_efficientnet_lite0", num_classes=3, in_chans=1)
    return Predictor(
        LoadedRun(
            Path("lite0"), model, tiny_predictor.run.card, list(tiny_predictor.classes), tiny_predictor.preprocessing
        ),
        precision="32",
    )


@pytest.fixture(scope="session")
def blob_images(blob_dataset, tiny_predictor) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 model inputs (12, 64, 64), class index per image): 4 blob images per class."""
    from cxrkit.data.images import read_image

    images, labels = [], []
    for k, name in enumerate(tiny_predictor.classes):
        for path in sorted((blob_dataset / name).glob("*.png"))[:4]:
            images.append(tiny_predictor.preprocessing.to_uint8(read_image(path)))
            labels.append(k)
    return np.stack(images), np.array(labels)


def hook_count(model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


@pytest.fixture(scope="session")
def count_hooks():
    """``count_hooks(model)``: forward, pre-forward and backward hooks left on any module."""
    return hook_count
