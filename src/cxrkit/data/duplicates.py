"""Perceptual hashing to find near-duplicate radiographs.

The same X-ray often appears twice in public collections (re-encoded, resized, re-published
by another source). If the copies land in train and test, test accuracy measures memory.
A DCT perceptual hash (pHash, Zauner 2010) survives resizing and re-encoding. We use a
256-bit hash (16x16 low frequencies): chest X-rays look so alike that the common 64-bit
hash puts thousands of different children within a few bits of each other.

Threshold (``DEFAULT_MAX_DISTANCE``), chosen by looking at ../shared/data/cxr: the 4 pairs at
<= 36 bits are all true copies (ieee8023 images re-published in the Radiography Database at
30-32 bits, one Radiography Database normal stored twice at 36); from 40 bits on most pairs
are different Kermany children. Copies with added arrows or captions sit at ~46 bits and are
not caught. Re-encoding moves a hash far less (bench/reencode_hashes.py, 400 real films):
JPEG 70-95, 0.5x-2x resizes, 224 px copies and resize + JPEG 75 land 0-8 bits from the
original (median 0-2), so the same threshold finds every re-encoded copy with 28 bits to
spare, and no two distinct films of cxr + nih (19.3M pairs) come within it.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy.fft import dctn

HASH_SIDE = 16  # 16x16 DCT coefficients -> 256 bits
DEFAULT_MAX_DISTANCE = 36


def phash(gray: np.ndarray) -> str:
    """256-bit DCT hash of a 2-D float image in [0, 1], as 64 hex digits."""
    side = HASH_SIDE * 4
    small = Image.fromarray(np.asarray(gray, np.float32), mode="F").resize((side, side), Image.BILINEAR)
    low = dctn(np.asarray(small, np.float64), norm="ortho")[:HASH_SIDE, :HASH_SIDE].ravel()
    return np.packbits(low > np.median(low)).tobytes().hex()


def _as_words(hashes: list[str]) -> np.ndarray:
    """Hashes as rows of 64-bit words: 8x fewer elements to XOR and count than bytes."""
    n_words = HASH_SIDE * HASH_SIDE // 64
    if not hashes:  # reshape(0, -1) is ambiguous
        return np.zeros((0, n_words), np.uint64)
    return np.frombuffer(b"".join(bytes.fromhex(h) for h in hashes), np.uint64).reshape(len(hashes), n_words)


def _distance_blocks(hashes: list[str], chunk: int = 256):
    """Yield (offset, Hamming distances of rows offset..offset+chunk to every row from offset on).

    Only the upper triangle is computed (each pair once): 20k hashes took 8.5 s on this 2-core
    machine while it also trained a model (O(n^2): 100k would take a few minutes).
    """
    words = _as_words(hashes)
    for start in range(0, len(words), chunk):
        block, rest = words[start : start + chunk], words[start:]
        yield start, np.bitwise_count(block[:, None, :] ^ rest[None, :, :]).sum(-1, dtype=np.int32)


def _upper_pairs(dist: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) indices within a block, relative to its offset, of masked pairs i < j."""
    ii, jj = np.nonzero(mask)
    keep = ii < jj
    return ii[keep], jj[keep]


def near_duplicate_pairs(hashes: list[str], max_distance: int = DEFAULT_MAX_DISTANCE) -> list[tuple[int, int]]:
    """All index pairs ``i < j`` whose hashes differ in at most ``max_distance`` bits."""
    pairs: list[tuple[int, int]] = []
    for start, dist in _distance_blocks(hashes):
        ii, jj = _upper_pairs(dist, dist <= max_distance)
        pairs.extend(zip((ii + start).tolist(), (jj + start).tolist()))
    return pairs


def hash_distance_histogram(hashes: list[str], upto: int = 64) -> list[int]:
    """Number of image pairs at each Hamming distance 0..upto (to choose a threshold)."""
    counts = np.zeros(upto + 1, dtype=np.int64)
    for _, dist in _distance_blocks(hashes):
        ii, jj = _upper_pairs(dist, dist <= upto)
        counts += np.bincount(dist[ii, jj], minlength=upto + 1)[: upto + 1]
    return counts.tolist()


class UnionFind:
    """Groups of indices joined pair by pair (patients, near-duplicate films)."""

    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> bool:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return False
        self.parent[max(ra, rb)] = min(ra, rb)
        return True
