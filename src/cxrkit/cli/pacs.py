"""``cxr pacs predict`` / ``cxr pacs watch``: run a model on a PACS's chest X-ray studies over
DICOMweb and store the results (SR, optional Grad-CAM overlay) back into each study."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

from .._meta import RESEARCH_NOTICE
from ..errors import UsageError
from ..inference.defaults import DEFAULT_THRESHOLD
from ._console import console, err_console
from .predict import add_precision_argument

LOGIN = (
    "Credentials never go on the command line: set CXR_PACS_TOKEN (bearer) or CXR_PACS_USER and "
    "CXR_PACS_PASSWORD (HTTP basic), or give --credentials FILE (JSON, chmod 600). Logs name studies "
    "by UID only; pixels and patient data stay in memory. "
)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "pacs",
        help="predict on PACS studies over DICOMweb, results back as DICOM SR",
        description="Read CR/DX studies from a PACS (QIDO-RS/WADO-RS), run a trained run, "
        "store a Structured Report (and with --cam a Grad-CAM overlay image) "
        "into each study (STOW-RS). " + RESEARCH_NOTICE,
    )
    sub = p.add_subparsers(dest="pacs_command", required=True, metavar="ACTION")
    pred = sub.add_parser(
        "predict",
        help="process chosen studies once",
        description="Process the chosen studies: frontal CR/DX instances get one SR each; other modalities, "
        "lateral views and unreadable objects are listed with the reason. A study that already has "
        "this model's results is skipped (--reprocess adds a new result series). " + LOGIN + RESEARCH_NOTICE,
        epilog="Examples:\n  cxr pacs predict runs/lite0 --url http://127.0.0.1:8042/dicom-web --all-new --dry-run\n"
        "  cxr pacs predict runs/lite0 --url https://pacs.example.org/dicom-web --study 1.2.3.4 --cam\n"
        "  cxr pacs predict runs/lite0 --url URL --since 2026-11-01 --out summary.json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(pred)
    which = pred.add_mutually_exclusive_group(required=True)
    which.add_argument("--study", nargs="+", metavar="UID", help="Study Instance UID(s) to process")
    which.add_argument("--since", type=_date, help="studies with StudyDate on or after this (YYYY-MM-DD)")
    which.add_argument("--all-new", action="store_true", help="every study not yet processed for this model")
    pred.add_argument("--dry-run", action="store_true", help="list what would be processed; store nothing")
    pred.set_defaults(func=run_predict)
    w = sub.add_parser(
        "watch",
        help="poll for new studies and process each once",
        description="Poll the PACS every --interval seconds and process each new study once "
        "(resumable: kill it and start it again). One summary line per cycle; while "
        "the PACS is down the wait doubles, up to 16 intervals. " + LOGIN + RESEARCH_NOTICE,
    )
    _common(w)
    w.add_argument("--interval", type=float, default=60.0, help="seconds between polls (default 60)")
    w.add_argument("--cycles", type=int, default=None, help="stop after this many polls (default: run until killed)")
    w.add_argument("--since", type=_date, help="only studies with StudyDate on or after this (YYYY-MM-DD)")
    w.add_argument(
        "--max-attempts", type=int, default=3, help="give up on a study after this many failed attempts (default 3)"
    )
    w.set_defaults(func=run_watch)


def _common(p) -> None:
    p.add_argument("run_dir", type=Path, help="run directory made by `cxr train`")
    p.add_argument("--url", required=True, help="DICOMweb root, e.g. http://127.0.0.1:8042/dicom-web")
    p.add_argument("--credentials", type=Path, help="JSON file with a token or username/password (not argv)")
    tls = p.add_mutually_exclusive_group()
    tls.add_argument("--ca-bundle", type=Path, help="CA certificates to verify the PACS's TLS certificate with")
    tls.add_argument("--insecure", action="store_true", help="do not verify TLS certificates (test servers only)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per HTTP request (default 30)")
    p.add_argument(
        "--attempts",
        type=int,
        default=4,
        help="tries per request on connection errors, timeouts, 429 and 5xx; back-off 1, 2, 4 s (default 4)",
    )
    p.add_argument("--cam", action="store_true", help="also store a Grad-CAM overlay image per instance")
    p.add_argument("--reprocess", action="store_true", help="process studies that already have results")
    p.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help=f"flag predictions whose top probability is below this (default {DEFAULT_THRESHOLD})",
    )
    add_precision_argument(p)
    p.add_argument("--state", type=Path, help="job state file (UIDs only; default under the cxrkit cache)")
    p.add_argument("--out", type=Path, help="write the job summary (UIDs and reasons) as JSON here")


def _date(text: str) -> str:
    for fmt in ("%Y-%m-%d", "%Y%m%d"):
        try:
            return dt.datetime.strptime(text, fmt).strftime("%Y%m%d")
        except ValueError:
            pass
    raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)")


def _log(line: str) -> None:
    err_console.print(line, markup=False, highlight=False)


def make_job(args: argparse.Namespace, after_study=None):
    """The PacsJob for the parsed options (tests pass ``after_study`` to act between studies)."""
    from ..inference.loader import load_predictor
    from ..pacs.config import PacsConfig
    from ..pacs.job import PacsJob
    from ..pacs.state import JobState, default_state_path

    if args.attempts < 1:
        raise UsageError(f"--attempts must be at least 1, got {args.attempts}")
    verify = False if args.insecure else (str(args.ca_bundle) if args.ca_bundle else True)
    if args.insecure:
        _log("warning: --insecure: TLS certificates are not verified")
    cfg = PacsConfig(args.url, args.credentials, verify, args.timeout, args.attempts)
    predictor = load_predictor(args.run_dir, threshold=args.threshold, precision=args.precision)
    if predictor.precision_note:
        _log(f"note: {predictor.precision_note}")
    job = PacsJob(predictor, cfg.connect(), cam=args.cam, reprocess=args.reprocess, log=_log, after_study=after_study)
    job.state = JobState(args.state or default_state_path(cfg.base, job.naming.key), job.naming.key)
    return job


def _report(summary, out: Path | None) -> None:
    from .._io import atomic_write_json

    for issue in summary.issues:
        _log(f"{issue.kind}: {issue.uid}: {issue.reason}")
    if summary.stopped:
        _log(f"stopped: {summary.stopped}")
    if out:
        atomic_write_json(out, summary.to_dict())
    console.print(summary.line(), markup=False)
    console.print(RESEARCH_NOTICE, markup=False)


def run_predict(args: argparse.Namespace, after_study=None) -> None:
    job = make_job(args, after_study)
    studies = job.select(args.study, args.since)
    _log(f"{len(studies)} study(ies) to look at on {job.conn.cfg.base} with model {job.naming.key}")
    summary = job.run(studies, dry_run=args.dry_run)
    _report(summary, args.out)
    if summary.failed or (summary.errors and not args.dry_run):
        sys.exit(1)


def run_watch(args: argparse.Namespace, after_study=None) -> None:
    from ..pacs.job import JobSummary, watch

    if args.interval <= 0:
        raise UsageError(f"--interval must be positive, got {args.interval}")
    job = make_job(args, after_study)
    summaries = watch(job, args.interval, args.cycles, args.since, args.max_attempts)
    total = JobSummary()
    for s in summaries:
        for name in ("done", "already", "unreadable", "failed", "issues"):
            getattr(total, name).extend(getattr(s, name))
        total.sr, total.overlays = total.sr + s.sr, total.overlays + s.overlays
        total.stopped = s.stopped
    _report(total, args.out)
