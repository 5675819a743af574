"""data.cache: preprocessed images written once, reused, and never read stale."""

from __future__ import annotations

import os

import numpy as np

from cxrkit.data.cache import cached_images
from cxrkit.data.images import read_gray
from cxrkit.data.sources import load_dataset
from cxrkit.data.transforms import Preprocessing


def _dataset(make_image, n=6):
    for i in range(n):
        make_image(f"data/{'covid' if i % 2 else 'normal'}/{i}.png", seed=i)
    return load_dataset(make_image("data/normal/0.png").parents[1])


def test_cache_holds_the_preprocessed_images_in_record_order(make_image, tmp_path):
    ds = _dataset(make_image)
    spec = Preprocessing(input_size=32)
    arr = cached_images(ds, spec, tmp_path / "cache", workers=1)
    assert arr.shape == (len(ds.records), 32, 32) and arr.dtype == np.uint8
    for row, rec in zip(arr, ds.records):
        np.testing.assert_array_equal(row, spec.to_uint8(read_gray(rec.path)))
    assert not arr.flags.writeable  # memory-mapped read-only: training cannot corrupt it


def test_cache_is_reused_and_invalidated_by_a_changed_file_or_setting(make_image, tmp_path):
    ds = _dataset(make_image)
    cache = tmp_path / "cache"
    first = cached_images(ds, Preprocessing(input_size=32), cache, workers=1)
    assert len(list(cache.glob("*.npy"))) == 1
    cached_images(ds, Preprocessing(input_size=32), cache, workers=1)
    assert len(list(cache.glob("*.npy"))) == 1  # same files + settings: same cache
    cached_images(ds, Preprocessing(input_size=32, contrast="none"), cache, workers=1)
    assert len(list(cache.glob("*.npy"))) == 2
    changed = ds.records[0].path
    make_image(changed, seed=99)
    os.utime(changed, ns=(1, 1))  # a different mtime even on coarse clocks
    again = cached_images(ds, Preprocessing(input_size=32), cache, workers=1)
    assert len(list(cache.glob("*.npy"))) == 3
    assert not np.array_equal(again[0], first[0])
    assert not list(cache.glob(".*.tmp"))  # no partial files left behind


def test_processes_starting_together_build_the_cache_once(make_image, tmp_path, monkeypatch):
    # the ranks of a torchrun launch all ask for the cache at once: one builds, the others wait
    import threading

    import cxrkit.data.cache as cache

    ds = _dataset(make_image)
    loads, real_load = [], cache._load
    gate = threading.Barrier(3)

    def slow_counted_load(job):
        loads.append(job[0])
        return real_load(job)

    monkeypatch.setattr(cache, "_load", slow_counted_load)
    results = []

    def rank():
        gate.wait()
        results.append(cached_images(ds, Preprocessing(input_size=32), tmp_path / "cache", workers=1))

    threads = [threading.Thread(target=rank) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(loads) == len(ds.records)  # decoded once, not three times
    assert all(np.array_equal(r, results[0]) for r in results)
