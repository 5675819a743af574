"""The abnormal rule: films of labels that are not classes, scored as "called normal" or not."""

import numpy as np
import pytest

from cxrkit._numeric import other_abnormal
from cxrkit.evaluation.abnormal import abnormal_results

CLASSES = ["covid", "viral_pneumonia", "normal"]


def _probs(top: list[int]) -> np.ndarray:
    p = np.full((len(top), 3), 0.1)
    p[np.arange(len(top)), top] = 0.8
    return p


def test_called_normal_is_the_share_predicted_normal():
    abn = _probs([2, 2, 0, 1])  # two of four abnormal films predicted normal
    res = abnormal_results(abn, ["pneumonia"] * 4, _probs([2, 2]), CLASSES, n_resamples=20)
    assert res["called_normal"]["value"] == pytest.approx(0.5)
    assert res["predicted"] == {"covid": 1, "viral_pneumonia": 1, "normal": 2}
    assert "flagged" not in res and "normals_flagged" not in res


def test_flagged_normal_predictions_are_not_called_normal_and_the_price_is_shown():
    abn = _probs([2, 2, 2, 0])
    other = np.array([0.9, 0.1, 0.6, 0.0])  # films 0 and 2 reach the threshold
    normals = _probs([2, 2, 2, 2])
    normal_other = np.array([0.0, 0.7, 0.1, 0.2])  # one of four normals is flagged
    res = abnormal_results(
        abn, ["pneumonia"] * 4, normals, CLASSES, n_resamples=20, other=other, normal_other=normal_other, threshold=0.5
    )
    assert res["called_normal"]["value"] == pytest.approx(0.25)  # only film 1 is a miss
    assert res["flagged"] == 2
    assert res["normals_flagged"]["value"] == pytest.approx(0.25)
    assert "fitted on val" in res["rule"]
    # the AUC ranks by p(normal) over every output, p(normal) * (1 - other): the flagged ones rise
    plain = abnormal_results(abn, ["pneumonia"] * 4, normals, CLASSES, n_resamples=20)
    assert res["auc_not_normal"]["value"] > plain["auc_not_normal"]["value"]


def test_other_abnormal_is_the_softmax_mass_after_the_classes():
    logits = np.array([[2.0, 0.0, 1.0, 3.0, 0.5]])
    e = np.exp(logits[0])
    assert other_abnormal(logits, 3)[0] == pytest.approx(e[3:].sum() / e.sum())
    assert other_abnormal(logits[:, :3], 3)[0] == 0.0
