"""The preprocessing pipeline's one interface: decoded gray films -> the model's uint8 pixels.

Why a protocol here: the chain is decode -> [lung ROI] -> contrast -> resize -> normalise, and
its only step that needs a model (the lung ROI, :mod:`cxrkit.lungs.preprocess`) lives above
``data``. The image cache, the Predictor, the ONNX export and serve call these methods and
never ask which class they hold, so no layer reaches up at run time. The plain chain is
:class:`cxrkit.data.transforms.Preprocessing`; the one builder from a model card's
``preprocessing`` section is :func:`cxrkit.lungs.preprocess.build_pipeline`.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

ROI_OK = "ok"  # the outcome of an image whose ROI step found its lungs (or of a chain without one)


class Pipeline(Protocol):
    """What every preprocessing chain offers (``roi`` is "none" without a lung step)."""

    input_size: int
    roi: str
    batched: bool  # True: build caches in this process, batch by batch (a step holds a model)
    lung_run_dir: str | None  # the lung run whose masks the ROI step uses (None: no ROI step)

    def to_dict(self) -> dict:
        """Plain data: the card's ``preprocessing`` section, also the image cache's key."""

    def to_uint8(self, gray: np.ndarray) -> np.ndarray:
        """One decoded image -> its (S, S) uint8 model pixels."""

    def to_uint8_many(self, grays: list[np.ndarray]) -> tuple[np.ndarray, list[str]]:
        """(N, S, S) uint8 model pixels and each image's ROI outcome (:data:`ROI_OK` or why the
        whole film was used instead)."""

    def view(self, gray: np.ndarray) -> np.ndarray:
        """The part of ``gray`` the model sees (a lung crop, or the film): what CAMs are drawn on."""

    def roi_settings(self) -> dict:
        """The ROI's settings as predictions report them ({} without a ROI)."""
