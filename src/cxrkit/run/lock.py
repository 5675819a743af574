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
process is gone. A lock whose pid runs but is not cxrkit (``/proc/PID/cmdline``: the pid was
reused, e.g. by pid 1 after a container restart) is not taken over, as a live process is never
provably not the holder, but the error says the lock looks stale and names the file to remove,
instead of "wait for it" forever.
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


def _command_line(pid: int) -> list[str] | None:
    """The arguments ``pid`` runs with, from ``/proc`` (None where unreadable: no /proc, gone)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]


def _is_cxrkit(args: list[str]) -> bool:
    """``args`` run cxrkit: the ``cxr`` script, ``python -m cxrkit[.cli.main]``, a file of the package."""
    for arg in args:
        path = Path(arg)
        if path.name in ("cxr", "cxrkit") or arg.startswith("cxrkit.") or "cxrkit" in path.parts[:-1]:
            return True
    return False


def _reused_pid(holder: dict) -> list[str] | None:
    """What the holder's pid runs now, when that is visibly not cxrkit (same host); else None.

    Not proof that the holder is gone (a script that imports cxrkit shows only its own name),
    so it changes the message, not the decision."""
    pid = holder.get("pid")
    if holder.get("host") != socket.gethostname() or not isinstance(pid, int) or pid == os.getpid():
        return None
    args = _command_line(pid)
    return args if args is not None and not _is_cxrkit(args) else None


def live_holder(run_dir: str | Path) -> dict | None:
    """The lock's holder while it looks like a running cxrkit process; None when there is no lock,
    or it is stale or looks stale (what a reader of the folder needs: "is it being written?")."""
    holder = _holder(lock_path(run_dir))
    if not holder or _is_stale(holder) or _reused_pid(holder) is not None:
        return None
    return holder


def describe_holder(holder: dict) -> str:
    """``pid 123 on host (cxr train, since 2024-...)``: the lock's holder in words."""
    return _describe(holder)


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
    now = _reused_pid(holder)
    if now is not None:
        return RunLockedError(
            f"{path}: the lock of {run_dir} names {_describe(holder)}, but pid {holder['pid']} now runs "
            f"`{' '.join(now)[:120]}`, not cxrkit: the lock looks stale (its process ended and the pid was "
            f"reused). If no cxrkit command or script is writing {run_dir}, remove {path} and retry"
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
