"""A real uvicorn server on 127.0.0.1 (free port, own thread, as ``cxr serve`` sets it up) and the
service's stdlib client (:mod:`cxrkit.serve.client`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cxrkit.serve.client import multipart, request, upload
from cxrkit.serve.server import running

CXR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cxr"
SMALL_LIMIT = 200_000  # bytes: oversize tests need only a small upload


class Http:
    """The service's client and server helpers, as a fixture."""

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
    import cxrkit
    from cxrkit.serve import create_app

    # fp32 named: "auto" runs bf16 on hosts with native bf16, and tests check the recorded precision
    app = create_app(cxrkit.load(tiny_run.run_dir, precision="32"), max_upload_bytes=SMALL_LIMIT)
    with running(app) as url:
        yield url, app
