"""Which files to read, and reading them safely: the one folder walk of cxrkit.

Datasets (class folders), ``cxr predict`` and ``cxr explain`` all find their images through
:func:`iter_image_files`, so they agree on what an image is. Only regular files are ever
opened: a FIFO named ``x.png`` would block a read forever, a symlink to ``/dev/zero`` would
read without end, and a dangling symlink has nothing to read; each is reported with the
reason instead (``FoundFile.skip_reason``). :func:`read_bounded` opens without blocking,
checks the type of what it opened and refuses files above :data:`MAX_FILE_BYTES` before
reading them.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import CxrkitError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm", ".dicom"})

# Largest file read: 64 MP (the decoder's pixel limit) in float32 is 256 MiB, the biggest
# uncompressed image that could pass; real radiographs are 5-50 MB (18 MP at 16 bit = 36 MB).
MAX_FILE_BYTES = 256 * 2**20

_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a directory"),
)


class FileReadError(CxrkitError, OSError):
    """A file that cannot be read safely; ``str()`` names the file and the reason."""

    def __init__(self, path: str | Path, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):
        return type(self), (self.path, self.reason)


def is_image_file(path: Path) -> bool:
    """True when the suffix is one we read (DICOM files without suffix are sniffed: :func:`sniff_dicom`)."""
    return path.suffix.lower() in IMAGE_SUFFIXES


def is_dicom(data: bytes) -> bool:
    return len(data) >= 132 and data[128:132] == b"DICM"


def _kind(mode: int) -> str | None:
    """Why a file of this st_mode is not read, or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    return next((f"not a regular file: {name}" for test, name in _KINDS if test(mode)), "not a regular file")


def file_problem(path: str | Path) -> str | None:
    """Why ``path`` will not be read (missing, dangling symlink, FIFO, device...), or None."""
    try:
        return _kind(os.stat(path).st_mode)
    except FileNotFoundError:
        return "dangling symlink (its target does not exist)" if os.path.islink(path) else "file not found"
    except OSError as exc:
        return f"cannot stat file ({exc.strerror or exc})"


def _open_regular(path: str | Path):
    """An open binary file object for regular file ``path`` (with its size), or FileReadError.

    Opened with ``O_NONBLOCK`` (a FIFO does not block the open) and checked with ``fstat`` on
    the open descriptor, so a file swapped for a pipe after an earlier check is refused too.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise FileReadError(path, file_problem(path) or "file not found") from None
    except IsADirectoryError:
        raise FileReadError(path, "is a directory, not an image file") from None
    except OSError as exc:
        raise FileReadError(path, f"cannot open file ({exc.strerror or exc})") from None
    st = os.fstat(fd)
    problem = _kind(st.st_mode)
    if problem:
        os.close(fd)
        raise FileReadError(path, problem)
    return os.fdopen(fd, "rb"), st.st_size


def read_bounded(path: str | Path, limit: int | None = None) -> bytes:
    """The bytes of regular file ``path``, refusing other kinds and anything over ``limit`` bytes
    (default :data:`MAX_FILE_BYTES`) before reading it."""
    limit = MAX_FILE_BYTES if limit is None else limit
    fh, size = _open_regular(path)
    with fh:
        if size > limit:
            raise FileReadError(path, f"file is {size:,} bytes, above the {limit:,}-byte limit")
        try:
            data = fh.read(limit + 1)
        except OSError as exc:
            raise FileReadError(path, f"cannot read file ({exc.strerror or exc})") from None
    if len(data) > limit:  # grew while being read
        raise FileReadError(path, f"file is over the {limit:,}-byte limit")
    return data


def sniff_dicom(path: str | Path) -> bool:
    """True when ``path`` is a regular file that starts like DICOM (``DICM`` at byte 128)."""
    try:
        fh, _ = _open_regular(path)
        with fh:
            return is_dicom(fh.read(132))
    except (FileReadError, OSError):
        return False


@dataclass(frozen=True)
class FoundFile:
    """One file met by :func:`iter_image_files`.

    ``skip_reason`` set: it will not be read (listed as skipped with this reason);
    ``is_image`` False: a regular file that is not an image (only counted).
    """

    path: Path
    skip_reason: str | None = None
    is_image: bool = True


def iter_image_files(paths: Iterable[str | Path], skip_dirs: Iterable[str] = ()) -> Iterator[FoundFile]:
    """Every file under ``paths``: folders walked recursively in sorted order, hidden files and
    folders (``.DS_Store``, ``.git``) passed over, ``skip_dirs`` names left out at the top of
    each folder. A file named in ``paths`` is taken as an image whatever its suffix (the
    decoder then says what it is); inside folders only image suffixes and suffix-less DICOMs.
    """
    skip = set(skip_dirs)
    for given in paths:
        path = Path(given)
        if path.is_dir():
            yield from _walk(path, skip)
        else:
            yield FoundFile(path, file_problem(path))


def _walk(root: Path, skip_top: set[str]) -> Iterator[FoundFile]:
    unlistable: list[OSError] = []  # os.walk passes over folders it cannot list unless told
    for dirpath, dirnames, filenames in os.walk(root, onerror=unlistable.append):
        top = Path(dirpath) == root
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and not (top and d in skip_top))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            problem = file_problem(path)
            if is_image_file(path):
                yield FoundFile(path, problem)
            elif not path.suffix and problem and problem.startswith("dangling"):
                yield FoundFile(path, problem)  # might have been a suffix-less DICOM: say why it is not read
            elif not path.suffix and problem is None and sniff_dicom(path):
                yield FoundFile(path)
            else:
                yield FoundFile(path, is_image=False)
    for err in unlistable:
        yield FoundFile(
            Path(err.filename or root), f"cannot list folder ({err.strerror or err}): its files are not read"
        )
