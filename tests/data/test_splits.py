"""splits: whole patients and near-duplicate groups per split, stratified, seeded, saved."""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from cxrkit.data.dataset import CxrDataset, Record
from cxrkit.data.duplicates import near_duplicate_pairs
from cxrkit.data.splits import (
    DEFAULT_FRACTIONS,
    SPLITS,
    Split,
    SplitError,
    make_split,
    read_split,
    split_fingerprint,
    split_to_csv,
    write_split,
)
from cxrkit.errors import CxrkitError

ROOT = Path("/nonexistent/cxr")
CLASSES = ("covid", "viral_pneumonia", "normal")
SEEDS = range(6)


def _synthetic(n: int = 600, seed: int = 0, n_dup_pairs: int = 15):
    """Fake records (no images) with patients of 1-5 images and planted duplicate pairs.

    Returns ``(dataset, hashes, planted)``: ``planted`` pairs are hash-identical images of
    different patients (or one without a patient id), so only the hashes connect them.
    """
    rng = random.Random(seed)
    records, pid = [], 0
    while len(records) < n:
        label = rng.choices(CLASSES, weights=(0.3, 0.25, 0.45))[0]
        if rng.random() < 0.5:  # a patient with several images
            pid += 1
            for _ in range(min(rng.randint(1, 5), n - len(records))):
                records.append((label, f"p{pid}"))
        else:
            records.append((label, None))
    recs = [Record(ROOT / label / f"img_{i:04d}.png", label, patient) for i, (label, patient) in enumerate(records)]
    hashes = [rng.getrandbits(256).to_bytes(32, "big").hex() for _ in recs]
    planted = []
    candidates = list(range(n))
    rng.shuffle(candidates)
    used_patients = set()
    for i in candidates:
        if len(planted) == n_dup_pairs:
            break
        j = rng.randrange(n)
        pi, pj = recs[i].patient_id, recs[j].patient_id
        if (
            i == j
            or recs[i].label != recs[j].label
            or (pi and pi == pj)
            or {pi, pj} & used_patients
            or any({i, j} & set(p) for p in planted)
        ):
            continue
        used_patients |= {pi, pj} - {None}
        hashes[j] = hashes[i]
        planted.append((min(i, j), max(i, j)))
    assert len(planted) == n_dup_pairs
    return CxrDataset(ROOT, "manifest", CLASSES, recs), hashes, planted


def _by_path(dataset: CxrDataset, split: Split) -> dict[str, str]:
    return {dataset.relpath(r): s for r, s in zip(dataset.records, split.assignment)}


def _shuffled(dataset: CxrDataset, hashes: list[str], seed: int):
    order = list(range(len(dataset)))
    random.Random(seed).shuffle(order)
    return (
        CxrDataset(dataset.root, dataset.source, dataset.classes, [dataset.records[i] for i in order]),
        [hashes[i] for i in order],
    )


@pytest.fixture(scope="module")
def synthetic():
    return {seed: _synthetic(600, seed) for seed in SEEDS}


@pytest.mark.parametrize("seed", SEEDS)
def test_no_patient_in_two_splits(synthetic, seed):
    ds, hashes, _ = synthetic[seed]
    split = make_split(ds, hashes, seed=seed)
    assert set(split.assignment) == set(SPLITS)
    splits_of = defaultdict(set)
    for rec, s in zip(ds.records, split.assignment):
        if rec.patient_id:
            splits_of[rec.patient_id].add(s)
    assert len(splits_of) > 50 and all(len(v) == 1 for v in splits_of.values())


@pytest.mark.parametrize("seed", SEEDS)
def test_no_near_duplicate_group_in_two_splits(synthetic, seed):
    ds, hashes, planted = synthetic[seed]
    split = make_split(ds, hashes, seed=seed)
    pairs = near_duplicate_pairs(hashes)
    assert set(planted) <= set(pairs)
    for a, b in pairs:
        assert split.assignment[a] == split.assignment[b]
        assert split.group[a] == split.group[b]
    # groups are closed under patient and hash: one split per group
    split_of_group = defaultdict(set)
    for g, s in zip(split.group, split.assignment):
        split_of_group[g].add(s)
    assert all(len(v) == 1 for v in split_of_group.values())
    assert split.stats["near_duplicate_pairs"] == len(pairs) == len(planted)
    assert split.stats["groups_merged_by_duplicates"] == len(planted)


