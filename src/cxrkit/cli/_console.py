"""Shared terminal helpers: one rich console, progress bars (plain lines off a terminal), clean error exits."""

from __future__ import annotations

import contextlib
import sys

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..errors import CxrkitError
from . import _plain
from ._plain import lines, progress_line

console = Console(stderr=False, highlight=False, soft_wrap=True)  # never break paths
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


class CliError(CxrkitError):
    """An error whose message is all the user needs (no traceback)."""


def plain() -> bool:
    """True when progress goes out as plain lines (stderr is a log file, a pipe, CI), not bars."""
    return not err_console.is_terminal


def heartbeat():
    """Off a terminal, :func:`._plain.heartbeat` for the block (a line at least every
    ``PLAIN_INTERVAL_S``, whatever the step); on one, nothing."""
    return _plain.heartbeat(enabled=plain())


@contextlib.contextmanager
def progress_bar(description: str):
    """Yield a ``callback(done, total)`` that drives a rich progress bar with ETA; off a
    terminal, one that writes a plain line at most every ``_plain.PLAIN_INTERVAL_S``."""
    if plain():
        yield progress_line(description)
        return
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    ) as prog:
        task = prog.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            prog.update(task, completed=done, total=total)

        yield update


def plain_progress(description: str):
    """Off a terminal, the plain ``callback(done, total)`` of :func:`progress_bar`; on one, None
    (for a count that covers one step of a command: a bar would stay up after it)."""
    return progress_line(description) if plain() else None


def say(message: str) -> None:
    """A stage line (``» message``) on stdout, also the step that plain progress lines name.
    Warnings and skipped-file notes are shown in yellow and are not steps. No rich markup in
    ``message``: paths may hold [brackets]."""
    warning = message.startswith(("warning", "note", "  "))
    console.print(f"{'[yellow]»[/]' if warning else '[bold]»[/]'} {escape(message)}")
    if not warning:
        lines.set_step(message)


def fail(message: str, code: int = 2) -> None:
    err_console.print(f"[bold red]error:[/] {message}")
    sys.exit(code)
