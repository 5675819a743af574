"""Issue 12, the service (classes 2, 5 and 8): bad, huge, slow or hostile requests against a live
server. Every answer is a 4xx JSON naming the problem (503 with Retry-After for overload), never
a 500, a traceback, a Python repr, a hang or a non-finite probability. Inputs are made here."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import socket
import struct
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image

from cxrkit.serve.client import request, upload
from cxrkit.serve.limits import Limits
from cxrkit.serve.server import HeadTimeoutH11, running

ENDPOINTS = ("/v1/predict", "/v1/explain", "/v1/explain?format=json")


@pytest.fixture(scope="module")
def predictor(tiny_run):
    import cxrkit

    return cxrkit.load(tiny_run.run_dir)


@contextlib.contextmanager
def serving(predictor, **limits):
    from cxrkit.serve import create_app

    app = create_app(predictor, limits=Limits(**limits))
    with running(app) as url:
        yield url


def assert_clean_error(reply, status: int | tuple[int, ...], *mentions: str) -> str:
    """A JSON error with the expected status whose one-line detail mentions each of ``mentions``."""
    statuses = (status,) if isinstance(status, int) else status
    assert reply.status in statuses, (reply.status, reply.body[:300])
    assert reply.headers.get("content-type", "").startswith("application/json"), reply.headers
    detail = reply.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail
    for bad in ("Traceback", " object at 0x", "<class ", 'File "'):
        assert bad not in detail, detail
    for word in mentions:
        assert word in detail, (word, detail)
    return detail


def encode(array: np.ndarray, fmt: str, **save) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt, **save)
    return buf.getvalue()


def smooth(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    coarse = np.random.default_rng(seed).integers(0, 255, (8, 8), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((shape[1], shape[0]), Image.BICUBIC))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` and whose data is a few bytes: a bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_oversize_pixels_are_refused_from_the_header(predictor, make_dicom):
    cases = {
        "wide.png": encode(np.zeros((1000, 1200), np.uint8), "PNG"),
        "bomb.png": png_header_only(30000, 30000),
        "big.jpg": encode(np.zeros((1100, 1000), np.uint8), "JPEG"),
        "big.dcm": make_dicom("big.dcm", np.zeros((1001, 1000), np.uint16)).read_bytes(),
    }
    with serving(predictor, max_pixels=1_000_000) as url:
        for name, data in cases.items():
            for path in ENDPOINTS:
                start = time.monotonic()
                assert_clean_error(upload(url + path, data, name), 413, name)
                assert time.monotonic() - start < 5  # refused before any decoding
        assert upload(url + "/v1/predict", encode(smooth((900, 1000)), "PNG"), "ok.png").status == 200


def test_huge_images_are_reduced_before_any_per_pixel_work(predictor, monkeypatch):
    seen = []
    prepare = predictor.prepare_with_roi  # what the server calls on each decoded upload
    monkeypatch.setattr(
        predictor, "prepare_with_roi", lambda gray, name=None: seen.append(gray.shape) or prepare(gray, name)
    )
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown rotated by 90 degrees: portrait
    rotated = encode(smooth((1000, 3000), 1), "JPEG", exif=exif.tobytes())
    with serving(predictor, work_side=256, overlay_side=128) as url:
        r = upload(url + "/v1/explain", encode(smooth((2400, 3000), 2), "JPEG", quality=90), "huge.jpg")
        assert r.status == 200 and r.headers["content-type"] == "image/png", r.body[:300]
        assert max(Image.open(io.BytesIO(r.body)).size) <= 1000  # the overlay figure, not 3000 px
        assert seen[-1] == (205, 256)
        r = upload(url + "/v1/predict", rotated, "rotated.jpg")
        assert r.status == 200 and seen[-1] == (256, 85)  # EXIF orientation kept through the reduction
        r = upload(url + "/v1/predict", encode(smooth((3000, 600), 3), "PNG"), "tall.png")
        assert r.status == 200 and seen[-1] == (256, 51)


def test_truncated_and_non_image_uploads_are_422(predictor, make_dicom):
    png = encode(smooth((300, 300)), "PNG")
    big_jpeg = encode(smooth((1200, 1600), 4), "JPEG")
    dicom = make_dicom("x.dcm", smooth((64, 64)).astype(np.uint16) * 100).read_bytes()
    rng = np.random.default_rng(0)
    cases = {
        "cut.png": png[: len(png) // 2],
        "cut_big.jpg": big_jpeg[: len(big_jpeg) // 3],  # above work_side: through the reduction path
        "cut.dcm": dicom[: len(dicom) - 3000],
        "random.png": rng.integers(0, 256, 5000, dtype=np.uint8).tobytes(),
        "archive.zip": b"PK\x03\x04" + bytes(200),
        "page.html": b"<html><script>alert(1)</script></html>",
        "empty.png": b"",
        "header_only.png": png[:60],
        "notes.txt": "Patientin, 54 J., Röntgen Thorax\n".encode() * 20,
    }
    with serving(predictor, work_side=512) as url:
        for name, data in cases.items():
            for path in ENDPOINTS:
                assert_clean_error(upload(url + path, data, name), 422, name)


def test_wrong_content_types_are_4xx(predictor):
    png = encode(smooth((64, 64)), "PNG")
    with serving(predictor) as url:
        for ctype in (
            "image/png",
            "application/json",
            "text/plain",
            "multipart/form-data",
            "application/x-www-form-urlencoded",
        ):
            assert_clean_error(request(url + "/v1/predict", png, {"Content-Type": ctype}), 415, "multipart/form-data")
        assert_clean_error(request(url + "/v1/explain", png, method="POST"), 415)
        assert_clean_error(upload(url + "/v1/predict", png, field="image"), 422, "'file'")
        garbage = b"--zz\r\n\0\0 not a part header"
        assert_clean_error(
            request(url + "/v1/predict", garbage, {"Content-Type": "multipart/form-data; boundary=zz"}),
            400,
            "multipart",
        )


def test_class_names_outside_latin1_are_encoded_not_500(tiny_run, tmp_path):
    """Issue 12 class 5: a class name outside Latin-1 made every PNG explain answer 500."""
    import cxrkit
    from cxrkit.serve import create_app

    run = tmp_path / "run"
    shutil.copytree(tiny_run.run_dir, run)
    card = json.loads((run / "model_card.json").read_text())
    names = ["ковид", "病毒性肺炎", "normal ✓"]
    card["classes"] = names
    (run / "model_card.json").write_text(json.dumps(card, ensure_ascii=False), encoding="utf-8")
    app = create_app(cxrkit.load(run))
    png = encode(smooth((64, 64), 5), "PNG")
    with running(app) as url:
        r = upload(url + "/v1/explain", png, "x.png")
        assert r.status == 200 and r.headers["content-type"] == "image/png", r.body[:300]
        predicted = r.header("X-Predicted-Class")
        assert predicted in names and r.header("X-Target-Class") == predicted
        assert r.headers["x-predicted-class"].isascii()
        doc = upload(url + "/v1/explain?format=json", png, "x.png").json()
        assert doc["predicted_class"] == predicted and list(doc["probabilities"]) == names
        page = request(url + "/")
        assert page.status == 200 and "病毒性肺炎" in page.body.decode()


def test_concurrent_explains_beyond_the_gate_get_503_not_500(predictor, monkeypatch):
    """3 concurrent explains, 1 slot, a 0.2 s wait, each taking >= 1.5 s: 1 answer, 2 x 503."""
    results = predictor.results_from_uint8

    def slow(*args, **kwargs):
        time.sleep(1.5)
        return results(*args, **kwargs)

    monkeypatch.setattr(predictor, "results_from_uint8", slow)
    png = encode(smooth((128, 128), 6), "PNG")
    with serving(predictor, busy=1, queue_wait_s=0.2) as url:
        with ThreadPoolExecutor(3) as pool:
            replies = list(pool.map(lambda i: upload(url + "/v1/explain?format=json", png, f"{i}.png"), range(3)))
        assert sorted(r.status for r in replies) == [200, 503, 503]
        for r in replies:
            if r.status == 503:
                assert_clean_error(r, 503, "busy")
                assert int(r.header("Retry-After")) >= 1
        monkeypatch.setattr(predictor, "results_from_uint8", results)
        assert upload(url + "/v1/predict", png).status == 200  # the gate is free again


def _stall(url: str, declared: int, sent: bytes) -> socket.socket:
    host, port = urlsplit(url).hostname, urlsplit(url).port
    sock = socket.create_connection((host, port), timeout=10)
    head = (
        f"POST /v1/predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: multipart/form-data; boundary=zz\r\n"
        f"Content-Length: {declared}\r\n\r\n"
    ).encode()
    sock.sendall(head + sent)
    return sock


def _read_until_closed(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    data = b""
    with sock:
        while chunk := sock.recv(65536):
            data += chunk
    return data


def test_stalled_uploads_get_408_and_are_closed(predictor):
    """Content-Length larger than the body: answered 408 within the body timeout, connection closed."""
    with serving(predictor, body_timeout_s=1.0) as url:
        start = time.monotonic()
        part = b'--zz\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\n\r\n\x89PNG'
        socks = [_stall(url, 100_000, part) for _ in range(20)]
        answers = [_read_until_closed(s, timeout=10) for s in socks]  # socket.timeout here = never closed
        assert time.monotonic() - start < 8
        for answer in answers:
            assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
            assert b"connection: close" in answer.lower() and b"Content-Length larger" in answer
        assert upload(url + "/v1/predict", encode(smooth((64, 64)), "PNG")).status == 200


def test_incomplete_request_head_is_closed(predictor, monkeypatch):
    monkeypatch.setattr(HeadTimeoutH11, "head_timeout_s", 1.0)
    with serving(predictor) as url:
        host, port = urlsplit(url).hostname, urlsplit(url).port
        start = time.monotonic()
        sock = socket.create_connection((host, port), timeout=10)
        sock.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\n")  # the head never ends
        assert _read_until_closed(sock, timeout=10) == b""
        assert time.monotonic() - start < 5


def test_non_finite_probabilities_are_422_never_returned(predictor, monkeypatch):
    """Issue 12 class 2: a broken card gave NaN probabilities reported as a confident class."""
    png = encode(smooth((64, 64), 7), "PNG")
    with serving(predictor) as url:
        for bad in (np.nan, np.inf):
            monkeypatch.setattr(
                predictor,
                "proba_from_uint8",
                lambda images, temperature=None, bad=bad: np.full((len(images), 3), bad, np.float32),
            )
            for path in ENDPOINTS:
                assert_clean_error(upload(url + path, png, "scan.png"), 422, "scan.png", "non-finite")


def _broken_runs(src, root):
    """(what is wrong, run dir) pairs, each a copy of ``src`` with one defect."""

    def variant(name, edit_card=None, weights=None):
        run = root / name
        shutil.copytree(src, run)
        if edit_card is not None:
            card = json.loads((run / "model_card.json").read_text())
            (run / "model_card.json").write_text(json.dumps(edit_card(card)))
        if weights is not None:
            (run / "model.safetensors").write_bytes(weights((run / "model.safetensors").read_bytes()))
        return name, run

    def with_(section, **values):
        return lambda card: {**card, section: {**(card.get(section) or {}), **values}}

    return [
        variant("temperature_0", with_("calibration", temperature=0.0)),
        variant("temperature_negative", with_("calibration", temperature=-1.0)),
        variant("std_0", with_("preprocessing", std=0.0)),
        variant("duplicate_classes", lambda card: {**card, "classes": ["covid", "covid", "normal"]}),
        variant("input_size_100000", with_("preprocessing", input_size=100000)),
        variant("card_is_a_list", lambda card: [card]),
        variant("empty_weights", weights=lambda data: b""),
        variant("truncated_weights", weights=lambda data: data[: len(data) // 2]),
    ]


@pytest.mark.slow
def test_broken_run_directories_are_refused_at_start_in_one_line(tiny_run, tmp_path, monkeypatch, capsys):
    """`cxr serve` on a broken run: exit 2 and one line naming the problem, before listening."""
    import uvicorn

    from cxrkit.cli.main import main

    def never(self, *args, **kwargs):
        raise AssertionError("a broken run reached uvicorn")

    monkeypatch.setattr(uvicorn.Server, "run", never)
    for name, run in _broken_runs(tiny_run.run_dir, tmp_path):
        with pytest.raises(SystemExit) as exit_info:
            thread_count = threading.active_count()
            main(["serve", str(run), "--port", "0"])
        err = capsys.readouterr().err.strip()
        assert exit_info.value.code == 2, (name, err)
        assert "Traceback" not in err and len(err.splitlines()) == 1, (name, err)
        assert str(run) in err or "model_card" in err or "model.safetensors" in err, (name, err)
        assert threading.active_count() <= thread_count + 1


def test_error_bodies_are_one_line_without_reprs(predictor):
    png = encode(smooth((64, 64)), "PNG")
    with serving(predictor) as url:
        assert_clean_error(request(url + "/v1/explain?format=gif", *_form(png)), 422, "format")
        assert_clean_error(upload(url + "/v1/explain?target=flu", png), 422, "flu", "covid")
        assert_clean_error(request(url + "/nowhere"), 404)
        assert_clean_error(request(url + "/v1/predict"), 405)


def _form(content: bytes):
    from cxrkit.serve.client import multipart

    return multipart(content)


# Issue 29 (round 2): what the first round left.


def _raw(url: str, head: bytes, body: bytes = b"", timeout: float = 10) -> bytes:
    """Send ``head`` (+ ``body``) on a raw socket and read the answer until the server closes."""
    sock = socket.create_connection((urlsplit(url).hostname, urlsplit(url).port), timeout=timeout)
    sock.sendall(head + body)
    return _read_until_closed(sock, timeout)


def test_a_boundary_longer_than_the_parser_takes_is_400_not_500(predictor):
    png = encode(smooth((64, 64)), "PNG")
    with serving(predictor) as url:
        for length in (71, 257, 5000):
            boundary = "b" * length
            body = (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\n\r\n'.encode()
                + png
                + f"\r\n--{boundary}--\r\n".encode()
            )
            headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
            for path in ENDPOINTS:
                assert_clean_error(request(url + path, body, headers), 400, "boundary", str(length))


def test_a_declared_oversized_upload_is_413_before_its_body_is_read(predictor):
    with serving(predictor, max_upload_bytes=1_000_000) as url:
        start = time.monotonic()
        body, headers = _form(bytes(100_000_000))  # what most clients do: send all, then read
        assert_clean_error(request(url + "/v1/predict", body, headers), 413, "1 MB")
        head = (
            "POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=zz\r\n"
            "Content-Length: 100000000\r\nExpect: 100-continue\r\n\r\n"
        ).encode()
        answer = _raw(url, head)  # curl's way: wait for 100 Continue; the 413 comes instead
        assert answer.startswith(b"HTTP/1.1 413") and b"100 Continue" not in answer, answer[:200]
        assert time.monotonic() - start < 20
        assert upload(url + "/v1/predict", encode(smooth((64, 64)), "PNG")).status == 200


def test_an_oversized_or_malformed_request_head_is_a_json_4xx(predictor):
    with serving(predictor) as url:
        reply = request(url + "/v1/predict", headers={"Cookie": "c" * 200_000})
        assert_clean_error(reply, 431, "16 KB")
        answer = _raw(url, b"NOT HTTP AT ALL\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 400") and b'"detail"' in answer, answer[:200]
        assert request(url + "/healthz").status in (200, 404)  # the server still answers


def test_size_messages_name_the_size_that_was_sent(predictor):
    with serving(predictor) as url:
        for shape in ((5000, 2), (2, 5000), (3000, 100)):
            data = encode(smooth(shape), "PNG")
            detail = assert_clean_error(upload(url + "/v1/predict", data, "strip.png"), 422, "strip.png")
            assert f"{shape[1]}x{shape[0]} pixels" in detail, detail


def test_float_pixel_data_dicom_is_named_not_called_empty(predictor, make_dicom, tmp_path):
    arr = smooth((64, 64)).astype(np.float32) / 255
    path = make_dicom("float.dcm", None, Rows=64, Columns=64, FloatPixelData=arr.tobytes())
    with serving(predictor) as url:
        assert_clean_error(upload(url + "/v1/predict", path.read_bytes(), "float.dcm"), 422, "FloatPixelData")
