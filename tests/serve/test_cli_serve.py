"""``cxr serve`` as users start it: a subprocess bound to 127.0.0.1 by default."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

from cxrkit import RESEARCH_NOTICE


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cxr_serve_answers_health_on_localhost(tiny_run, http, blob_dataset):
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cxrkit.cli.main",
            "serve",
            str(tiny_run.run_dir),
            "--port",
            str(port),
            "--threshold",
            "0.9",
            "--max-upload-mb",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "CXR_NO_TCMALLOC": "1"},
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                health = http.request(f"http://127.0.0.1:{port}/healthz")
                break
            except OSError:
                assert proc.poll() is None, proc.stdout.read()
                assert time.monotonic() < deadline, "cxr serve did not come up"
                time.sleep(0.2)
        assert health.status == 200
        h = health.json()
        assert h["threshold"] == 0.9 and h["max_upload_bytes"] == 1_000_000 and h["notice"] == RESEARCH_NOTICE
        png = (blob_dataset / "covid" / "covid_000.png").read_bytes()
        assert http.upload(f"http://127.0.0.1:{port}/v1/predict", png).json()["threshold"] == 0.9
        assert http.request(f"http://127.0.0.1:{port}/docs").status == 404  # no CDN scripts unless --docs
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert f"127.0.0.1:{port}" in out and "covid_000" not in out  # the file name is never logged
