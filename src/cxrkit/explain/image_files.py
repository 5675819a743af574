"""``cxr explain RUN IMAGES...``: an overlay PNG and the raw maps (.npy) per image file.

Files are found as ``cxr predict`` finds them (folders recursively, DICOM included) and
decoded by the predictor; an unreadable file is reported with its reason and the rest go on.
Work goes batch by batch, so memory does not grow with the number of files. As in the
service, a film is reduced to ``WORK_SIDE`` right after decoding and the image under the
overlay to ``OVERLAY_SIDE``: an 8000x8000 PNG took 4.9 GB here when drawn at full size. For
films above 2048 px the probabilities in the figure may therefore differ slightly from
``cxr predict`` on the same file (as the service's do).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.images import WORK_SIDE, shrink
from ..inference.inputs import find_images
from ..inference.predictor import Failure
from .cams import Explainer
from .overlay import OVERLAY_SIDE, overlay_figure, save_map, save_png

__all__ = ["ExplainedFiles", "explain_files"]


@dataclass
class ExplainedFiles:
    written: list[tuple[Path, Path, Path]] = field(default_factory=list)  # (input, overlay .png, maps .npy)
    failures: list[Failure] = field(default_factory=list)
    ignored: int = 0  # non-image files met in folders


def explain_files(
    explainer: Explainer,
    paths: Iterable[str | Path],
    out_dir: str | Path,
    target: None | str | int = None,
    progress: Callable[[int, int], None] | None = None,
) -> ExplainedFiles:
    """Explain every image in ``paths`` and write ``<stem>.png`` (the overlay) and ``<stem>.npy``
    (maps (K, S, S) at model input size) into ``out_dir``; repeated stems get ``_2``, ``_3``...

    Args:
        explainer: the :class:`~cxrkit.explain.cams.Explainer` to use.
        paths: image files and folders (searched recursively).
        out_dir: where the overlays and maps go.
        target: as in :meth:`Explainer.explain`.
        progress: called as ``progress(done, total)`` after each batch.

    Returns:
        ``ExplainedFiles``: ``written`` (input, overlay, maps) triples, ``failures`` (files that
        could not be read, with the reason) and the count of non-image files ``ignored``.
    """
    files, missing, ignored = find_images(paths)
    out, out_dir = ExplainedFiles(failures=list(missing), ignored=ignored), Path(out_dir)
    predictor, used = explainer.predictor, set()
    caption = f"{explainer.method} on layer {explainer.layer_name}"
    for start in range(0, len(files), explainer.batch_size):
        batch = files[start : start + explainer.batch_size]
        decoded = [(f, _decoded(predictor, f)) for f in batch]
        out.failures += [g for _, g in decoded if isinstance(g, Failure)]
        decoded = [(f, g) for f, g in decoded if not isinstance(g, Failure)]
        if decoded:
            exp = explainer.explain(np.stack([predictor.preprocessing.to_uint8(g) for _, g in decoded]), target)
            for i, (f, gray) in enumerate(decoded):
                stem = _unique_stem(f.stem, used)
                fig = overlay_figure(
                    shrink(predictor.preprocessing.view(gray), OVERLAY_SIDE),  # roi lungs: the crop
                    exp.maps[i],
                    exp.classes[i],
                    exp.probabilities[i],
                    predictor.classes,
                    caption,
                )
                png = save_png(out_dir / f"{stem}.png", fig)
                out.written.append((f, png, save_map(out_dir / f"{stem}.npy", exp.maps[i])))
        if progress:
            progress(start + len(batch), len(files))
    return out


def _decoded(predictor, path: Path):
    """The decoded film reduced to ``WORK_SIDE`` at once (the full-size copy is freed), or a Failure."""
    gray = predictor.try_decode(path, str(path))
    return gray if isinstance(gray, Failure) else shrink(gray, WORK_SIDE)


def _unique_stem(stem: str, used: set[str]) -> str:
    name, k = stem, 1
    while name in used:
        k += 1
        name = f"{stem}_{k}"
    used.add(name)
    return name
