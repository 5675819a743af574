"""Films whose label is not a model class, scored by a declared rule: ``--abnormal pneumonia``.

Why: an external set holds findings the 3-class task does not name (NIH "Pneumonia", neither
viral nor bacterial by report). Leaving them out hides the worst failure a screening tool can
make: on ``external/``, the default model of 610fccc called 37% of NIH AP pneumonias and 86% of
PA pneumonias *normal*. The rule: such a film is abnormal, so a prediction of ``normal`` is a
miss and any other class is a hit. Reported, with patient-level bootstrap CIs:

* ``called_normal``: share of abnormal films predicted ``normal`` (argmax, calibrated);
* ``auc_not_normal``: how well ``1 - p(normal)`` ranks abnormal films above the data's normal
  films (threshold-free; CheXNet's pneumonia AUC on NIH is 0.768);
* ``called_normal_at_90``: the same miss rate at the threshold on ``p(normal)`` where 90% of the
  data's normal films are still called normal (an operating point chosen on these normals
  is *fitted on the evaluated data*: reported as a diagnostic, never written into the run);
* per value of each ``--by`` column, ``called_normal`` with its CI.

A model with auxiliary outputs (e.g. trained with ``--aux-classes pneumonia``) also gives each
film an "other abnormal" probability: a film predicted ``normal`` whose other-abnormal
probability reaches the threshold fitted on val is *flagged*, not called normal, and
``normals_flagged`` says what that costs on the data's normal films. The AUC then ranks films by
``1 - p(normal)`` over every output, ``p(normal) * (1 - other abnormal)``.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

from .bootstrap import bootstrap_ci

NORMAL = "normal"
NORMAL_KEPT = 0.90  # the diagnostic operating point: 90% of normals called normal


def _called_normal(p_normal_wins: np.ndarray):
    return lambda idx: {"called_normal": float(p_normal_wins[idx].mean()) if len(idx) else float("nan")}


def abnormal_results(
    probs_abnormal: np.ndarray,
    labels: list[str],
    probs_normal_films: np.ndarray,
    classes: list[str],
    groups=None,
    normal_groups=None,
    by: dict[str, list[str]] | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
    other: np.ndarray | None = None,
    normal_other: np.ndarray | None = None,
    threshold: float | None = None,
) -> dict:
    """The ``abnormal`` section of ``metrics.json``.

    ``probs_abnormal``: (N, C) calibrated probabilities of the abnormal films; ``labels`` their
    labels; ``probs_normal_films``: (M, C) of the data's films labelled normal; ``groups`` /
    ``normal_groups``: patient ids for the bootstrap; ``by``: column -> value per abnormal film;
    ``other`` / ``normal_other``: the other-abnormal probabilities of both (None: the model has
    no auxiliary outputs) and ``threshold`` the flag's, fitted on val (None: no flag).
    """
    k = classes.index(NORMAL)
    flag = _flags(other, threshold, len(labels))
    wins = (probs_abnormal.argmax(1) == k) & ~flag
    rule = "a film of these labels predicted 'normal' is a miss; any other class is a hit"
    if threshold is not None and other is not None:
        rule += f"; a 'normal' flagged other-abnormal (p >= {threshold:.3f}, fitted on val) is a hit"
    out = {
        "labels": sorted(set(labels)),
        "rule": rule,
        "n_images": int(len(labels)),
        "called_normal": bootstrap_ci(_called_normal(wins), len(wins), groups, n_resamples, seed)["called_normal"],
        "predicted": {c: int((probs_abnormal.argmax(1) == i).sum()) for i, c in enumerate(classes)},
        "by": {},
    }
    if other is not None:
        out["flagged"] = int(flag.sum())
    if len(probs_normal_films):
        p_abn, p_norm = probs_abnormal[:, k], probs_normal_films[:, k]
        if other is not None and normal_other is not None:  # p(normal) over every output
            p_abn, p_norm = p_abn * (1 - other), p_norm * (1 - normal_other)
        out.update(_against_normals(p_abn, p_norm, groups, normal_groups, n_resamples, seed))
        if threshold is not None and normal_other is not None:
            flagged = _flags(normal_other, threshold, len(p_norm))
            share = bootstrap_ci(
                lambda i: {"x": float(flagged[i].mean())}, len(p_norm), normal_groups, n_resamples, seed
            )
            out["normals_flagged"] = share["x"]
    for col, values in (by or {}).items():
        values_arr = np.asarray([v or "(missing)" for v in values])
        out["by"][col] = {}
        for v in sorted(set(values_arr.tolist())):
            idx = np.nonzero(values_arr == v)[0]
            sub = [groups[i] for i in idx] if groups is not None else None
            ci = bootstrap_ci(_called_normal(wins[idx]), len(idx), sub, n_resamples, seed)["called_normal"]
            out["by"][col][v] = {"n_images": int(len(idx)), "called_normal": ci}
    return out


def _flags(other: np.ndarray | None, threshold: float | None, n: int) -> np.ndarray:
    """Which films the other-abnormal flag marks (none without auxiliary outputs or threshold)."""
    if other is None or threshold is None:
        return np.zeros(n, bool)
    return np.asarray(other) >= threshold


def _against_normals(p_abn, p_norm, groups, normal_groups, n_resamples, seed) -> dict:
    """AUC of 1 - p(normal), abnormal vs normal films, and the miss rate at 90% of normals kept."""
    scores = np.concatenate([1 - p_abn, 1 - p_norm])
    y = np.concatenate([np.ones(len(p_abn)), np.zeros(len(p_norm))])
    both = None
    if groups is not None or normal_groups is not None:
        a = list(groups) if groups is not None else [f"a{i}" for i in range(len(p_abn))]
        b = list(normal_groups) if normal_groups is not None else [f"n{i}" for i in range(len(p_norm))]
        both = a + b

    def fn(idx):
        yy, ss = y[idx], scores[idx]
        if yy.min() == yy.max():
            return {"auc_not_normal": float("nan"), "called_normal_at_90": float("nan")}
        threshold = np.quantile(1 - ss[yy == 0], 1 - NORMAL_KEPT)  # p(normal) above it: called normal
        return {
            "auc_not_normal": float(roc_auc_score(yy, ss)),
            "called_normal_at_90": float(((1 - ss[yy == 1]) >= threshold).mean()),
        }

    ci = bootstrap_ci(fn, len(y), both, n_resamples, seed)
    return {
        **ci,
        "normal_films": int(len(p_norm)),
        "operating_point": f"{NORMAL_KEPT:.0%} of normal films called normal",
    }
