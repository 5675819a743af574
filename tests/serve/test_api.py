"""The HTTP API through a real uvicorn server on localhost."""

from __future__ import annotations

import io
import tempfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from cxrkit import RESEARCH_NOTICE

CLASSES = ["covid", "viral_pneumonia", "normal"]


@pytest.fixture(scope="module")
def blob_png(blob_dataset) -> bytes:
    return (blob_dataset / "normal" / "normal_000.png").read_bytes()


def test_health(served, http):
    url, app = served
    r = http.request(f"{url}/healthz")
    assert r.status == 200
    h = r.json()
    assert h["status"] == "ok" and h["classes"] == CLASSES and h["backend"] == "torch"
    assert h["model_id"] == app.state.predictor.model_id and h["notice"] == RESEARCH_NOTICE
    assert h["max_upload_bytes"] == http.SMALL_LIMIT
    assert h["precision"] == "32"  # resolved, recorded


def test_predict(served, blob_png, blob_dataset, http):
    url, app = served
    r = http.upload(f"{url}/v1/predict", blob_png, "normal_000.png")
    assert r.status == 200, r.body
    p = r.json()
    assert set(p) >= {"probabilities", "predicted_class", "uncertain", "model_id", "notice"}
    assert list(p["probabilities"]) == CLASSES and sum(p["probabilities"].values()) == pytest.approx(1, abs=1e-5)
    assert p["notice"] == RESEARCH_NOTICE and p["model_id"] == app.state.predictor.model_id
    expected = app.state.predictor.predict(blob_dataset / "normal" / "normal_000.png").results[0]
    assert p["probabilities"] == pytest.approx(expected.probabilities, abs=1e-6)
    assert p["predicted_class"] == expected.predicted_class == "normal"
    assert p["uncertain"] == (max(p["probabilities"].values()) < p["threshold"])


def test_dicom_upload(served, make_dicom, synth_array, http):
    url, _ = served
    dcm = make_dicom("IM0001", synth_array(5).astype(np.uint16) * 200)
    r = http.upload(f"{url}/v1/predict", dcm.read_bytes(), "IM0001")
    assert r.status == 200, r.body
    assert r.json()["predicted_class"] in CLASSES


def test_explain_png_and_json(served, blob_png, http):
    url, app = served
    r = http.upload(f"{url}/v1/explain", blob_png)
    assert r.status == 200 and r.headers["content-type"] == "image/png"
    overlay = Image.open(io.BytesIO(r.body))
    assert overlay.format == "PNG" and min(overlay.size) >= 64
    assert r.headers["x-predicted-class"] == "normal"

    r = http.upload(f"{url}/v1/explain?format=json", blob_png)
    assert r.status == 200, r.body
    e = r.json()
    s = app.state.predictor.preprocessing.input_size
    cam = np.array(e["map"])
    assert e["shape"] == [s, s] and cam.shape == (s, s) and 0 <= cam.min() and cam.max() <= 1
    assert e["target_class"] == e["predicted_class"] == "normal" and e["method"] == "gradcam"
    assert e["notice"] == RESEARCH_NOTICE
    # the blob of class "normal" sits at (48, 32) of 64: the map is hottest in the lower half
    assert cam[s // 2 :].sum() > cam[: s // 2].sum()

    other = http.upload(f"{url}/v1/explain?format=json&target=covid", blob_png).json()
    assert other["target_class"] == "covid" and other["predicted_class"] == "normal"
    bad = http.upload(f"{url}/v1/explain?format=json&target=flu", blob_png)
    assert bad.status == 422 and "unknown target class" in bad.json()["detail"]


def test_oversize_upload_is_refused_with_413(served, http):
    url, _ = served
    big = b"\x89PNG" + bytes(2 * http.SMALL_LIMIT)
    r = http.upload(f"{url}/v1/predict", big, "big.png")
    assert r.status == 413 and "limit" in r.json()["detail"]
    # chunked, without Content-Length: the limit is enforced while streaming
    body, headers = http.multipart(big, "big.png")
    chunks = (body[i : i + 16384] for i in range(0, len(body), 16384))
    r = http.request(f"{url}/v1/predict", chunks, {**headers, "Transfer-Encoding": "chunked"})
    assert r.status == 413 and "limit" in r.json()["detail"]


def test_text_file_is_a_4xx_naming_the_problem(served, http):
    url, _ = served
    r = http.upload(f"{url}/v1/predict", b"patient notes, not an image\n" * 10, "notes.txt")
    assert r.status == 422
    assert "notes.txt" in r.json()["detail"] and "not an image" in r.json()["detail"]


def test_corrupt_png_is_a_4xx_with_a_message(served, blob_png, http):
    url, _ = served
    for path in ("/v1/predict", "/v1/explain"):
        r = http.upload(url + path, blob_png[:200], "broken.png")
        assert r.status == 422 and "broken.png" in r.json()["detail"]
        assert "corrupt or truncated" in r.json()["detail"]


def test_malformed_requests_get_json_errors(served, blob_png, http):
    url, _ = served
    r = http.upload(f"{url}/v1/predict", blob_png, field="image")
    assert r.status == 422 and "'file'" in r.json()["detail"]
    r = http.request(f"{url}/v1/predict", blob_png, {"Content-Type": "image/png"})
    assert r.status == 415 and "multipart/form-data" in r.json()["detail"]
    r = http.request(f"{url}/v1/predict", b"--x\r\ngarbage", {"Content-Type": "multipart/form-data; boundary=zz"})
    assert 400 <= r.status < 500
    assert http.request(f"{url}/v1/explain?format=gif", *http.multipart(blob_png)).status == 422


def test_concurrent_requests_all_succeed_identically(served, blob_png, http):
    url, _ = served

    def call(i):
        path = "/v1/explain?format=json" if i % 2 else "/v1/predict"
        return i % 2, http.upload(url + path, blob_png)

    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(call, range(16)))
    assert all(r.status == 200 for _, r in replies)
    predicted = [r.json() for kind, r in replies if kind == 0]
    explained = [r.json() for kind, r in replies if kind == 1]
    assert all(p == predicted[0] for p in predicted)
    assert all(e == explained[0] for e in explained)
    assert explained[0]["probabilities"] == predicted[0]["probabilities"]


