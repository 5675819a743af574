"""Atomic file writes (a crash mid-write never leaves a half-written report or checkpoint) and a
lock for caches that several processes may build at once."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
from pathlib import Path


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def file_sha256(path: str | Path) -> str:
    """SHA-256 (hex) of a file, read in 1 MB chunks (weights files are 12+ MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual file permissions
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def text_bytes(text: str) -> bytes:
    """``text`` as UTF-8, file names that are not UTF-8 kept byte for byte.

    Python reads a name with invalid UTF-8 bytes (a copy from an old Windows share: ``bad\\xff.png``)
    as a string with lone surrogates (surrogateescape); a plain ``encode()`` of it raised, and
    ``cxr train``/``inspect``/``evaluate``/``predict --out`` stopped with "this is a bug". Valid
    text gives the same bytes as before, so keys and fingerprints of other names do not change."""
    return text.encode("utf-8", "surrogateescape")


def read_text(path: str | Path) -> str:
    """A UTF-8 file written by :func:`atomic_write_text`, such names read back as they were written."""
    return Path(path).read_bytes().decode("utf-8", "surrogateescape")


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` atomically as UTF-8 (:func:`text_bytes`: a file name that is not UTF-8 is
    written as its own bytes, so the file names it exactly)."""
    return atomic_write_bytes(path, text_bytes(text))


def _nan_to_null(obj):
    """JSON has no NaN: write undefined metrics as null so every JSON reader accepts the file."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_null(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_null(v) for v in obj]
    return obj


def atomic_write_json(path: str | Path, obj) -> Path:
    text = json.dumps(_nan_to_null(obj), indent=2, default=str, allow_nan=False)
    return atomic_write_text(path, text + "\n")


@contextlib.contextmanager
def build_lock(target: str | Path):
    """Hold an exclusive lock named after ``target`` while it is built.

    Processes that start together (the ranks of a torchrun or SLURM launch, two commands on
    one dataset) then build a cache once: the first builds, the others wait and reuse it.
    Where ``fcntl`` is missing (Windows) nothing is locked and each builds its own copy.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    lock = Path(target).with_name(f".{Path(target).name}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
_NEEDS_QUOTES = (",", '"', "\r", "\n")


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def csv_cell(value, neutralise: bool = True) -> str:
    """One CSV field, quoted per RFC 4180 when it holds a comma, quote, CR or LF.

    Python's ``csv.writer`` with ``lineterminator="\\n"`` leaves a lone carriage return unquoted,
    and every reader then splits the row there. With ``neutralise`` a text cell that starts with
    ``= + - @``, a tab or CR gets a leading ``'`` so spreadsheets show it as text instead of
    running it (numbers such as ``-0.5`` are left alone); a reader recovers the name by dropping
    that one ``'``. Files cxrkit reads back itself (split.csv) are written without it.
    """
    cell = "" if value is None else str(value)
    if neutralise and cell.startswith(FORMULA_PREFIXES) and not _is_number(cell):
        cell = "'" + cell
    if any(c in cell for c in _NEEDS_QUOTES):
        cell = '"' + cell.replace('"', '""') + '"'
    return cell


def csv_text(rows, neutralise: bool = True) -> str:
    """Rows (header first) as CSV text: RFC 4180 quoting (:func:`csv_cell`), ``\\n`` line ends."""
    return "".join(",".join(csv_cell(v, neutralise) for v in row) + "\n" for row in rows)