def test_duplicates_without_hashes_can_be_separated(synthetic):
    # the control: with the hashes withheld, some planted copies do land in different splits,
    # so the test above really depends on the duplicate grouping
    separated = 0
    for seed in SEEDS:
        ds, _, planted = synthetic[seed]
        split = make_split(ds, None, seed=seed)
        separated += sum(split.assignment[a] != split.assignment[b] for a, b in planted)
        assert split.stats["near_duplicate_pairs"] == 0
    assert separated > 0


@pytest.mark.parametrize("seed", SEEDS)
def test_same_seed_same_split_whatever_the_order(synthetic, seed):
    ds, hashes, _ = synthetic[seed]
    split = make_split(ds, hashes, seed=seed)
    ds2, hashes2 = _shuffled(ds, hashes, seed + 100)
    assert [r.path for r in ds2.records] != [r.path for r in ds.records]
    split2 = make_split(ds2, hashes2, seed=seed)
    assert _by_path(ds, split) == _by_path(ds2, split2)
    assert split_to_csv(ds, split) == split_to_csv(ds2, split2)
    assert split.stats == split2.stats


@pytest.mark.parametrize("seed", SEEDS)
def test_different_seed_different_split(synthetic, seed):
    ds, hashes, _ = synthetic[seed]
    a = _by_path(ds, make_split(ds, hashes, seed=seed))
    b = _by_path(ds, make_split(ds, hashes, seed=seed + 1))
    assert a != b
    assert sum(a[k] != b[k] for k in a) > 0.2 * len(a)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("fractions", [DEFAULT_FRACTIONS, (0.6, 0.2, 0.2), (0.8, 0.1, 0.1)])
def test_class_proportions_near_targets(synthetic, seed, fractions):
    ds, hashes, _ = synthetic[seed]
    split = make_split(ds, hashes, fractions=fractions, seed=seed)
    counts = split.counts(ds)
    totals = ds.class_counts()
    assert sum(sum(c.values()) for c in counts.values()) == len(ds)
    for s, frac in zip(SPLITS, fractions):
        for c in CLASSES:
            assert counts[s][c] / totals[c] == pytest.approx(frac, abs=0.03), (s, c, counts)
        assert sum(counts[s].values()) / len(ds) == pytest.approx(frac, abs=0.02)


def test_stats(synthetic):
    ds, hashes, planted = synthetic[0]
    split = make_split(ds, hashes, seed=7, fractions=(0.5, 0.25, 0.25), max_distance=10)
    st = split.stats
    assert st["seed"] == 7 and st["fractions"] == [0.5, 0.25, 0.25]
    assert st["near_duplicate_max_distance"] == 10
    assert st["patients"] == len({r.patient_id for r in ds.records if r.patient_id})
    assert st["images_with_patient_id"] == sum(1 for r in ds.records if r.patient_id)
    assert st["groups"] == len(set(split.group))
    singles = sum(1 for r in ds.records if not r.patient_id)
    assert st["groups"] == st["patients"] + singles - st["groups_merged_by_duplicates"]
    assert st["near_duplicate_pairs_with_different_labels"] == []


def test_stats_merges_and_cross_label_pairs():
    recs = [
        Record(ROOT / f"{i}.png", lab, pid)
        for i, (lab, pid) in enumerate(
            [
                ("covid", "a"),
                ("covid", "a"),  # 0,1: one patient
                ("covid", "b"),  # 2: copy of 0 -> merges patient b into a
                ("covid", "a"),  # 3: copy of 1, same patient already -> pair but no merge
                ("normal", None),  # 4: copy of 2 with another label
                ("normal", None),
                ("normal", None),
                ("normal", None),
            ]
        )
    ]
    ds = CxrDataset(ROOT, "manifest", ("covid", "normal"), recs)
    h = [f"{i:064x}" for i in range(1, 9)]
    h[2] = h[0]
    h[3] = h[1]
    h[4] = h[0]
    split = make_split(ds, h, seed=0, max_distance=0)
    st = split.stats
    assert st["near_duplicate_pairs"] == 4  # (0,2), (0,4), (2,4), (1,3)
    assert st["groups_merged_by_duplicates"] == 2  # b joins a, 4 joins a
    assert st["groups"] == 4  # {0,1,2,3,4}, 5, 6, 7
    assert len({split.assignment[i] for i in range(5)}) == 1
    assert sorted(map(tuple, st["near_duplicate_pairs_with_different_labels"])) == [
        ("0.png", "4.png"),
        ("2.png", "4.png"),
    ]