def test_uploads_are_not_written_to_disk_or_logged(tiny_run, tmp_path, monkeypatch, caplog, capsys, blob_png, http):
    """A 1.5 MB upload (above Starlette's 1 MB spool threshold) leaves no temp file or log line."""
    from cxrkit.serve import create_app

    spool = tmp_path / "tmp"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    noise = np.random.default_rng(0).integers(0, 255, (1300, 1300), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, format="PNG")
    assert buf.tell() > 1_100_000
    caplog.set_level("DEBUG")
    with http.running(create_app(tiny_run.run_dir)) as url:
        r = http.upload(f"{url}/v1/predict", buf.getvalue(), "secret-patient-name.png")
    assert r.status == 200, r.body
    assert list(spool.iterdir()) == []
    out = capsys.readouterr()
    logged = caplog.text + out.out + out.err
    assert "POST /v1/predict" in logged and "secret-patient-name" not in logged


def test_openapi_schema_documents_the_upload(served, http):
    url, _ = served
    schema = http.request(f"{url}/openapi.json").json()
    assert {"/v1/predict", "/v1/explain", "/healthz"} <= set(schema["paths"])
    body = schema["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert body["schema"]["properties"]["file"]["format"] == "binary"


def test_page_is_self_contained(served, http):
    url, _ = served
    r = http.request(url + "/")
    assert r.status == 200 and r.headers["content-type"].startswith("text/html")
    page = r.body.decode()
    assert RESEARCH_NOTICE in page and "viral pneumonia" in page
    assert "http://" not in page and "https://" not in page  # no external resources


def test_security_headers_and_docs_off_by_default(served, http):
    import base64
    import hashlib
    import re

    from cxrkit.serve import create_app

    url, app = served
    page = http.request(url + "/")
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    script = re.search(r"<script>(.*?)</script>", page.body.decode(), re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in csp  # the page's own script, and only it, may run
    for reply in (page, http.request(url + "/healthz"), http.upload(f"{url}/v1/predict", b"junk")):
        assert reply.headers["x-content-type-options"] == "nosniff"
        assert reply.headers["cache-control"] == "no-store"
    assert http.request(url + "/docs").status == 404 and http.request(url + "/redoc").status == 404
    assert http.request(url + "/openapi.json").status == 200
    with http.running(create_app(app.state.predictor, docs=True)) as docs_url:
        assert http.request(docs_url + "/docs").status == 200
