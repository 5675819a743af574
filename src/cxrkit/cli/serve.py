"""``cxr serve``: the HTTP service and web page (:func:`cxrkit.serve.create_app`) under uvicorn."""

from __future__ import annotations

import argparse
import ipaddress
from pathlib import Path

from .. import RESEARCH_NOTICE
from ..inference.defaults import BACKENDS, DEFAULT_THRESHOLD
from ._console import CliError, console, err_console


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "serve", help="HTTP API and web page for a trained run",
        description="Serve a run: POST /v1/predict and /v1/explain (multipart field 'file'), "
                    "GET /healthz, OpenAPI docs at /docs, and a web page at / to upload an X-ray and "
                    "see the probabilities and the Grad-CAM overlay. Uploads are decoded in memory and "
                    "never stored. Binds 127.0.0.1 unless --host says otherwise; there is no "
                    "authentication, so put it behind one before exposing it. " + RESEARCH_NOTICE,
        epilog="Example:  cxr serve runs/lite0 --port 8000   then open http://127.0.0.1:8000/",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", type=Path, help="run directory made by `cxr train`")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--max-upload-mb", type=float, default=20.0, help="largest accepted upload in MB (default 20)")
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                   help=f"flag predictions whose top probability is below this (default {DEFAULT_THRESHOLD})")
    p.add_argument("--backend", choices=BACKENDS, default="torch", help="torch (default) or onnx")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    import uvicorn

    from ..inference.predictor import Predictor
    from ..serve import create_app

    if args.max_upload_mb <= 0:
        raise CliError("--max-upload-mb must be positive")
    if not _is_loopback(args.host):
        err_console.print(f"[bold yellow]warning:[/] listening on {args.host}: anyone who can reach this "
                          "address can use the model; the service has no authentication")
    predictor = Predictor.from_run(args.run_dir, backend=args.backend, threshold=args.threshold)
    app = create_app(predictor, max_upload_bytes=int(args.max_upload_mb * 1e6))
    console.print(f"[bold]»[/] serving {predictor.model_id} at http://{args.host}:{args.port}/  "
                  f"(API docs: /docs). {RESEARCH_NOTICE}")
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
