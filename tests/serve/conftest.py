"""A real uvicorn server on 127.0.0.1 (free port, own thread) and a stdlib HTTP client."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

CXR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cxr"
SMALL_LIMIT = 200_000  # bytes: oversize tests need only a small upload


@contextlib.contextmanager
def running(app):
    """Serve ``app`` with uvicorn, as ``cxr serve`` configures it, on a free 127.0.0.1 port; yield the base URL."""
    import uvicorn

    from cxrkit.serve.server import server_config

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(server_config(app, lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@dataclass
class Reply:
    status: int
    headers: dict
    body: bytes

    def json(self):
        return json.loads(self.body)


def request(url: str, data=None, headers: dict | None = None, method: str | None = None) -> Reply:
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=60) as res:
            return Reply(res.status, dict(res.headers), res.read())
    except urllib.error.HTTPError as err:
        return Reply(err.code, dict(err.headers), err.read())


def multipart(content: bytes, filename: str = "x.png", field: str = "file") -> tuple[bytes, dict]:
    """A multipart/form-data body with one file field."""
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def upload(url: str, content: bytes, filename: str = "x.png", field: str = "file") -> Reply:
    body, headers = multipart(content, filename, field)
    return request(url, body, headers)


class Http:
    """The helpers above, as a fixture (test modules cannot import conftest under importlib mode)."""

    running = staticmethod(running)
    request = staticmethod(request)
    multipart = staticmethod(multipart)
    upload = staticmethod(upload)
    SMALL_LIMIT = SMALL_LIMIT


@pytest.fixture(scope="session")
def http() -> type[Http]:
    return Http


@pytest.fixture(scope="session")
def served(tiny_run):
    """The tiny run behind a live server with a 200 kB upload limit: (base URL, app)."""
    from cxrkit.serve import create_app

    app = create_app(tiny_run.run_dir, max_upload_bytes=SMALL_LIMIT)
    with running(app) as url:
        yield url, app