@pytest.mark.parametrize(
    "fractions", [(0.5, 0.5), (0.8, 0.3, -0.1), (0.7, 0.2, 0.2), (0.7, 0.15, 0.1), (1.0, 0.0, 0.0, 0.0)]
)
def test_fractions_validation(synthetic, fractions):
    ds, hashes, _ = synthetic[0]
    with pytest.raises(ValueError, match="fractions must be three non-negative numbers summing to 1"):
        make_split(ds, hashes, fractions=fractions)


@pytest.mark.parametrize("fractions", [(1.0, 0.0, 0.0), (0.5, 0.0, 0.5), (0.0, 0.5, 0.5)])
def test_zero_fraction_gets_nothing(synthetic, fractions):
    ds, hashes, _ = synthetic[1]
    counts = make_split(ds, hashes, fractions=fractions, seed=1).counts(ds)
    for s, f in zip(SPLITS, fractions):
        assert (sum(counts[s].values()) == 0) == (f == 0)


def test_hash_count_must_match(synthetic):
    ds, hashes, _ = synthetic[0]
    with pytest.raises(ValueError, match="599 hashes for 600 records"):
        make_split(ds, hashes[:-1])


def test_subset_and_counts(synthetic):
    ds, hashes, _ = synthetic[2]
    split = make_split(ds, hashes, seed=2)
    counts = split.counts(ds)
    for s in SPLITS:
        sub = split.subset(ds, s)
        assert sub.class_counts() == counts[s]
        assert sub.classes == ds.classes
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        split.subset(ds, "dev")


def test_empty_dataset():
    split = make_split(CxrDataset(ROOT, "manifest", CLASSES, []), [])
    assert split.assignment == [] and split.stats["groups"] == 0


# ----------------------------------------------------------------------------- saved splits
def test_write_read_round_trip(tmp_path, synthetic):
    ds, hashes, _ = synthetic[3]
    split = make_split(ds, hashes, seed=3)
    path = write_split(tmp_path / "sub" / "split.csv", ds, split)
    text = path.read_text()
    assert text.splitlines()[0] == "file,label,split,group,patient_id"
    assert len(text.splitlines()) == len(ds) + 1
    back = read_split(path, ds)
    assert back.assignment == split.assignment
    assert back.group == split.group
    assert back.stats["fingerprint"] == split_fingerprint(text) and len(split_fingerprint(text)) == 16
    assert back.stats["not_in_dataset"] == 0
    assert back.stats["counts"] == {s: sum(c.values()) for s, c in split.counts(ds).items()}
    # equal splits give byte-identical files, whatever the record order
    ds2, hashes2 = _shuffled(ds, hashes, 1)
    write_split(tmp_path / "again.csv", ds2, make_split(ds2, hashes2, seed=3))
    assert (tmp_path / "again.csv").read_text() == text
    # and the file applies to the shuffled dataset too
    assert _by_path(ds2, read_split(path, ds2)) == _by_path(ds, split)


def test_read_split_with_extra_image_raises(tmp_path, synthetic):
    ds, hashes, _ = synthetic[4]
    path = write_split(tmp_path / "split.csv", ds, make_split(ds, hashes, seed=4))
    extra = Record(ROOT / "covid" / "new_image.png", "covid", None)
    grown = CxrDataset(ROOT, "manifest", CLASSES, ds.records + [extra])
    with pytest.raises(SplitError) as err:
        read_split(path, grown)
    msg = str(err.value)
    assert "1 image(s) not in the split" in msg and "covid/new_image.png" in msg
    assert str(path) in msg and "cxr data split" in msg


def test_read_split_with_changed_label_raises(tmp_path, synthetic):
    ds, hashes, _ = synthetic[4]
    path = write_split(tmp_path / "split.csv", ds, make_split(ds, hashes, seed=4))
    recs = list(ds.records)
    old = recs[10]
    new_label = "normal" if old.label != "normal" else "covid"
    recs[10] = Record(old.path, new_label, old.patient_id)
    with pytest.raises(SplitError) as err:
        read_split(path, CxrDataset(ROOT, "manifest", CLASSES, recs))
    msg = str(err.value)
    assert "1 label mismatch(es)" in msg
    assert f"{ds.relpath(old)} ({old.label} in split, {new_label} in data)" in msg


