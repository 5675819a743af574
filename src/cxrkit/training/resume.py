"""Resuming a run: what is checked before anything of it is touched, and what a Ctrl-C says.

A resume used to find out late what it could not do. ``--epochs 3`` on a run with 30 epochs
done ended in Lightning's "restored a checkpoint with current_epoch=30" as "a bug in cxrkit",
after config.yaml had been rewritten with the bad value (so the next plain ``--resume`` failed
the same way); ``--epochs`` equal to the epochs done retrained nothing and rewrote the card,
dropping the calibration ``cxr evaluate`` had fitted. :func:`check_resume` now refuses both
first, naming the run and its epochs done. A Ctrl-C that Lightning handles itself (a silent
``exit(1)``) becomes :class:`~cxrkit.training.stop.TrainingStopped` too (:func:`stopped`).
"""

from __future__ import annotations

import shlex
from pathlib import Path

from ..data.multi import data_roots
from ..errors import UsageError
from ..run import RunDir
from .config import TrainConfig


def epochs_done(checkpoint: dict) -> int:
    """Epochs trained in a Lightning checkpoint (``last.ckpt`` is saved after each epoch's validation)."""
    try:
        return int(checkpoint["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"])
    except (KeyError, TypeError, ValueError):
        return int(checkpoint.get("epoch", -1)) + 1


def resume_command(run: RunDir, epochs: int | None = None) -> str:
    """``cxr train --resume RUN [--epochs N]``, quoted for a shell."""
    return f"cxr train --resume {shlex.quote(str(run.root))}" + (f" --epochs {epochs}" if epochs else "")


def check_resume(config: TrainConfig, run: RunDir, checkpoint: dict) -> int:
    """The epochs done in ``checkpoint``, once ``config`` can continue from it; else a UsageError.

    Refused: ``config.epochs`` below the epochs done, or equal to them for a finished run (nothing
    to train; its model and card stay as they are), and a relative data, weights or lung-run path
    of a config.yaml written before paths were stored absolute that does not exist from here.
    An unfinished run with all its epochs done (stopped while writing its model) is finished:
    Lightning trains nothing and the model is written from the best checkpoint.
    """
    done = epochs_done(checkpoint)
    if config.epochs < done or (config.epochs == done and run.is_finished()):
        state = "finished; its model and card are in place" if run.is_finished() else "not finished"
        raise UsageError(
            f"{run.root} has {done} epoch(s) done ({state}): --epochs {config.epochs} leaves nothing to "
            f"train, and nothing was changed. To train on, give --epochs above {done}, e.g. "
            f"`{resume_command(run, done + 1)}`"
        )
    for name in ("data", "weights", "lung_run"):
        for path in data_roots(getattr(config, name)) if getattr(config, name) else []:
            if not Path(path).expanduser().is_absolute() and not Path(path).expanduser().exists():
                raise UsageError(
                    f"{run.config}: {name} {path!r} is relative to the folder this run was started from, and "
                    f"{Path.cwd()} has no such path: resume from that folder, or write the absolute path into "
                    f"{run.config} (runs made now store absolute paths)"
                )
    return done


def stopped(run: RunDir, epochs: int):
    """Lightning's own stop of a fit (a signal before our handler is in, a run of several
    processes) as :class:`~cxrkit.training.stop.TrainingStopped`, saying what was kept."""
    import signal

    from .checkpoint_io import SafeCheckpointIO
    from .stop import TrainingStopped

    if not run.last_checkpoint.is_file():
        return TrainingStopped(signal.SIGINT, None, f"during the first epoch of {run.root}")
    try:
        done = f"{epochs_done(SafeCheckpointIO().load_checkpoint(run.last_checkpoint))} of {epochs} epoch(s)"
    except Exception:  # noqa: BLE001 - the message must come out whatever the file holds
        done = "some epochs"
    where = f"in {run.root} after {done} (the epoch in progress is lost)"
    return TrainingStopped(signal.SIGINT, run.last_checkpoint, where, saved=False)
