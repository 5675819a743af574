"""Bootstrap confidence intervals that respect patients (a helper at the bottom layer: the
evaluation metrics and the lung segmenter's test Dice both use it; see pyproject's layers).

Images of one patient are not independent evidence: resampling images would make the
interval too narrow. With ``groups`` (patient ids; images without an id are their own
group) whole groups are resampled, so a patient's images stay together.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .errors import UsageError


def _group_index(groups: Sequence | None, n: int) -> list[np.ndarray]:
    if groups is None:
        return [np.array([i]) for i in range(n)]
    members: dict = {}
    for i, g in enumerate(groups):
        key = ("id", g) if g not in (None, "") else ("image", i)
        members.setdefault(key, []).append(i)
    return [np.asarray(v) for v in members.values()]


def bootstrap_ci(
    metric_fn: Callable[[np.ndarray], dict[str, float]],
    n: int,
    groups: Sequence | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, dict[str, float]]:
    """Percentile CIs for every key of ``metric_fn(indices)``.

    ``metric_fn`` maps an index array (with repeats) to a dict of metrics; it is called once on
    ``arange(n)`` for the point estimate and ``n_resamples`` times on resampled indices.
    Returns ``{key: {"value", "lo", "hi"}}``; resamples where a metric is undefined are ignored.
    """
    if n == 0:
        raise UsageError("cannot bootstrap an empty set")
    point = metric_fn(np.arange(n))
    units = _group_index(groups, n)
    rng = np.random.default_rng(seed)
    samples = {k: [] for k in point}
    for _ in range(n_resamples):
        pick = rng.integers(0, len(units), len(units))
        idx = np.concatenate([units[j] for j in pick])
        for k, v in metric_fn(idx).items():
            samples[k].append(v)
    alpha = (1 - level) / 2
    out = {}
    for k, v in point.items():
        arr = np.asarray(samples[k], dtype=np.float64)
        arr = arr[~np.isnan(arr)]
        lo, hi = np.quantile(arr, [alpha, 1 - alpha]) if len(arr) else (np.nan, np.nan)
        out[k] = {"value": float(v), "lo": float(lo), "hi": float(hi)}
    return out
