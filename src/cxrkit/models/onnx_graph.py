"""The one ONNX exporter of a network: the classifier's (``cxr export --onnx``) and the lung
segmenter's (``lungs.onnx``, made on first use by the ``roi: lungs`` step) both come from here.

The graph is the network only: a float32 batch (B, C, S, S) in, one output, the batch axis
dynamic; decoding and preprocessing stay outside, in the Python chain both backends share.
The file is written under a temporary name and renamed into place, and may carry string
metadata (the lung model records its weights' sha256 there). ``dynamo``: the torch.export-based
exporter (the classifier's, opset >= 18); the TorchScript one exports the compact lung U-Net
in a fraction of the time and made every existing ``lungs.onnx``.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch


def export_graph(
    model: torch.nn.Module,
    input_shape: tuple[int, ...],
    path: str | Path,
    input_name: str,
    output_name: str,
    opset: int | None = None,
    dynamo: bool = True,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Write ``model`` (in eval mode) as ONNX to ``path`` atomically; returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.onnx")
    dummy = torch.zeros(*input_shape)
    if dynamo:
        kw = dict(external_data=False, dynamic_shapes=({0: torch.export.Dim("batch")},), verbose=False)
    else:
        kw = dict(dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}})
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # exporter chatter about internal deprecations
            torch.onnx.export(
                model.eval(),
                (dummy,),
                tmp,
                dynamo=dynamo,
                input_names=[input_name],
                output_names=[output_name],
                **({"opset_version": opset} if opset else {}),
                **kw,
            )
        if metadata:
            import onnx

            proto = onnx.load(str(tmp))
            onnx.helper.set_model_props(proto, metadata)
            onnx.save(proto, str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def graph_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata an exported file carries ({} for a file without any)."""
    import onnx

    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}
