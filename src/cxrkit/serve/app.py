"""HTTP service over the run's one Predictor: JSON predictions, Grad-CAM overlays, a web page.

The model is loaded once per app. Inference runs in Starlette's thread pool, so the event
loop keeps accepting requests; the PyTorch model is guarded by ``Predictor.lock`` (CAM hooks
must never see another request's forward pass, see :mod:`cxrkit.inference.cam`). Uploads are decoded from memory and are
never written to disk or logged; bad uploads get a 4xx JSON ``detail`` naming the problem.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from .. import RESEARCH_NOTICE, __version__
from ..inference.cam import CamOverlays
from ..inference.defaults import check_threshold
from ..inference.predictor import Failure, Predictor
from .page import render_page
from .upload import FIELD, UploadError, read_upload

DEFAULT_MAX_UPLOAD_BYTES = 20 * 1000 * 1000

_UPLOAD_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": [FIELD],
    "properties": {FIELD: {"type": "string", "format": "binary",
                           "description": "PNG, JPEG, BMP, TIFF or DICOM chest X-ray"}}}}}}}


class PredictResponse(BaseModel):
    probabilities: dict[str, float]
    predicted_class: str
    confidence: float
    uncertain: bool
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
    threshold: float
    max_upload_bytes: int
    notice: str


def create_app(model: str | Path | Predictor, max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
               threshold: float | None = None, cam_method: str | None = None) -> FastAPI:
    """The FastAPI app for a run directory or an already loaded Predictor."""
    predictor = model if isinstance(model, Predictor) else Predictor.from_run(model)
    threshold = predictor.threshold if threshold is None else check_threshold(threshold)
    cams = CamOverlays(predictor, cam_method)
    app = FastAPI(title="cxrkit", version=__version__,
                  description=f"Chest X-ray classifier {predictor.model_id}. {RESEARCH_NOTICE}")
    app.state.predictor = predictor

    @app.exception_handler(UploadError)
    async def upload_error(request: Request, exc: UploadError) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=exc.status)

    async def upload(request: Request) -> tuple[str, np.ndarray, np.ndarray]:
        """(file name, decoded gray image, model input) of the request's upload."""
        name, data = await read_upload(request, max_upload_bytes)
        gray = await run_in_threadpool(predictor.try_decode, data, name)
        if isinstance(gray, Failure):
            raise UploadError(422, f"{gray.name}: {gray.reason}")
        return name, gray, await run_in_threadpool(predictor.preprocessing.to_uint8, gray)

    def prediction(name: str, image: np.ndarray) -> dict:
        result = predictor.results_from_uint8(image[None], [name], threshold)[0]
        return {**{k: v for k, v in result.to_dict().items() if k != "name"}, "threshold": threshold,
                "model_id": predictor.model_id, "notice": RESEARCH_NOTICE}

    def explanation(name: str, image: np.ndarray, target: str | None):
        exp = cams.explain(image[None], None if target is None else predictor.classes.index(target))
        doc = {**prediction(name, image), "target_class": predictor.classes[int(exp.classes[0, 0])],
               "method": cams.explainer.method, "layer": cams.explainer.layer_name}
        return doc, exp

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(render_page(predictor.classes, predictor.model_id, max_upload_bytes, threshold))

    @app.get("/healthz", response_model=Health)
    async def healthz() -> dict:
        return {"status": "ok", "model_id": predictor.model_id, "classes": predictor.classes,
                "backend": predictor.backend, "input_size": predictor.preprocessing.input_size,
                "threshold": threshold, "max_upload_bytes": max_upload_bytes, "notice": RESEARCH_NOTICE}

    @app.post("/v1/predict", response_model=PredictResponse, openapi_extra=_UPLOAD_BODY,
              summary="Class probabilities for one uploaded chest X-ray")
    async def predict(request: Request) -> dict:
        name, _, image = await upload(request)
        return await run_in_threadpool(prediction, name, image)

    @app.post("/v1/explain", openapi_extra=_UPLOAD_BODY,
              responses={200: {"content": {"image/png": {}, "application/json": {
                  "schema": ExplainResponse.model_json_schema()}},
                  "description": "PNG overlay (default) or, with format=json, the map and prediction"}},
              summary="Grad-CAM of one uploaded chest X-ray: PNG overlay or JSON map")
    async def explain(request: Request, format: Literal["png", "json"] = "png",
                      target: str | None = Query(None, description="class to explain (default: predicted)")):
        name, gray, image = await upload(request)  # read first: a client mid-upload would see a reset
        if target is not None and target not in predictor.classes:
            raise UploadError(422, f"unknown target class {target!r}; the model knows "
                                   f"{', '.join(predictor.classes)}")
        doc, exp = await run_in_threadpool(explanation, name, image, target)
        if format == "json":
            cam = exp.maps[0, 0]
            return {**doc, "shape": list(cam.shape), "map": np.round(cam, 4).tolist()}
        png = await run_in_threadpool(cams.png, gray, exp)
        return Response(png, media_type="image/png", headers={
            "X-Predicted-Class": doc["predicted_class"], "X-Target-Class": doc["target_class"],
            "X-Uncertain": str(doc["uncertain"]).lower(), "X-Research-Notice": RESEARCH_NOTICE})

    return app
