"""CPU speed: a malloc that does not page-fault every activation buffer, in every entry point.

glibc's malloc serves blocks above its *dynamic* mmap threshold (128 KiB, rising to at most
32 MiB) with a fresh ``mmap``, and hands them back with ``munmap`` on free. A CNN's
activations are exactly such blocks, so each forward pass maps, page-faults and unmaps tens of
MB again: lite0 inference ran at 55 img/s instead of ~190 (issue 15). :func:`tune_allocator`
runs when ``cxrkit`` is imported and raises the thresholds with ``mallopt`` (glibc only):

* ``M_MMAP_THRESHOLD`` = 256 MiB: buffers up to that size come from the heap and are reused;
* ``M_TRIM_THRESHOLD`` = 512 MiB: free heap memory is given back to the OS only above that.

So a notebook, a script, ``uvicorn cxrkit...`` on the app, Lightning's worker and DDP
processes (they import cxrkit to unpickle its objects or re-run its entry point) all get it,
not just the ``cxr`` command. The cost: up to ~512 MiB of freed memory stays mapped to the
process. In threads other than the main one glibc still maps blocks above ~64 MiB (the size
of a thread arena's heap); lite0's largest activation at batch 32 is 51 MB.
It is skipped when tcmalloc is loaded or the user set glibc's own ``MALLOC_MMAP_THRESHOLD_`` /
``MALLOC_TRIM_THRESHOLD_``.

One switch, ``CXR_MALLOC``: ``auto`` (default: the ``cxr`` command re-executes itself with
tcmalloc when it is installed, every process gets the glibc thresholds otherwise), ``glibc``
(the thresholds, never tcmalloc) or ``system`` (neither). The older ``CXR_NO_TCMALLOC=1``
(= ``glibc``) and ``CXR_NO_MALLOC_TUNING=1`` (= ``system``) still work.

``bench/alloc_speed.py`` measures glibc default vs this vs tcmalloc in interleaved rounds.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import sys

MMAP_THRESHOLD = 256 << 20
TRIM_THRESHOLD = 512 << 20
MALLOC_ENV = "CXR_MALLOC"
MALLOC_CHOICES = ("auto", "glibc", "system")
_OLD_SWITCHES = (("CXR_NO_MALLOC_TUNING", "system"), ("CXR_NO_TCMALLOC", "glibc"))  # deprecated names
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # <malloc.h>
# above glibc's largest dynamic threshold (32 MiB), below ours, and small enough for a thread's
# arena (its heaps are 64 MiB: a thread gets larger blocks by mmap whatever the threshold)
_PROBE_BYTES = 48 << 20

# What tune_allocator() did in this process: "glibc-tuned", "tcmalloc", or why it did nothing.
ALLOCATOR = {"state": "not run"}


def _libc():
    return ctypes.CDLL(None)


def tcmalloc_loaded() -> bool:
    return hasattr(_libc(), "tc_malloc")


def malloc_choice() -> str:
    """``CXR_MALLOC`` (auto, glibc, system), else what an older switch asks for, else auto."""
    value = os.environ.get(MALLOC_ENV, "").strip().lower()
    if value in MALLOC_CHOICES:
        return value
    if value:
        import warnings

        warnings.warn(f"{MALLOC_ENV}={value!r} is not one of {', '.join(MALLOC_CHOICES)}; using auto", stacklevel=2)
    return next((choice for name, choice in _OLD_SWITCHES if os.environ.get(name)), "auto")


def tune_allocator() -> dict:
    """Set the glibc thresholds above (once per process); returns and records what was done."""
    if ALLOCATOR["state"] != "not run":
        return ALLOCATOR
    if malloc_choice() == "system":
        state = f"off ({MALLOC_ENV}=system)"
    elif tcmalloc_loaded():
        state = "tcmalloc"
    elif platform.libc_ver()[0] != "glibc":
        state = "not glibc"
    elif os.environ.get("MALLOC_MMAP_THRESHOLD_") or os.environ.get("MALLOC_TRIM_THRESHOLD_"):
        state = "user's MALLOC_*_THRESHOLD_"
    else:
        libc = _libc()
        ok = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
        state = "glibc-tuned" if ok else "mallopt refused"
    ALLOCATOR["state"] = state
    return ALLOCATOR


def large_blocks_are_mmapped() -> bool | None:
    """Whether a 48 MiB ``malloc`` is served by a fresh mmap (glibc's default) or from the heap.

    Reads glibc's ``mallinfo2().hblks`` (mmapped blocks in use) around one allocation: the
    observable effect of the thresholds, whatever set them. None where mallinfo2 is missing
    (not glibc >= 2.33, or tcmalloc, which has no such counters).
    """
    libc = _libc()
    if tcmalloc_loaded() or not hasattr(libc, "mallinfo2"):
        return None

    class MallInfo2(ctypes.Structure):
        _fields_ = [
            (n, ctypes.c_size_t)
            for n in "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()
        ]

    libc.mallinfo2.restype = MallInfo2
    libc.malloc.restype, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
    before = libc.mallinfo2().hblks
    block = libc.malloc(_PROBE_BYTES)
    after = libc.mallinfo2().hblks
    libc.free(block)
    return after > before


def reexec_with_tcmalloc(args: list[str]) -> None:
    """Re-exec ``python args...`` with tcmalloc in LD_PRELOAD if installed and not yet loaded.

    The ``cxr`` command calls it at start: kept because tcmalloc still measured faster than
    :func:`tune_allocator`'s setting (``cxrkit.load(run).predict`` 1.1-1.5x, on a loaded host:
    docs/results/alloc_speed.md). ``CXR_MALLOC=glibc`` or ``system`` opts out.
    Returns normally (no re-exec) when there is nothing to do.
    """
    if malloc_choice() != "auto" or "tcmalloc" in os.environ.get("LD_PRELOAD", ""):
        return
    lib = ctypes.util.find_library("tcmalloc_minimal") or ctypes.util.find_library("tcmalloc")
    if not lib:
        return
    env = dict(os.environ, LD_PRELOAD=" ".join(filter(None, [lib, os.environ.get("LD_PRELOAD")])))
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, *args], env)
