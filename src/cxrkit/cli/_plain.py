"""Progress as plain lines on stderr, for when it is not a terminal (a log file, CI, nohup).

A rich bar redraws one line in place; written to a file it shows a single frame at exit, so a
42-minute ``cxr train`` logged its stage lines and then nothing until the end. Off a terminal
the commands that run long write instead, at least every :data:`PLAIN_INTERVAL_S`, one line:
``[cxr 12m03s] STEP: 1200/5800 (21%), ETA 3m40s`` (the command's elapsed time, what it is
doing, how far, how long it still needs). Lines come from three places that share
:data:`lines`, so none repeats what another just said:

- :func:`progress_line` is ``progress_bar``'s stand-in: a ``callback(done, total)`` that writes
  when a line is due;
- :class:`~cxrkit.cli._fit_lines.FitLines` (a Lightning callback) writes one line per epoch
  (train loss, val loss and accuracy) and, within an epoch, one when due;
- :func:`heartbeat` covers the steps that report no counts (bootstrap, audit, ...): a thread
  writes the current step and its time so far whenever nothing was written for the interval.

A command that trains (``cxr train``, ``cxr protocols``, later ``cxr adapt``) combines them:
``with heartbeat(): train(..., on_stage=say, progress_bar=False, callbacks=(FitLines(),))``.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable

PLAIN_INTERVAL_S = 60.0  # the longest a long command stays silent off a terminal; tests shrink it


def format_duration(seconds: float) -> str:
    """``42s``, ``4m12s``, ``1h02m``."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


def eta(elapsed: float, fraction: float) -> str:
    """Time still needed when ``fraction`` of the work took ``elapsed`` seconds ("?" before any)."""
    if fraction <= 0:
        return "?"
    return format_duration(elapsed * (1 - min(fraction, 1.0)) / fraction)


class PlainLines:
    """The command's current step, the counts reported for it, and when the last line was written."""

    def __init__(self):
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        now = time.monotonic()
        self.start = self.last = self.step_start = now
        self.step: str | None = None
        self.counts: tuple[int, int] | None = None
        self.counts_start = now

    def write(self, text: str) -> None:
        """One line to stderr, prefixed by the command's elapsed time."""
        with self._lock:
            now = time.monotonic()
            print(f"[cxr {format_duration(now - self.start)}] {text}", file=sys.stderr, flush=True)
            self.last = now

    def due(self) -> bool:
        return time.monotonic() - self.last >= PLAIN_INTERVAL_S

    def set_step(self, text: str) -> None:
        self.step, self.step_start, self.counts = text, time.monotonic(), None

    def update(self, what: str, done: int, total: int) -> None:
        """Counts of the current step; a count that went back (a new pass) restarts the ETA's clock."""
        if self.counts is None or done < self.counts[0] or total != self.counts[1]:
            self.counts_start = time.monotonic()
        self.counts = (done, total)
        if self.step is None:
            self.step = what
        if self.due():
            self.write(self.describe())

    def describe(self) -> str:
        """``STEP: done/total (pct), ETA ...`` or, without counts, ``STEP (4m12s so far)``."""
        now, step = time.monotonic(), self.step or "working"
        if self.counts and self.counts[1]:
            done, total = self.counts
            fraction = done / total
            return f"{step}: {done}/{total} ({fraction:.0%}), ETA {eta(now - self.counts_start, fraction)}"
        return f"{step} ({format_duration(now - self.step_start)} so far)"


lines = PlainLines()


def progress_line(description: str) -> Callable[[int, int], None]:
    """``callback(done, total)`` that writes ``lines.describe()`` when a line is due."""
    return lambda done, total: lines.update(description, done, total)


@contextlib.contextmanager
def heartbeat(enabled: bool = True):
    """While the block runs, a daemon thread writes the current step whenever nothing was
    written for :data:`PLAIN_INTERVAL_S`; a step without counts still says it is alive."""
    lines.reset()
    if not enabled:
        yield lines
        return
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(max(0.05, min(PLAIN_INTERVAL_S, 5.0) / 2)):
            if lines.due():
                lines.write(lines.describe())

    thread = threading.Thread(target=beat, name="cxr-heartbeat", daemon=True)
    thread.start()
    try:
        yield lines
    finally:
        stop.set()
        thread.join(timeout=5)
