"""The malloc setting of cxrkit._speed is in force in every process where cxrkit runs.

Throughput tests are unstable on a shared host, so these check the setting itself: in each
process, whether a 48 MiB malloc gets its own mmap (glibc's default; what made lite0
inference 3x slower) or comes from the heap. bench/alloc_speed.py measures the speed.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("probe_worker.py")
TUNED = {"state": "glibc-tuned", "mmapped": False}


def clean_env(**extra) -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("LD_PRELOAD", "CXR_NO_MALLOC_TUNING", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
    }
    return {**env, "OMP_NUM_THREADS": "1", "CXR_NO_TCMALLOC": "1", **extra}


def reports(*args: str, env: dict | None = None, launcher: tuple[str, ...] = (sys.executable,)) -> list[dict]:
    proc = subprocess.run(
        [*launcher, str(WORKER), *args], env=env or clean_env(), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [obj for line in proc.stdout.splitlines() if line.startswith("{") for obj in _objects(line)]


def _objects(line: str) -> list[dict]:
    """The JSON objects on one line: two DDP ranks printing at once can share a line."""
    decoder, out, i = json.JSONDecoder(), [], 0
    while i < len(line):
        obj, i = decoder.raw_decode(line, i)
        out.append(obj)
        while i < len(line) and line[i] != "{":
            i += 1
    return out


def in_force(report: dict) -> bool:
    return {k: report[k] for k in TUNED} == TUNED


def test_import_sets_it_and_the_switch_turns_it_off():
    (on,) = reports("import")
    assert in_force(on), on
    (off,) = reports("import", env=clean_env(CXR_NO_MALLOC_TUNING="1"))
    assert off["state"].startswith("off") and off["mmapped"] is True  # the probe sees glibc's default


def test_users_own_glibc_setting_is_left_alone():
    (r,) = reports("import", env=clean_env(MALLOC_MMAP_THRESHOLD_=str(1 << 20)))
    assert r["state"] == "user's MALLOC_*_THRESHOLD_" and r["mmapped"] is True  # 1 MiB: theirs, not ours


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_dataloader_worker_processes(context):
    (r,) = reports("loader", context)
    assert r["where"] == "loader worker" and in_force(r), r


@pytest.mark.slow
def test_every_ddp_process():
    out = reports(
        "ddp", launcher=(sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2")
    )
    assert sorted(r["where"] for r in out) == ["ddp rank 0", "ddp rank 1"]
    assert all(in_force(r) for r in out) and out[0]["pid"] != out[1]["pid"], out


def test_cxr_serve_process(tiny_run):
    (r,) = reports("serve", str(tiny_run.run_dir))
    assert r["where"] == "cxr serve (FastAPI)" and in_force(r), r


@pytest.mark.slow
def test_app_under_external_uvicorn(tiny_run, tmp_path):
    """``uvicorn module:app`` of a user's file that builds the app: the serving process has it."""
    (tmp_path / "userapp.py").write_text(
        "from cxrkit.serve import create_app\n"
        "from cxrkit._speed import ALLOCATOR, large_blocks_are_mmapped\n"
        f"app = create_app({str(tiny_run.run_dir)!r})\n"
        "app.add_api_route('/probe', lambda: {'state': ALLOCATOR['state'], 'mmapped': large_blocks_are_mmapped()})\n"
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "userapp:app",
            "--app-dir",
            str(tmp_path),
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        for _ in range(360):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/probe", timeout=2) as resp:
                    r = json.loads(resp.read())
                break
            except OSError:
                assert server.poll() is None, server.communicate()[1][-3000:]
                time.sleep(0.5)
        else:
            pytest.fail("uvicorn did not answer within 180 s")
    finally:
        server.terminate()
        server.wait(10)
    assert in_force(r), r


def test_one_switch_and_the_old_names_of_it(monkeypatch):
    from cxrkit._speed import malloc_choice

    for name in ("CXR_MALLOC", "CXR_NO_MALLOC_TUNING", "CXR_NO_TCMALLOC"):
        monkeypatch.delenv(name, raising=False)
    assert malloc_choice() == "auto"
    monkeypatch.setenv("CXR_NO_TCMALLOC", "1")
    assert malloc_choice() == "glibc"
    monkeypatch.setenv("CXR_NO_MALLOC_TUNING", "1")
    assert malloc_choice() == "system"
    monkeypatch.setenv("CXR_MALLOC", "glibc")  # the new name wins
    assert malloc_choice() == "glibc"
    monkeypatch.setenv("CXR_MALLOC", "jemalloc")
    with pytest.warns(UserWarning, match="not one of auto, glibc, system"):
        assert malloc_choice() == "system"  # an unknown value: the old switches still apply
