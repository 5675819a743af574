"""Load test of ``cxr serve`` (issue 12): latency, errors and the server's memory under a burst.

    .venv/bin/python bench/serve_load.py [RUN_DIR] [--requests 200] [--clients 8] [--huge 5]

Starts ``cxr serve RUN_DIR`` as a user would (its own process, tcmalloc when installed), then:

1. warm-up: 2 predicts and 2 explains, then the *start* RSS;
2. ``--requests`` uploads from ``--clients`` concurrent clients, half ``/v1/predict`` and half
   ``/v1/explain`` (PNG overlay), cycling over synthetic X-ray-like images of 299x299 (PNG),
   1024x1024 (PNG) and 2500x2048 (JPEG, above the 2048 px work size);
3. ``--huge`` concurrent explains of one 8000x8000 RGB JPEG (under the 20 MB upload limit);
4. 5 s idle, then the *final* RSS.

The server's RSS (``/proc/PID/status``) is sampled every 50 ms. Without RUN_DIR it uses
runs/demo when it exists, else trains a throwaway run of the default architecture
(tf_efficientnet_lite0, 224 px, 1 epoch from scratch on synthetic blobs) and says so: its
speed and memory are the default model's, its predictions mean nothing. Writes a markdown
table to ``--out`` (default bench/results/serve_load.md) and the same figures with the command,
commit, date, CPU model and flags and thread settings as JSON beside it (``.json``).
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from _common import git_commit, host_info  # noqa: E402

from cxrkit._io import atomic_write_json, atomic_write_text  # noqa: E402
from cxrkit.serve.client import request, upload  # noqa: E402


def xray_like(shape: tuple[int, int], seed: int, noise: float = 8.0) -> np.ndarray:
    """Smooth random structure plus grain, uint8 (compresses like a radiograph, not like a flat image)."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray((rng.random((12, 12)) * 255).astype(np.uint8))
    img = np.asarray(coarse.resize((shape[1], shape[0]), Image.BICUBIC), np.float32)
    return np.clip(img + rng.normal(0, noise, shape).astype(np.float32), 0, 255).astype(np.uint8)


def encode(array: np.ndarray, fmt: str, **save) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt, **save)
    return buf.getvalue()


def workload() -> list[tuple[str, bytes]]:
    return [
        ("kaggle_299.png", encode(xray_like((299, 299), 1), "PNG")),
        ("scan_1024.png", encode(xray_like((1024, 1024), 2), "PNG")),
        ("scan_2500x2048.jpg", encode(xray_like((2500, 2048), 3), "JPEG", quality=92)),
    ]


def huge_jpeg() -> bytes:
    gray = xray_like((8000, 8000), 4, noise=3.0)
    return encode(np.repeat(gray[..., None], 3, axis=2), "JPEG", quality=85)


def default_run(work: Path) -> Path:
    demo = ROOT / "runs" / "demo"
    if (demo / "model_card.json").is_file():
        return demo
    from cxrkit.training import TrainConfig, train

    print(
        "no run given and no runs/demo: training a throwaway tf_efficientnet_lite0 run (224 px, 1 epoch, "
        "synthetic blobs); its speed and memory are the default model's, its predictions mean nothing"
    )
    data = work / "blobs"
    yy, xx = np.mgrid[:224, :224]
    for k, label in enumerate(["covid", "viral_pneumonia", "normal"]):
        (data / label).mkdir(parents=True)
        for i in range(16):
            img = xray_like((224, 224), 100 * k + i) * 0.6 + 90 * np.exp(
                -((yy - 50 - 60 * k) ** 2 + (xx - 112) ** 2) / 800
            )
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(data / label / f"{label}_{i:02d}.png")
    config = TrainConfig(
        data=str(data),
        out=str(work / "run"),
        model="tf_efficientnet_lite0",
        pretrained=False,
        input_size=224,
        epochs=1,
        batch_size=16,
        workers=1,
        cache_dir=str(work / "cache"),
    )
    return train(config, progress_bar=False).run_dir


