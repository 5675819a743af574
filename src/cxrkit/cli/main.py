"""Entry point of the ``cxr`` command."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .._meta import RESEARCH_NOTICE, __version__
from .._speed import reexec_with_tcmalloc
from ..errors import CxrkitError
from . import adapt, data, demo, ensemble, evaluate, explain, export, lungs, pacs, predict, protocols, serve, train
from ._console import fail

COMMANDS = (demo, data, train, adapt, evaluate, explain, predict, ensemble, export, serve, lungs, protocols, pacs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cxr",
        description="Train, evaluate and explain chest X-ray classifiers with honest evidence: "
        "patient-level splits, duplicate checks, confound tables. " + RESEARCH_NOTICE,
        epilog="Start with:  cxr data inspect DATA   (DATA: class folders, Kaggle layout, "
        "manifest.csv or ieee8023 metadata.csv). Each command has --help.",
    )
    parser.add_argument("--version", action="version", version=f"cxrkit {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    return parser


def _names_print() -> None:
    """Let stdout print any file name: one that is not UTF-8 (read by Python with surrogates) is
    written as its own bytes, as ``ls`` and the files cxrkit writes do. Under a UTF-8 locale
    Python's stdout is strict and such a name in a note or table stopped the command."""
    for stream in (sys.stdout, sys.stderr):
        if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="surrogateescape" if stream is sys.stdout else "backslashreplace")


def main(argv: list[str] | None = None) -> None:
    """Run ``cxr``; ``argv`` given (tests, scripts) means in-process, without re-exec."""
    if argv is None:
        reexec_with_tcmalloc(["-m", "cxrkit.cli.main", *sys.argv[1:]])
        _names_print()
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # `cxr explain RUN --out X a.png`: argparse gives an optional-length positional (IMAGE...)
    # nothing when options come first, and the images are left over; take them, as predict does.
    if extra and isinstance(getattr(args, "images", None), list) and not any(e.startswith("-") for e in extra):
        args.images += [Path(e) for e in extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    debug = args.debug or bool(os.environ.get("CXR_DEBUG"))
    try:
        args.func(args)
    except KeyboardInterrupt as exc:  # a stopped training says what it kept and how to continue
        fail(str(exc) or "interrupted", 130)
    except (CxrkitError, OSError) as exc:
        if debug:
            raise
        fail(str(exc), getattr(exc, "exit_code", 2))  # e.g. a training stopped by a signal: 128 + its number
    except Exception as exc:  # a bug: say so briefly, and how to see the traceback
        if debug:
            raise
        fail(
            f"unexpected {type(exc).__name__}: {exc}\n"
            "this is a bug in cxrkit; rerun with --debug (or CXR_DEBUG=1) for the traceback and report it",
            1,
        )


if __name__ == "__main__":
    sys.exit(main())