def test_read_split_on_smaller_dataset(tmp_path, synthetic):
    ds, hashes, _ = synthetic[5]
    split = make_split(ds, hashes, seed=5)
    path = write_split(tmp_path / "split.csv", ds, split)
    keep = np.arange(len(ds)) % 10 != 0
    back = read_split(path, ds.select(keep))
    assert back.stats["not_in_dataset"] == int((~keep).sum())
    assert back.assignment == [s for s, k in zip(split.assignment, keep) if k]


def test_read_split_bad_files(tmp_path, synthetic):
    ds, _, _ = synthetic[0]
    with pytest.raises(SplitError, match="cannot read split file"):
        read_split(tmp_path / "missing.csv", ds)
    (tmp_path / "a.csv").write_text("file,label\nx.png,covid\n")
    with pytest.raises(SplitError, match="not a split file, missing column.*split"):
        read_split(tmp_path / "a.csv", ds)
    (tmp_path / "b.csv").write_text("file,label,split\nx.png,covid,train\ny.png,covid,holdout\n")
    with pytest.raises(SplitError, match="line 3: split 'holdout' is not one of"):
        read_split(tmp_path / "b.csv", ds)


# --- protocols: image (leaky), source (leave-source-out), select --------------------------------

SOURCES = ("kermany", "raddb", "ieee8023:COVID-19", "ieee8023:No Finding")


def _with_sources(dataset: CxrDataset, seed: int = 0) -> CxrDataset:
    """The synthetic records with a ``subsource`` and ``population``: one source per patient."""
    rng = random.Random(seed)
    src_of: dict[str, str] = {}
    recs = []
    for r in dataset.records:
        src = src_of.setdefault(r.patient_id, rng.choice(SOURCES)) if r.patient_id else rng.choice(SOURCES)
        pop = "pediatric" if src == "kermany" else "adult (assumed)"
        recs.append(Record(r.path, r.label, r.patient_id, metadata={"subsource": src, "population": pop}))
    return CxrDataset(dataset.root, dataset.source, dataset.classes, recs)


def _leaks(dataset: CxrDataset, split: Split, hashes: list[str]) -> int:
    """Test images with their patient or an identical-hash image in train, counted from scratch."""
    train_pids = {r.patient_id for r, s in zip(dataset.records, split.assignment) if s == "train" and r.patient_id}
    train_hashes = {h for h, s in zip(hashes, split.assignment) if s == "train"}
    return sum(
        1
        for r, h, s in zip(dataset.records, hashes, split.assignment)
        if s == "test" and (r.patient_id in train_pids or h in train_hashes)
    )


@pytest.mark.parametrize("seed", SEEDS)
def test_image_split_leaks_patients_and_counts_them(synthetic, seed):
    dataset, hashes, _ = synthetic[seed]
    split = make_split(dataset, hashes, seed=seed, by="image")
    proto = split.stats["protocol"]
    assert proto["leaky"] is True
    assert proto["leaked_test_images"] == _leaks(dataset, split, hashes) > 0
    # stratified: every class within one image of its 15% share in test
    counts = split.counts(dataset)
    for c, total in dataset.class_counts().items():
        assert abs(counts["test"][c] - 0.15 * total) <= 1


@pytest.mark.parametrize("seed", SEEDS)
def test_patient_split_never_leaks(synthetic, seed):
    dataset, hashes, _ = synthetic[seed]
    split = make_split(dataset, hashes, seed=seed)
    assert split.stats["protocol"]["leaked_test_images"] == _leaks(dataset, split, hashes) == 0
    assert split.stats["protocol"]["leaky"] is False


