"""``cxr adapt``: adapt a run to a new site's labeled films, or measure that in patient folds."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.markup import escape

from ..training.adapt_config import DROP, SITE_WEIGHTS, AdaptSettings
from ._console import CliError, console, progress_bar, say


def _shots(text: str):
    if text.strip().lower() == "all":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a number of patients per label, or 'all'") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be 0 or more")
    return value


def _mapping(items: list[str] | None) -> dict[str, str]:
    out = {}
    for item in items or []:
        label, sep, target = item.partition("=")
        if not sep or not label.strip() or not target.strip():
            raise CliError(f"--map {item!r}: write LABEL=CLASS (or LABEL={DROP}), e.g. bacterial_pneumonia=pneumonia")
        out[label.strip()] = target.strip()
    return out


def add_settings_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of :class:`~cxrkit.training.adapt_config.AdaptSettings` (``cxr adapt`` and
    ``bench/site_adapt.py`` share them); :func:`settings_from_args` reads them back."""
    d = AdaptSettings()
    p.add_argument("--epochs", type=int, default=d.epochs, help=f"fine-tuning epochs (default {d.epochs})")
    p.add_argument("--lr", type=float, default=d.lr, help=f"peak learning rate (default {d.lr:g})")
    p.add_argument(
        "--replay",
        type=int,
        default=d.replay,
        help=f"films of the base's training split mixed in, so it does not forget (default {d.replay})",
    )
    p.add_argument(
        "--replay-ratio",
        type=float,
        default=d.replay_ratio,
        help=f"and at most this many replayed films per site film (default {d.replay_ratio:g})",
    )
    p.add_argument(
        "--site-repeats",
        type=int,
        default=d.site_repeats,
        help=f"times each site film is seen per epoch (default {d.site_repeats})",
    )
    p.add_argument(
        "--anchor",
        type=float,
        default=d.anchor,
        help=f"L2-SP weight pulling the weights toward the base's (default {d.anchor:g}: off)",
    )
    p.add_argument(
        "--site-weights",
        choices=SITE_WEIGHTS,
        default=d.site_weights,
        help="how site films share the site's weight in the loss: 'labels', each label as much as the "
        "base's class balance gives it; 'films', each film alike, so the site's own label mix counts "
        "(more normal films than viral ones pull its calls toward normal; docs/adapting.md has what it did on "
        f"one site) (default {d.site_weights})",
    )
    p.add_argument(
        "--map",
        nargs="+",
        metavar="LABEL=CLASS",
        help=f"map a site label to an output (a class or an auxiliary output), or to {DROP}; "
        "a label that is neither is left out by default",
    )
    p.add_argument("--seed", type=int, default=d.seed)


def settings_from_args(args: argparse.Namespace) -> AdaptSettings:
    """:class:`AdaptSettings` from the flags of :func:`add_settings_arguments`, checked."""
    for name in ("epochs", "replay", "site_repeats"):
        if getattr(args, name) < (0 if name == "replay" else 1):
            raise CliError(f"--{name.replace('_', '-')} {getattr(args, name)}: too small")
    return AdaptSettings(
        epochs=args.epochs,
        lr=args.lr,
        replay=args.replay,
        replay_ratio=args.replay_ratio,
        site_repeats=args.site_repeats,
        anchor=args.anchor,
        site_weights=args.site_weights,
        seed=args.seed,
        label_map=_mapping(args.map),
    )


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "adapt",
        help="adapt a run to a new site's labeled films (and measure the gain in patient folds)",
        description="Fine-tune BASE_RUN on the labeled films of a new site (any layout `cxr data inspect` "
        "reads) while replaying films of the base run's own training split, so it keeps what it knew. "
        "The new run keeps the base's classes, auxiliary outputs, preprocessing and split, names the "
        "base run and the site films in its card, and is calibrated on the base's val split: predict, "
        "explain, serve, export and evaluate take it like any run (`cxr evaluate NEW_RUN` scores the "
        "base's own test split: what the adaptation cost elsewhere). Site labels that are not classes "
        "are left out unless --map names the output they train (e.g. --map bacterial_pneumonia=pneumonia, "
        "the base's auxiliary 'other abnormal' output); what is left out is said. With --folds K it "
        "measures first: the base model on the site, the adapted model on held-out site patients (K "
        "patient-disjoint folds) for a learning curve of 0, 5, 10, 25 and all labeled patients per label, "
        "with 95% CIs, then adapts on every film.",
        epilog="Examples:\n"
        "  cxr adapt runs/default --data ../shared/data/site --out runs/site-adapted\n"
        "  cxr adapt runs/default --data ../shared/data/site --out runs/site-report --folds 5\n"
        "       # OUT/site_report.md + .json + learning_curve.png + site_predictions.csv,\n"
        "       # OUT/model: adapted on every film\n"
        "  cxr adapt runs/ens/members/seed0 --data SITE --out runs/a0  # an ensemble: adapt each member\n"
        "  cxr adapt RUN --data SITE --out NEW --map bacterial_pneumonia=pneumonia\n"
        "       # train a label that is no class as the base's auxiliary output (default: left out)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("base", type=Path, metavar="BASE_RUN", help="the run directory to start from")
    p.add_argument("--data", required=True, type=Path, metavar="SITE", help="the site's labeled films")
    p.add_argument("--out", required=True, type=Path, help="the new run directory (with --folds: the report folder)")
    p.add_argument("--folds", type=int, default=None, metavar="K", help="measure in K patient-disjoint folds first")
    p.add_argument(
        "--shots",
        nargs="+",
        type=_shots,
        default=None,
        metavar="N",
        help="learning-curve steps with --folds: labeled patients per label (default 0 5 10 25 all)",
    )
    add_settings_arguments(p)
    p.add_argument("--workers", type=int, default=2, help="image decoding processes")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    if args.folds is not None and args.folds < 2:
        raise CliError(f"--folds {args.folds}: at least 2 folds (5 is usual)")
    if args.shots is not None and args.folds is None:
        raise CliError("--shots draws the learning curve of --folds K; add --folds")
    settings = settings_from_args(args)
    from ..workflows.adapt import DEFAULT_SHOTS, adapt, site_report
    from ._fit_lines import fit_progress

    # off a terminal: a line per epoch and at least one a minute (an interrupted adaptation leaves no run)
    with fit_progress() as callbacks, progress_bar("reading images") as update:
        if args.folds:
            report = site_report(
                args.base,
                args.data,
                args.out,
                args.folds,
                tuple(args.shots) if args.shots else DEFAULT_SHOTS,
                settings,
                workers=args.workers,
                on_stage=say,
                progress=update,
            )
        else:
            result = adapt(
                args.base,
                args.data,
                args.out,
                settings,
                args.workers,
                callbacks=callbacks,
                on_stage=say,
                progress=update,
            )
    if args.folds:
        from ..evaluation.site_plots import site_markdown

        console.print(site_markdown(report), markup=False)
        console.print(
            f"report: {escape(str(args.out / 'site_report.md'))}; adapted run: {escape(str(args.out / 'model'))}"
        )
        return
    t = result.calibration.get("temperature")
    console.print(
        f"run [bold]{escape(str(result.run_dir))}[/]: adapted from {escape(str(args.base))} on "
        f"{sum(result.card.extra['adaptation']['site']['films'].values())} site films; temperature {t:.2f} "
        "(fitted on the base's val split). Check it before use: cxr adapt ... --folds 5"
    )
