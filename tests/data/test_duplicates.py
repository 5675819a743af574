"""duplicates: pHash survives resizing/re-encoding, pair search and histogram are exact."""

from __future__ import annotations

import io
from itertools import combinations

import numpy as np
import pytest
from PIL import Image

from cxrkit.data.duplicates import DEFAULT_MAX_DISTANCE, hash_distance_histogram, near_duplicate_pairs, phash
from cxrkit.data.images import read_image


def _distance(a: str, b: str) -> int:
    return bin(int(a, 16) ^ int(b, 16)).count("1")


def _random_hashes(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [rng.bytes(32).hex() for _ in range(n)]


def _flip_bits(h: str, bits: list[int]) -> str:
    value = int(h, 16)
    for b in bits:
        value ^= 1 << b
    return f"{value:064x}"


def test_phash_format_and_determinism(synth_array):
    gray = synth_array(1, (80, 60)) / 255.0
    h = phash(gray)
    assert isinstance(h, str) and len(h) == 64 and int(h, 16) >= 0
    assert phash(gray.astype(np.float64)) == h
    # half the low-frequency coefficients are above their median
    assert bin(int(h, 16)).count("1") == 128


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_resized_reencoded_copy_is_near(tmp_path, synth_array, seed):
    arr = synth_array(seed, (256, 300))
    Image.fromarray(arr).save(tmp_path / "orig.png")
    copy = io.BytesIO()
    Image.fromarray(arr).resize((170, 150), Image.LANCZOS).save(copy, "JPEG", quality=70)
    h_orig = phash(read_image(tmp_path / "orig.png"))
    h_copy = phash(read_image(copy.getvalue()))
    assert _distance(h_orig, h_copy) <= DEFAULT_MAX_DISTANCE
    # brightness/contrast shift of the copy keeps it near too
    shifted = np.clip(read_image(copy.getvalue()) * 0.8 + 0.1, 0, 1)
    assert _distance(h_orig, phash(shifted)) <= DEFAULT_MAX_DISTANCE


def test_different_images_are_far(synth_array):
    hashes = [phash(synth_array(seed, (128, 128)) / 255.0) for seed in range(8)]
    distances = [_distance(a, b) for a, b in combinations(hashes, 2)]
    assert min(distances) > 2 * DEFAULT_MAX_DISTANCE
    assert near_duplicate_pairs(hashes) == []


def test_near_duplicate_pairs_finds_exactly_the_planted_pairs():
    hashes = _random_hashes(300, seed=3)  # random 256-bit hashes: ~128 bits apart
    hashes[40] = _flip_bits(hashes[5], [0, 7, 100, 255])  # 4 bits apart
    hashes[299] = hashes[100]  # identical, across the 256-row block boundary
    hashes[280] = _flip_bits(hashes[3], list(range(0, 2 * DEFAULT_MAX_DISTANCE, 2)))  # at the limit
    pairs = near_duplicate_pairs(hashes)
    assert set(pairs) == {(5, 40), (100, 299), (3, 280)}
    assert len(pairs) == 3 and all(i < j for i, j in pairs)
    assert set(near_duplicate_pairs(hashes, DEFAULT_MAX_DISTANCE - 1)) == {(5, 40), (100, 299)}
    assert set(near_duplicate_pairs(hashes, 0)) == {(100, 299)}


def test_near_duplicate_pairs_matches_brute_force():
    hashes = _random_hashes(60, seed=4)
    for k in range(1, 60, 7):  # plant several chains of near copies
        hashes[k] = _flip_bits(hashes[k - 1], [k, k + 50])
    expected = {(i, j) for i, j in combinations(range(60), 2) if _distance(hashes[i], hashes[j]) <= 20}
    assert expected and set(near_duplicate_pairs(hashes, 20)) == expected


@pytest.mark.parametrize("n", [40, 300])
def test_histogram_counts_every_pair_once(n):
    hashes = _random_hashes(n, seed=n)
    hashes[1] = hashes[0]
    full = hash_distance_histogram(hashes, upto=256)
    assert len(full) == 257
    assert sum(full) == n * (n - 1) // 2
    assert full[0] == 1
    brute = np.bincount([_distance(a, b) for a, b in combinations(hashes, 2)], minlength=257)
    assert full == brute.tolist()
    small = hash_distance_histogram(hashes)  # default upto=64 keeps only the small distances
    assert len(small) == 65 and small == full[:65]


def test_empty_and_single_hash_lists():
    assert near_duplicate_pairs([]) == []
    assert near_duplicate_pairs(_random_hashes(1, 0)) == []
    assert hash_distance_histogram(_random_hashes(1, 0), upto=8) == [0] * 9
