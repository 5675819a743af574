"""Shared terminal helpers: one rich console, progress bars, clean error exits."""

from __future__ import annotations

import contextlib
import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..errors import CxrkitError

console = Console(stderr=False, highlight=False, soft_wrap=True)  # never break paths
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


class CliError(CxrkitError):
    """An error whose message is all the user needs (no traceback)."""


@contextlib.contextmanager
def progress_bar(description: str):
    """Yield a ``callback(done, total)`` that drives a rich progress bar with ETA."""
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
        disable=not err_console.is_terminal,
    ) as prog:
        task = prog.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            prog.update(task, completed=done, total=total)

        yield update


def fail(message: str, code: int = 2) -> None:
    err_console.print(f"[bold red]error:[/] {message}")
    sys.exit(code)