class RssSampler(threading.Thread):
    """VmRSS of one process every 50 ms; ``peak`` since the last ``reset``."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop = pid, 0, threading.Event()

    def status(self, key: str) -> int:
        with open(f"/proc/{self.pid}/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith(key + ":"))

    def rss_mb(self) -> float:
        return self.status("VmRSS") / 1024

    def run(self) -> None:
        while not self.stop.wait(0.05):
            self.peak = max(self.peak, self.rss_mb())

    def reset(self) -> None:
        self.peak = self.rss_mb()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(run_dir: Path, port: int, src: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "cxrkit.cli.main", "serve", str(run_dir), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=src.parent,
        env={**os.environ, "PYTHONPATH": str(src)},
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"cxr serve exited with {proc.returncode}")
        try:
            if request(f"http://127.0.0.1:{port}/healthz", timeout=2).status == 200:
                return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("cxr serve did not come up within 180 s")


def timed(url: str, name: str, data: bytes) -> tuple[int, float]:
    start = time.perf_counter()
    reply = upload(url, data, name, timeout=300)
    return reply.status, time.perf_counter() - start


def summary(label: str, results: list[tuple[int, float]], rss_peak: float) -> dict:
    lat = sorted(t for _, t in results)
    statuses = [s for s, _ in results]
    return {
        "phase": label,
        "n": len(results),
        "ok": statuses.count(200),
        "4xx": sum(400 <= s < 500 for s in statuses),
        "5xx": sum(s >= 500 for s in statuses),
        "p50_s": statistics.median(lat),
        "p95_s": lat[max(0, int(np.ceil(0.95 * len(lat))) - 1)],
        "peak_rss_mb": rss_peak,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", nargs="?", type=Path)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--huge", type=int, default=5)
    ap.add_argument(
        "--server-src",
        type=Path,
        default=ROOT / "src",
        help="serve from this src folder, e.g. an older commit's (git archive COMMIT src | tar -x -C DIR)",
    )
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "serve_load.md")
    args = ap.parse_args()
    run_dir = args.run_dir or default_run(Path(tempfile.mkdtemp(prefix="serve-load-")))
    files, big = workload(), huge_jpeg()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_server(run_dir, port, args.server_src.resolve())
    sampler = RssSampler(proc.pid)
    sampler.start()
    try:
        for path in ("/v1/predict", "/v1/explain") * 2:
            status, _ = timed(base + path, *files[1])
            assert status == 200, f"warm-up {path} answered {status}"
        time.sleep(2)
        start_rss, start_threads = sampler.rss_mb(), sampler.status("Threads")
        sampler.reset()

        def job(i: int) -> tuple[int, float]:
            return timed(base + ("/v1/explain" if i % 2 else "/v1/predict"), *files[i // 2 % len(files)])

        with ThreadPoolExecutor(args.clients) as pool:
            t0 = time.perf_counter()
            burst = list(pool.map(job, range(args.requests)))
            burst_wall = time.perf_counter() - t0
        rows = [summary(f"{args.requests} requests, {args.clients} clients (half explain)", burst, sampler.peak)]
        sampler.reset()
        with ThreadPoolExecutor(args.huge) as pool:
            huge = list(pool.map(lambda i: timed(base + "/v1/explain", "huge_8000.jpg", big), range(args.huge)))
        rows.append(
            summary(f"{args.huge} concurrent 8000x8000 JPEG explains ({len(big) / 1e6:.1f} MB)", huge, sampler.peak)
        )
        peak = max(r["peak_rss_mb"] for r in rows)
        time.sleep(5)
        final_rss, threads = sampler.rss_mb(), (start_threads, sampler.status("Threads"))
    finally:
        sampler.stop.set()
        proc.terminate()
        proc.wait(30)
    write_table(args.out, run_dir, rows, burst_wall, (start_rss, peak, final_rss), threads, args)


def write_table(
    out: Path, run_dir: Path, rows: list[dict], burst_wall: float, rss: tuple, threads: tuple, args
) -> None:
    start_rss, peak, final_rss = rss
    lines = [
        f"# cxr serve under load ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})",
        "",
        f"Run: `{run_dir}`; {os.cpu_count()} CPU cores; command: `.venv/bin/python bench/serve_load.py"
        f"{' ' + str(args.run_dir) if args.run_dir else ''} --requests {args.requests} --clients {args.clients} "
        f"--huge {args.huge}`; server code: `{args.server_src}`; load average at the end: {os.getloadavg()[0]:.1f} "
        "(this machine is shared)",
        "",
        "| phase | requests | 200 | 4xx | 5xx | p50 s | p95 s | peak server RSS MB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {r['phase']} | {r['n']} | {r['ok']} | {r['4xx']} | {r['5xx']} | {r['p50_s']:.2f} | "
        f"{r['p95_s']:.2f} | {r['peak_rss_mb']:.0f} |"
        for r in rows
    ]
    change = 100 * (final_rss - start_rss) / start_rss
    lines += [
        "",
        f"Burst throughput: {rows[0]['n'] / burst_wall:.1f} requests/s ({burst_wall:.1f} s wall).",
        f"Server RSS: start {start_rss:.0f} MB (after warm-up), peak {peak:.0f} MB, final {final_rss:.0f} MB "
        f"5 s after the last answer ({change:+.1f}% of start; the target is within 20%).",
        f"Server threads: {threads[0]} at start, {threads[1]} at the end.",
        "",
    ]
    atomic_write_text(out, "\n".join(lines))
    atomic_write_json(
        out.with_suffix(".json"),
        {
            "command": " ".join([".venv/bin/python", *sys.argv]),
            "commit": git_commit(),
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "host": host_info(),
            "server_src": str(args.server_src),
            "run_dir": str(run_dir),
            "phases": rows,
            "burst_wall_s": round(burst_wall, 1),
            "burst_requests_per_s": round(rows[0]["n"] / burst_wall, 2),
            "server_rss_mb": {"start": round(start_rss), "peak": round(peak), "final": round(final_rss)},
            "final_vs_start_pct": round(change, 1),
            "server_threads": {"start": threads[0], "end": threads[1]},
            "load_average_end": [round(x, 2) for x in os.getloadavg()],
        },
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
