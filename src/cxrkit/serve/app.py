"""HTTP service over the run's one Predictor: JSON predictions, Grad-CAM overlays, a web page.

The model is loaded once per app and checked before serving (:func:`check_predictor`).
Inference runs on the gate's own threads, so the event loop keeps accepting requests; the
PyTorch model is guarded by ``Predictor.lock`` (CAM hooks must never see another request's
forward pass, see :mod:`cxrkit.explain.cam_png`). Uploads are decoded from memory and are never
written to disk or logged. Every request that decodes or runs the model holds a slot of the
:class:`~cxrkit.serve.limits.Gate` (503 with Retry-After when none frees in time) and decodes
with bounded memory (:mod:`cxrkit.serve.images`). Bad uploads get a 4xx JSON ``detail``
naming the problem; non-finite probabilities are never returned (422).
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Literal

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field

from .._meta import RESEARCH_NOTICE, __version__
from ..errors import CxrkitError, UsageError
from ..explain.cam_png import CamOverlays
from ..inference.defaults import check_threshold
from ..inference.ensemble import EnsemblePredictor
from ..inference.loader import load_predictor
from ..inference.predictor import Predictor
from . import responses
from .images import decode_upload, shrink
from .limits import Gate, Limits
from .page import content_security_policy, render_page
from .responses import HttpError, header_value
from .upload import FIELD, read_upload

DEFAULT_MAX_UPLOAD_BYTES = Limits.max_upload_bytes
MAX_INPUT_SIZE = 4096  # model input side: the largest timm backbones take 800 px; 100000 px took 21 GB

_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [FIELD],
                    "properties": {
                        FIELD: {
                            "type": "string",
                            "format": "binary",
                            "description": "PNG, JPEG, BMP, TIFF or DICOM chest X-ray",
                        }
                    },
                }
            }
        },
    }
}


class PredictResponse(BaseModel):
    probabilities: dict[str, float]
    predicted_class: str
    confidence: float
    uncertain: bool
    roi_fallback: str | None = Field(
        None,
        description="runs with roi lungs: why this image got the whole film instead of its lung crop "
        "(null: it got its lungs, or the run has no ROI; see roi in /healthz)",
    )
    other_abnormal: float | None = Field(
        None,
        description="models trained with auxiliary classes: probability of an abnormality that is none of the "
        "classes (null: the model has none)",
    )
    other_abnormal_flag: bool | None = Field(
        None,
        description="other_abnormal reached the threshold fitted on val: the film needs a reader whatever "
        "predicted_class says",
    )
    threshold: float
    model_id: str
    notice: str


class ExplainResponse(PredictResponse):
    target_class: str
    method: str
    layer: str
    shape: list[int]
    map: list[list[float]]


class Health(BaseModel):
    status: str
    model_id: str
    classes: list[str]
    backend: str
    input_size: int
    tta: str = "none"
    precision: str = "32"  # resolved: "32" or "bf16"
    roi: str = "none"  # "lungs": each image is cropped to its predicted lung box first
    threshold: float
    max_upload_bytes: int
    max_pixels: int
    notice: str


def create_app(
    model: str | Path | Predictor,
    max_upload_bytes: int | None = None,
    threshold: float | None = None,
    cam_method: str | None = None,
    limits: Limits | None = None,
    docs: bool = False,
) -> FastAPI:
    """The FastAPI app for a run directory or an already loaded Predictor.

    ``limits`` bound each request (``max_upload_bytes``, when given, overrides its byte limit);
    ``docs`` serves Swagger UI at /docs and /redoc, which load their scripts from a CDN
    (jsdelivr), so they are off unless asked for; /openapi.json is always there.
    """
    predictor = model if isinstance(model, Predictor) else load_predictor(model)
    check_predictor(predictor)
    threshold = predictor.threshold if threshold is None else check_threshold(threshold)
    limits = limits or Limits()
    if max_upload_bytes is not None:
        limits = replace(limits, max_upload_bytes=int(max_upload_bytes))
    gate = Gate(limits)
    # an ensemble has no one network to hook: /v1/explain names a member to serve instead
    cams = None if isinstance(predictor, EnsemblePredictor) else CamOverlays(predictor, cam_method)
    app = FastAPI(
        title="cxrkit",
        version=__version__,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        description=f"Chest X-ray classifier {predictor.model_id}. Class names in response headers "
        f"are percent-encoded UTF-8. {RESEARCH_NOTICE}",
    )
    app.state.predictor = predictor
    app.state.gate = gate
    app.state.limits = limits
    responses.install(app)
    page_html = render_page(predictor.classes, predictor.model_id, limits.max_upload_bytes, threshold)
    page_headers = {"Content-Security-Policy": content_security_policy(page_html)}

    async def with_upload(request: Request, work, *args):
        """Read the upload, then run ``work(name, data, *args)`` in a thread, holding a gate slot."""
        name, data = await read_upload(request, limits.max_upload_bytes, limits.body_timeout_s)
        return await gate.run(_model_errors, work, name, data, *args)

    has_roi = predictor.preprocessing.roi != "none"

    def decoded(name: str, data: bytes) -> tuple[np.ndarray, np.ndarray, dict]:
        """(gray image at most work_side, model input, ``roi_fallback`` with ``roi: lungs``) of one upload."""
        gray = decode_upload(predictor, data, name, limits)
        image, fallback = predictor.prepare_with_roi(gray, name)
        return gray, image, ({"roi_fallback": fallback} if has_roi else {})

    def prediction(name: str, image: np.ndarray, roi: dict) -> dict:
        result = predictor.results_from_uint8(image[None], [name], threshold)[0]
        if not all(math.isfinite(p) for p in (*result.probabilities.values(), result.confidence)):
            raise HttpError(
                422,
                f"{name}: the model gave non-finite probabilities for this image, so no answer "
                f"is given; the run {predictor.model_id} may be broken (model card temperature "
                "or normalisation, or its weights)",
            )
        return {
            **{k: v for k, v in result.to_dict().items() if k != "name"},
            **roi,
            "threshold": threshold,
            "model_id": predictor.model_id,
            "notice": RESEARCH_NOTICE,
        }

    def predict_work(name: str, data: bytes) -> dict:
        _, image, roi = decoded(name, data)
        return prediction(name, image, roi)

    def explain_work(name: str, data: bytes, target: str | None, format: str):
        if cams is None:
            raise HttpError(422, str(predictor.no_network_error()))
        gray, image, roi = decoded(name, data)
        doc = prediction(name, image, roi)
        exp = cams.explain(image[None], None if target is None else predictor.classes.index(target))
        if not (np.isfinite(exp.maps).all() and np.isfinite(exp.probabilities).all()):
            raise HttpError(
                422,
                f"{name}: the Grad-CAM map or its probabilities are not finite for this image; "
                f"the run {predictor.model_id} may be broken",
            )
        doc.update(
            target_class=predictor.classes[int(exp.classes[0, 0])],
            method=cams.explainer.method,
            layer=cams.explainer.layer_name,
        )
        if format == "json":
            cam = exp.maps[0, 0]
            return {**doc, "shape": list(cam.shape), "map": np.round(cam, 4).tolist()}
        png = cams.png(shrink(gray, limits.overlay_side), exp)
        return Response(
            png,
            media_type="image/png",
            headers={
                "X-Predicted-Class": header_value(doc["predicted_class"]),
                "X-Target-Class": header_value(doc["target_class"]),
                "X-Uncertain": str(doc["uncertain"]).lower(),
                "X-Research-Notice": RESEARCH_NOTICE,
            },
        )

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(page_html, headers=page_headers)

    @app.get("/healthz", response_model=Health)
    async def healthz() -> dict:
        return {
            "status": "ok",
            "model_id": predictor.model_id,
            "classes": predictor.classes,
            "backend": predictor.backend,
            "input_size": predictor.preprocessing.input_size,
            "tta": predictor.tta,
            "precision": predictor.precision,
            "roi": predictor.preprocessing.roi,
            "threshold": threshold,
            "max_upload_bytes": limits.max_upload_bytes,
            "max_pixels": limits.max_pixels,
            "notice": RESEARCH_NOTICE,
        }

    @app.post(
        "/v1/predict",
        response_model=PredictResponse,
        openapi_extra=_UPLOAD_BODY,
        summary="Class probabilities for one uploaded chest X-ray",
    )
    async def predict(request: Request) -> dict:
        return await with_upload(request, predict_work)

    @app.post(
        "/v1/explain",
        openapi_extra=_UPLOAD_BODY,
        responses={
            200: {
                "content": {"image/png": {}, "application/json": {"schema": ExplainResponse.model_json_schema()}},
                "description": "PNG overlay (default) or, with format=json, the map and prediction",
            }
        },
        summary="Grad-CAM of one uploaded chest X-ray: PNG overlay or JSON map",
    )
    async def explain(
        request: Request,
        format: Literal["png", "json"] = "png",
        target: str | None = Query(None, description="class to explain (default: predicted)"),
    ):
        if target is not None and target not in predictor.classes:
            await read_upload(request, limits.max_upload_bytes, limits.body_timeout_s)  # else the client sees a reset
            raise HttpError(422, f"unknown target class {target!r}; the model knows {', '.join(predictor.classes)}")
        return await with_upload(request, explain_work, target, format)

    return app


def _model_errors(work, *args):
    """``work(*args)`` with cxrkit's own errors as HTTP answers: those that are ValueErrors are
    about this input (unreadable, non-finite outputs: 422), the others about the run (500)."""
    try:
        return work(*args)
    except HttpError:
        raise
    except CxrkitError as exc:
        if isinstance(exc, ValueError):
            raise HttpError(422, str(exc)) from None
        raise HttpError(500, f"the model could not answer: {exc}") from None


def check_predictor(predictor: Predictor) -> None:
    """Refuse to serve a run that would answer garbage: bad classes, absurd input size, a
    temperature that is not a positive number, or non-finite probabilities on a gray image."""
    where = f"{predictor.model_id}: cannot serve this run"
    classes = list(predictor.classes)
    if not classes or len(set(classes)) != len(classes) or not all(isinstance(c, str) and c for c in classes):
        raise UsageError(f"{where}: its classes must be distinct non-empty names, got {classes}")
    size = predictor.preprocessing.input_size
    if not (isinstance(size, int) and 8 <= size <= MAX_INPUT_SIZE):
        raise UsageError(f"{where}: its input size {size} is outside 8..{MAX_INPUT_SIZE} px; check model_card.json")
    try:
        temperature = float(predictor.temperature)
    except Exception:  # a card whose calibration is not a mapping, a string...
        temperature = math.nan
    if not (math.isfinite(temperature) and temperature > 0):
        raise UsageError(
            f"{where}: its calibration temperature {predictor.temperature} is not a positive number; "
            "refit it with `cxr evaluate` or remove it from model_card.json"
        )
    try:
        probs = predictor.proba_from_uint8(predictor.blank_input(128))
    except Exception as exc:
        raise UsageError(f"{where}: a test prediction on a gray image failed ({type(exc).__name__}: {exc})") from None
    if not np.isfinite(probs).all():
        raise UsageError(
            f"{where}: the model gives non-finite probabilities on a plain gray image; "
            "its weights or normalisation (model_card.json) are broken"
        )