@pytest.mark.parametrize(
    "rules", [["raddb"], ["ieee8023"], ["population=pediatric", "raddb"], ["label=normal population=adult"]]
)
def test_holdout_puts_exactly_the_matching_images_in_test(synthetic, rules):
    base, hashes, _ = synthetic[0]
    dataset = _with_sources(base)

    def matches(r):
        src, pop = r.metadata["subsource"], r.metadata["population"]
        return any(
            all(
                (
                    pop.startswith("pediatric")
                    if w == "population=pediatric"
                    else pop.startswith("adult")
                    if w == "population=adult"
                    else r.label == "normal"
                    if w == "label=normal"
                    else src.split(":")[0] == w
                )
                for w in rule.split()
            )
            for rule in rules
        )

    split = make_split(dataset, hashes, by="source", holdout=rules)
    test = {i for i, s in enumerate(split.assignment) if s == "test"}
    assert test == {i for i, r in enumerate(dataset.records) if matches(r)}
    assert split.stats["protocol"]["leaked_test_images"] == _leaks(dataset, split, hashes) == 0
    counts = split.counts(dataset)
    n_train, n_val = sum(counts["train"].values()), sum(counts["val"].values())
    assert abs(n_train / (n_train + n_val) - 0.7 / 0.85) < 0.03


def test_holdout_leaves_out_images_linked_to_test(synthetic):
    base, hashes, _ = synthetic[0]
    dataset = _with_sources(base)
    # one patient of raddb also imaged in another source: that image must not train the model
    i = next(i for i, r in enumerate(dataset.records) if r.metadata["subsource"] == "raddb" and r.patient_id)
    j = next(j for j, r in enumerate(dataset.records) if r.metadata["subsource"] == "kermany" and r.patient_id)
    recs = list(dataset.records)
    recs[j] = Record(recs[j].path, recs[j].label, recs[i].patient_id, metadata=recs[j].metadata)
    dataset = CxrDataset(dataset.root, dataset.source, dataset.classes, recs)
    split = make_split(dataset, hashes, by="source", holdout=["raddb"])
    assert split.assignment[i] == "test" and split.assignment[j] == "excluded"
    assert split.stats["protocol"]["excluded_linked_to_test"] >= 1


def test_holdout_missing_class_is_reported_not_faked(synthetic):
    base, hashes, _ = synthetic[0]
    split = make_split(_with_sources(base), hashes, by="source", holdout=["label=normal population=adult"])
    assert split.stats["protocol"]["test_missing_classes"] == ["covid", "viral_pneumonia"]
    assert split.counts(base)["test"]["covid"] == 0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"by": "source"}, "needs --holdout-source"),
        ({"by": "patient", "holdout": ["raddb"]}, "--split-by source only"),
        ({"by": "random"}, "not one of"),
        ({"by": "source", "holdout": ["nowhere"]}, "no selected image matches"),
        ({"select": ["label=covid n=100000"]}, "only"),
        ({"select": ["label=covid n=many"]}, "whole number"),
    ],
)
def test_protocol_errors_name_the_option(synthetic, kwargs, message):
    base, hashes, _ = synthetic[0]
    with pytest.raises(CxrkitError, match=message):
        make_split(_with_sources(base), hashes, **kwargs)


def test_select_draws_n_seeded_whatever_the_order(synthetic):
    base, hashes, _ = synthetic[0]
    dataset = _with_sources(base)
    rules = ["label=covid n=40", "label=normal population=pediatric"]
    split = make_split(dataset, hashes, by="image", select=rules)
    chosen = {dataset.relpath(r) for r, s in zip(dataset.records, split.assignment) if s != "excluded"}
    labels = [r.label for r in dataset.records if dataset.relpath(r) in chosen]
    assert labels.count("covid") == 40 and "viral_pneumonia" not in labels
    assert all(
        r.metadata["population"] == "pediatric"
        for r in dataset.records
        if dataset.relpath(r) in chosen and r.label == "normal"
    )
    shuffled, shuffled_hashes = _shuffled(dataset, hashes, 3)
    again = make_split(shuffled, shuffled_hashes, by="image", select=rules)
    assert _by_path(shuffled, again) == _by_path(dataset, split)
    other = make_split(dataset, hashes, seed=1, by="image", select=rules)
    assert {dataset.relpath(r) for r, s in zip(dataset.records, other.assignment) if s != "excluded"} != chosen


def test_excluded_images_round_trip(tmp_path, synthetic):
    base, hashes, _ = synthetic[0]
    dataset = _with_sources(base)
    split = make_split(dataset, hashes, by="source", holdout=["raddb"], select=["population=adult"])
    assert "excluded" in split.assignment
    path = write_split(tmp_path / "split.csv", dataset, split)
    assert read_split(path, dataset).assignment == split.assignment
