"""``cxr serve``: the HTTP service and web page (:func:`cxrkit.serve.create_app`) under uvicorn."""

from __future__ import annotations

import argparse
import ipaddress
from pathlib import Path

from .._meta import RESEARCH_NOTICE
from ..errors import CxrkitError
from ..inference.defaults import BACKENDS, DEFAULT_BACKEND, DEFAULT_THRESHOLD
from ._console import CliError, console, err_console
from .predict import add_precision_argument, add_tta_argument

MAX_CONNECTIONS = 64  # as cxrkit.serve.server.MAX_CONNECTIONS (not imported: `cxr --help` stays light)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "serve",
        help="HTTP API and web page for a trained run",
        description="Serve a run: POST /v1/predict and /v1/explain (multipart field 'file'), "
        "GET /healthz and /openapi.json, and a web page at / to upload an X-ray and "
        "see the probabilities and the Grad-CAM overlay. Uploads are decoded in memory and "
        "never stored; images above 2048 px are reduced first. Binds 127.0.0.1 unless --host "
        "says otherwise; there is no authentication, so put it behind one before exposing it. " + RESEARCH_NOTICE,
        epilog="Example:  cxr serve runs/lite0 --port 8000   then open http://127.0.0.1:8000/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run_dir", type=Path, help="run directory made by `cxr train`, or an ensemble directory")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--max-upload-mb", type=float, default=20.0, help="largest accepted upload in MB (default 20)")
    p.add_argument(
        "--max-megapixels",
        type=float,
        default=64.0,
        help="largest accepted image, width x height from its header, in millions (default 64)",
    )
    p.add_argument(
        "--busy",
        type=int,
        default=2,
        help="requests decoded and run on the model at once (default 2); more wait in a queue",
    )
    p.add_argument(
        "--queue-wait",
        type=float,
        default=30.0,
        help="seconds a request waits for a free slot before a 503 with Retry-After (default 30)",
    )
    p.add_argument(
        "--body-timeout",
        type=float,
        default=30.0,
        help="seconds the whole upload may take to arrive before a 408 (default 30)",
    )
    p.add_argument(
        "--max-connections",
        type=int,
        default=MAX_CONNECTIONS,
        help=f"open connections before new ones get 503 (default {MAX_CONNECTIONS})",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help=f"flag predictions whose top probability is below this (default {DEFAULT_THRESHOLD})",
    )
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        default=DEFAULT_BACKEND,
        help="auto: the run's int8 ONNX export, else its fp32 one, else torch (see `cxr predict -h`); "
        f"/v1/explain always runs the torch network (default {DEFAULT_BACKEND})",
    )
    add_tta_argument(p)
    add_precision_argument(p)
    p.add_argument(
        "--docs",
        action="store_true",
        help="serve Swagger UI at /docs and /redoc (off by default: they load scripts from a CDN)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    import uvicorn

    from ..inference.loader import load_predictor
    from ..serve import create_app
    from ..serve.limits import Limits
    from ..serve.server import bind_socket, server_config

    for option, value in (
        ("--max-upload-mb", args.max_upload_mb),
        ("--max-megapixels", args.max_megapixels),
        ("--busy", args.busy),
        ("--queue-wait", args.queue_wait),
        ("--body-timeout", args.body_timeout),
        ("--max-connections", args.max_connections),
    ):
        if not value > 0:
            raise CliError(f"{option} must be positive, got {value}")
    if not _is_loopback(args.host):
        err_console.print(
            f"[bold yellow]warning:[/] listening on {args.host}: anyone who can reach this "
            "address can use the model; the service has no authentication"
        )
    try:
        predictor = load_predictor(
            args.run_dir, backend=args.backend, threshold=args.threshold, tta=args.tta, precision=args.precision
        )
    except CxrkitError:
        raise
    except Exception as exc:  # a broken run folder (truncated weights, odd card): one line, not a traceback
        raise CliError(f"{args.run_dir}: cannot load the run ({type(exc).__name__}: {exc})") from None
    for note in (predictor.backend_note, predictor.precision_note):
        if note:
            err_console.print(f"note: {note}")
    limits = Limits(
        max_upload_bytes=int(args.max_upload_mb * 1e6),
        max_pixels=int(args.max_megapixels * 1e6),
        busy=args.busy,
        queue_wait_s=args.queue_wait,
        body_timeout_s=args.body_timeout,
    )
    app = create_app(predictor, limits=limits, docs=args.docs)
    sock = bind_socket(args.host, args.port)  # a busy port fails here, before "serving at"
    console.print(
        f"[bold]»[/] serving {predictor.model_id} at http://{args.host}:{args.port}/"
        f"{'  (API docs: /docs)' if args.docs else ''}. {RESEARCH_NOTICE}"
    )
    server = uvicorn.Server(server_config(app, args.host, args.port, max_connections=args.max_connections))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
