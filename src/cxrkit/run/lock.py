"""One writer per run directory: an exclusive lock file beside the directory.

Two ``cxr train --out X`` started a second apart used to both report success while the folder
ended up with a mix of both runs (or one died inside the metrics logger). Every command that
writes a run directory (train, export, ensemble create, evaluate, lungs train) now holds
:func:`run_lock` while it writes::

    with run_lock("runs/x", "train"):
        ...                                   # runs/.x.cxr-lock exists, naming this process

The lock is ``PARENT/.NAME.cxr-lock``, created with ``O_EXCL`` (one creator wins, on every
POSIX file system) and holding the pid, host, start time and command as JSON. It lives beside
the directory, not inside it, so "is this folder empty?" checks are unaffected and a failed
start that removes its folder leaves nothing behind. A lock whose process is gone (same host,
pid no longer running) is stale: it is taken over under an ``flock`` of the parent folder
(so two takers cannot both replace it) and the caller is told. A lock from another host
cannot be checked: the error names the host and pid and says to remove the file when that
process is gone.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

from ..errors import CxrkitError

LOCK_SUFFIX = ".cxr-lock"
_HELD: dict[Path, int] = {}  # lock path -> nesting depth in this process (export --int8 locks twice)
_MADE: dict[Path, Path] = {}  # lock path -> the top folder acquire() created for it (removed if left empty)


class RunLockedError(CxrkitError, RuntimeError):
    """Another process is writing this run directory (the message names the lock and holder)."""


def lock_path(run_dir: str | Path) -> Path:
    """``PARENT/.NAME.cxr-lock`` of ``run_dir`` (absolute, so ``--out .`` has a name)."""
    root = Path(os.path.abspath(run_dir))
    return root.parent / f".{root.name}{LOCK_SUFFIX}"


def _holder(path: Path) -> dict | None:
    """The lock's JSON, ``{}`` when unreadable (being written, or broken), None when gone."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _is_stale(holder: dict) -> bool:
    """True only when provably dead: same host and that pid no longer runs."""
    pid = holder.get("pid")
    if holder.get("host") != socket.gethostname() or not isinstance(pid, int):
        return False
    return pid == os.getpid() or not _pid_alive(pid)  # our own pid, not held by us: a reused pid


def _describe(holder: dict) -> str:
    return (
        f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} "
        f"({holder.get('command', '?')}, since {holder.get('started', '?')})"
    )


def _create(path: Path, command: str) -> bool:
    """Create the lock with O_EXCL; False when it already exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    info = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command,
    }
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(info) + "\n")
    return True


@contextlib.contextmanager
def _folder_guard(folder: Path) -> Iterator[None]:
    """flock on the folder itself: serialises stale-lock take-overs without an extra file."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the flock


def _locked_error(run_dir: Path, path: Path, holder: dict) -> RunLockedError:
    if not holder:
        return RunLockedError(
            f"{path}: unreadable lock of {run_dir}; another cxr command may be starting. If none is "
            "running, remove the lock file and retry"
        )
    remote = holder.get("host") != socket.gethostname()
    return RunLockedError(
        f"{run_dir} is being written by {_describe(holder)} (lock {path}); wait for it or choose "
        "another --out"
        + (f" (if that process is gone from {holder.get('host')}, remove the lock file)" if remote else "")
    )


def acquire(run_dir: str | Path, command: str, on_note: Callable[[str], None] = lambda m: None) -> Path:
    """Take the lock of ``run_dir`` for ``command`` or raise :class:`RunLockedError`."""
    path = lock_path(run_dir)
    if _HELD.get(path):
        _HELD[path] += 1
        return path
    made = _first_missing(path.parent)
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(3):  # a racing take-over can delete the lock between our tries
        if _create(path, command):
            _HELD[path] = 1
            if made is not None:
                _MADE[path] = made
            return path
        holder = _holder(path)
        if holder is None:
            continue
        if holder == {} and time.time() - _mtime(path) < 5:  # a creator between open and write
            time.sleep(0.2)
            holder = _holder(path)
        if holder is None:
            continue
        if not (holder and _is_stale(holder)):
            raise _locked_error(Path(run_dir), path, holder)
        with _folder_guard(path.parent):
            if _holder(path) == holder:  # nobody took it over while we looked
                path.unlink(missing_ok=True)
                on_note(
                    f"note: took over the stale lock {path} left by {_describe(holder)}, which is no "
                    "longer running; files it left in the folder are checked as usual"
                )
    raise _locked_error(Path(run_dir), path, _holder(path) or {})


def _first_missing(folder: Path) -> Path | None:
    """The outermost ancestor of ``folder`` (itself included) that does not exist yet."""
    missing = None
    while not folder.exists() and folder != folder.parent:
        missing, folder = folder, folder.parent
    return missing


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def release(path: Path) -> None:
    """Drop one hold of ``path``; the file goes when the outermost holder releases it."""
    depth = _HELD.get(path, 0) - 1
    if depth > 0:
        _HELD[path] = depth
        return
    _HELD.pop(path, None)
    holder = _holder(path)
    if holder and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
        path.unlink(missing_ok=True)
    made = _MADE.pop(path, None)
    folder = path.parent
    while made is not None and folder.is_relative_to(made):  # a failed start leaves no empty folders
        try:
            folder.rmdir()
        except OSError:
            break
        folder = folder.parent


@contextlib.contextmanager
def run_lock(run_dir: str | Path, command: str, on_note: Callable[[str], None] = lambda m: None) -> Iterator[Path]:
    """Hold the exclusive lock of ``run_dir`` while the body writes it (see the module docstring)."""
    path = acquire(run_dir, command, on_note)
    try:
        yield path
    finally:
        release(path)


def writes_run(command: str, where: str | Callable[[dict], str | Path] = "run_dir"):
    """Decorate a library function that writes a run directory so it runs under :func:`run_lock`.

    ``where`` names the argument holding the directory, or maps the bound arguments to it
    (``evaluate_and_report`` writes ``out`` or ``RUN/evaluation``).
    """

    def decorate(fn):
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            target = where(bound.arguments) if callable(where) else bound.arguments[where]
            with run_lock(target, command):
                return fn(*args, **kwargs)

        return wrapper

    return decorate
