"""Patient- and duplicate-aware, stratified, seeded train/val/test splits, and other protocols.

Images are first joined into groups: all images of one patient, and images whose
perceptual hashes say they are the same picture (see :mod:`.duplicates`). Whole groups
are then dealt to splits so that every class reaches its target share in every split.
The same dataset, seed and fractions always give the same split, whatever order the
files were listed in. Splits are saved to CSV so every later step uses exactly them.

Three protocols (``by``), so a published number can be put next to an honest one:

* ``patient`` (default): whole patient/near-duplicate groups per split; no test image has
  its patient or a near-duplicate in train.
* ``image``: each image on its own, stratified at random: the protocol behind the 98.75%
  claim this project grew from. It is *leaky*: the split counts the test images whose
  patient or near-duplicate is in train (``stats["leaked_test_images"]``).
* ``source``: leave-source-out. Every image matching a ``holdout`` rule goes to test, train
  and val come from the rest (patient-aware, the train:val ratio of ``fractions``). Other images
  of a held-out image's group are left out (``excluded``) instead of training on them.

``select`` rules decide which images enter at all (e.g. the v1 composition: 219 random COVID
images and the Kermany normals); the others are written to the split file as ``excluded``, so
the file still lists every image of the dataset and says what was left out.

A rule is ``VALUE`` (matches the ``subsource``) or ``column=value[,value...]`` words, all of
which must hold (``label=normal population=pediatric``); a value matches a field equal to it or
starting with it before ``:`` or `` (`` (``ieee8023`` matches ``ieee8023:COVID-19``, ``adult``
matches ``adult (assumed)``). In ``select``, ``n=219`` draws that many matching images (seeded).
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._io import atomic_write_text, csv_text, text_bytes
from ..errors import CxrkitError, UsageError
from .dataset import CxrDataset
from .duplicates import DEFAULT_MAX_DISTANCE, UnionFind, near_duplicate_pairs

SPLITS = ("train", "val", "test")
EXCLUDED = "excluded"  # in a split file: an image the protocol leaves out of every split
SPLIT_BY = ("patient", "image", "source")
DEFAULT_FRACTIONS = (0.7, 0.15, 0.15)
SPLIT_COLUMNS = ("file", "label", "split", "group", "patient_id")


class SplitError(CxrkitError, ValueError):
    """A split file that does not fit the dataset it is applied to."""


@dataclass
class Split:
    """``assignment[i]`` is the split of ``dataset.records[i]``; ``group[i]`` its group id."""

    assignment: list[str]
    group: list[int]
    stats: dict = field(default_factory=dict)

    def counts(self, dataset: CxrDataset) -> dict[str, dict[str, int]]:
        """Images per split and class (``excluded`` images are not counted)."""
        out = {s: {c: 0 for c in dataset.classes} for s in SPLITS}
        for rec, s in zip(dataset.records, self.assignment):
            if s != EXCLUDED:
                out[s][rec.label] += 1
        return out

    def subset(self, dataset: CxrDataset, name: str) -> CxrDataset:
        if name not in (*SPLITS, EXCLUDED):
            raise UsageError(f"unknown split {name!r}; choose one of {', '.join((*SPLITS, EXCLUDED))}")
        return dataset.select([s == name for s in self.assignment])


Rule = tuple[tuple[str, tuple[str, ...]], ...]


def parse_rule(text: str) -> tuple[Rule, int | None]:
    """``"label=covid n=219"`` -> (((label, (covid,)),), 219); a bare word is a subsource value."""
    words, count = text.split(), None
    conds = []
    for w in words:
        key, eq, val = w.partition("=")
        if not eq:
            key, val = "subsource", w
        if key == "n":
            try:
                count = int(val)
            except ValueError:
                raise UsageError(f"rule {text!r}: n= takes a whole number, got {val!r}") from None
            continue
        if not val:
            raise UsageError(f"rule {text!r}: {key}= needs a value, e.g. population=pediatric")
        conds.append((key, tuple(val.split(","))))
    if not conds:
        raise UsageError(f"rule {text!r} says nothing to match; write e.g. ieee8023 or label=normal population=adult")
    return tuple(conds), count


def _value_matches(field_value: str, wanted: str) -> bool:
    v, w = field_value.strip().lower(), wanted.strip().lower()
    return v == w or v.startswith(w + ":") or v.startswith(w + " (")


def rule_matches(record, rule: Rule) -> bool:
    for key, values in rule:
        field_value = record.label if key == "label" else record.metadata.get(key, "")
        if not any(_value_matches(field_value, v) for v in values):
            return False
    return True


def _rules(texts, option: str) -> list[tuple[Rule, int | None]]:
    if isinstance(texts, str):
        raise UsageError(f"{option} takes a list of rules, got the string {texts!r}")
    return [parse_rule(t) for t in texts or ()]


def select_mask(dataset: CxrDataset, select, seed: int = 0, strict: bool = True) -> np.ndarray:
    """Which records enter the split: those matching any ``select`` rule (all without rules).

    ``strict=False`` (auxiliary images, whose rules were written for the classes): a rule that
    asks for more images than match takes those that match, and none matching is no error."""
    n = len(dataset)
    if not select:
        return np.ones(n, bool)
    order = sorted(range(n), key=lambda i: dataset.relpath(dataset.records[i]))
    keep = np.zeros(n, bool)
    rng = np.random.default_rng([seed, 13])
    for rule, count in _rules(select, "select"):
        hits = [i for i in order if rule_matches(dataset.records[i], rule)]
        if count is not None:
            if count > len(hits) and strict:
                raise UsageError(f"select rule asks for n={count} images but only {len(hits)} match")
            hits = [hits[k] for k in sorted(rng.choice(len(hits), min(count, len(hits)), replace=False))]
        keep[hits] = True
    if not keep.any() and strict:
        raise UsageError(f"no image matches the select rule(s) {list(select)}")
    return keep


def _deal(
    dataset: CxrDataset,
    members: list[list[int]],
    fractions,
    seed: int,
    assignment: list[str],
    group_of: list[int],
    first_gid: int = 0,
) -> None:
    """Deal whole groups to splits (biggest first, ties in seeded order) towards per-class targets."""
    class_index = {c: k for k, c in enumerate(dataset.classes)}
    members = list(members)
    rng = np.random.default_rng(seed)
    rng.shuffle(members)
    members.sort(key=len, reverse=True)  # stable: big groups first, ties in seeded order
    totals = np.bincount(
        [class_index[dataset.records[i].label] for idx in members for i in idx], minlength=len(dataset.classes)
    ).astype(float)
    target = np.outer(fractions, totals) + 1e-9
    filled = np.zeros_like(target)
    for gid, idx in enumerate(members, start=first_gid):
        counts = np.bincount([class_index[dataset.records[i].label] for i in idx], minlength=len(dataset.classes))
        fill = (filled * counts).sum(1) / target.dot(counts) if counts.any() else filled.sum(1)
        fill[np.asarray(fractions) == 0] = np.inf
        s = int(np.lexsort((-np.asarray(fractions), fill))[0])
        filled[s] += counts
        for i in idx:
            assignment[i] = SPLITS[s]
            group_of[i] = gid


def leaked_test_images(dataset: CxrDataset, assignment: list[str], dup_pairs) -> int:
    """Test images whose patient has an image in train, or with a near-duplicate in train."""
    train_pids = {r.patient_id for r, s in zip(dataset.records, assignment) if s == "train" and r.patient_id}
    leaked = {
        i for i, (r, s) in enumerate(zip(dataset.records, assignment)) if s == "test" and r.patient_id in train_pids
    }
    for a, b in dup_pairs:
        for i, j in ((a, b), (b, a)):
            if assignment[i] == "test" and assignment[j] == "train":
                leaked.add(i)
    return len(leaked)


def split_checks(dataset: CxrDataset, assignment: list[str], dup_pairs) -> dict:
    """What any split must report: leaked test images, classes absent from test, images left out."""
    test_counts = Counter(r.label for r, s in zip(dataset.records, assignment) if s == "test")
    return {
        "leaked_test_images": leaked_test_images(dataset, assignment, dup_pairs),
        "test_missing_classes": [c for c in dataset.classes if not test_counts.get(c)],
        "excluded_images": assignment.count(EXCLUDED),
    }


def make_split(
    dataset: CxrDataset,
    hashes: list[str] | None = None,
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
    seed: int = 0,
    max_distance: int = DEFAULT_MAX_DISTANCE,
    by: str = "patient",
    holdout: list[str] | None = None,
    select: list[str] | None = None,
) -> Split:
    """Split ``dataset`` into train/val/test under protocol ``by`` (see the module docstring).

    ``hashes`` are the perceptual hashes of ``dataset.records`` (from :func:`scan_dataset`);
    without them only patient ids group images (and count leaks).
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise UsageError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    if by not in SPLIT_BY:
        raise UsageError(f"split_by {by!r} is not one of {', '.join(SPLIT_BY)}")
    if by == "source" and not holdout:
        raise UsageError("split_by source needs --holdout-source VALUE... (subsource values or column=value rules)")
    if by != "source" and holdout:
        raise UsageError(f"--holdout-source is used with --split-by source only (got --split-by {by})")
    n = len(dataset)
    if hashes is not None and len(hashes) != n:
        raise UsageError(f"{len(hashes)} hashes for {n} records")
    # Work in a canonical order so the split does not depend on listing order.
    order = sorted(range(n), key=lambda i: dataset.relpath(dataset.records[i]))
    uf = UnionFind(n)
    first_of_patient: dict[str, int] = {}
    for i in order:
        pid = dataset.records[i].patient_id
        if pid:
            uf.union(first_of_patient.setdefault(pid, i), i)
    dup_pairs = near_duplicate_pairs(hashes, max_distance) if hashes is not None else []
    merges = sum(uf.union(a, b) for a, b in dup_pairs)
    cross_label = [(a, b) for a, b in dup_pairs if dataset.records[a].label != dataset.records[b].label]

    keep = select_mask(dataset, select, seed)
    groups: dict[int, list[int]] = {}
    for i in order:
        if keep[i]:
            groups.setdefault(uf.find(i), []).append(i)
    assignment = [EXCLUDED] * n
    group_of = [-1] * n
    protocol: dict = {"split_by": by, "leaky": by == "image"}
    if by == "patient":
        _deal(dataset, list(groups.values()), fractions, seed, assignment, group_of)
    elif by == "image":
        _deal(dataset, [[i] for i in order if keep[i]], fractions, seed, assignment, group_of)
    else:
        rules = [r for r, _ in _rules(holdout, "holdout_source")]
        held = [i for i in order if keep[i] and any(rule_matches(dataset.records[i], r) for r in rules)]
        if not held:
            raise UsageError(
                f"--holdout-source {' '.join(holdout)}: no selected image matches "
                "(subsource values such as ieee8023, or rules such as population=pediatric)"
            )
        held_roots = {uf.find(i) for i in held}
        rest = [idx for root, idx in groups.items() if root not in held_roots]
        train_val = fractions[0] + fractions[1]
        _deal(dataset, rest, (fractions[0] / train_val, fractions[1] / train_val, 0.0), seed, assignment, group_of)
        held_order = sorted(held_roots, key=lambda r: dataset.relpath(dataset.records[groups[r][0]]))
        for gid, root in enumerate(held_order, start=len(rest)):
            for i in groups[root]:
                group_of[i] = gid
        for i in held:
            assignment[i] = "test"
        linked = sum(1 for root in held_roots for i in groups[root] if assignment[i] != "test")
        for root in held_roots:
            for i in groups[root]:
                if assignment[i] != "test":
                    assignment[i] = EXCLUDED
        protocol.update(holdout=list(holdout), held_out_images=len(held), excluded_linked_to_test=linked)
    checks = split_checks(dataset, assignment, dup_pairs)
    protocol.update(leaky=by == "image" or checks["leaked_test_images"] > 0, selected_images=int(keep.sum()), **checks)
    if select:
        protocol["select"] = list(select)
    stats = {
        "seed": seed,
        "fractions": list(fractions),
        "groups": len(groups),
        "patients": len(first_of_patient),
        "images_with_patient_id": sum(1 for r in dataset.records if r.patient_id),
        "near_duplicate_pairs": len(dup_pairs),
        "near_duplicate_max_distance": max_distance,
        "groups_merged_by_duplicates": merges,
        "near_duplicate_pairs_with_different_labels": [
            [dataset.relpath(dataset.records[a]), dataset.relpath(dataset.records[b])] for a, b in cross_label
        ],
        "protocol": protocol,
    }
    return Split(assignment, group_of, stats)


def split_to_csv(dataset: CxrDataset, split: Split) -> str:
    """RFC 4180 quoting (a CR in a file name no longer splits its row); names are kept verbatim
    (no spreadsheet-formula prefix) because cxrkit reads this file back."""
    rows = sorted(
        (dataset.relpath(r), r.label, s, g, r.patient_id or "")
        for r, s, g in zip(dataset.records, split.assignment, split.group)
    )
    return csv_text([SPLIT_COLUMNS, *rows], neutralise=False)


def write_split(path: str | Path, dataset: CxrDataset, split: Split) -> Path:
    """Write the split CSV atomically (sorted rows, so equal splits give equal files)."""
    return atomic_write_text(path, split_to_csv(dataset, split))


def split_fingerprint(csv_text: str) -> str:
    """Short sha256 of a split file's content: the identity of a split in model cards."""
    return hashlib.sha256(text_bytes(csv_text)).hexdigest()[:16]


def read_split(path: str | Path, dataset: CxrDataset) -> Split:
    """Apply a saved split to ``dataset``; every record must be listed with its label."""
    path = Path(path)
    try:
        # a CR inside a quoted name stays a CR; a name that is not UTF-8 comes back as written
        with open(path, encoding="utf-8", errors="surrogateescape", newline="") as fh:
            text = fh.read()
    except OSError as exc:
        raise SplitError(f"{path}: cannot read split file ({exc.strerror or exc})") from None
    reader = csv.DictReader(io.StringIO(text))
    missing_cols = set(SPLIT_COLUMNS[:3]) - set(reader.fieldnames or [])
    if missing_cols:
        raise SplitError(f"{path}: not a split file, missing column(s) {', '.join(sorted(missing_cols))}")
    listed: dict[str, tuple[str, str, int]] = {}
    for line_no, row in enumerate(reader, start=2):
        if row["split"] not in (*SPLITS, EXCLUDED):
            raise SplitError(f"{path} line {line_no}: split {row['split']!r} is not one of {(*SPLITS, EXCLUDED)}")
        listed[row["file"]] = (row["label"], row["split"], int(row.get("group") or line_no))
    assignment, group, unlisted, relabelled = [], [], [], []
    for rec in dataset.records:
        key = dataset.relpath(rec)
        if key not in listed:
            unlisted.append(key)
            continue
        label, s, g = listed[key]
        if label != rec.label:
            relabelled.append(f"{key} ({label} in split, {rec.label} in data)")
        assignment.append(s)
        group.append(g)
    if unlisted or relabelled:
        problems = ([f"{len(unlisted)} image(s) not in the split, e.g. {unlisted[:3]}"] if unlisted else []) + (
            [f"{len(relabelled)} label mismatch(es), e.g. {relabelled[:3]}"] if relabelled else []
        )
        raise SplitError(
            f"{path} does not match the dataset at {dataset.root}: "
            + "; ".join(problems)
            + ". Make a new split with `cxr data split`."
        )
    return Split(
        assignment,
        group,
        {
            "file": str(path),
            "fingerprint": split_fingerprint(text),
            "not_in_dataset": len(listed) - len(assignment),
            "counts": dict(Counter(assignment)),
        },
    )


def split_with_auxiliary(
    dataset: CxrDataset, aux_classes: tuple[str, ...], hashes: list[str] | None = None, **protocol
) -> Split:
    """Split with auxiliary classes: trained on as extra outputs, never evaluated.

    The main classes are split exactly as :func:`make_split` splits them without the auxiliary
    images (same seed, same protocol: runs with and without auxiliary classes share their val
    and test images, so they compare image for image). Auxiliary images obey the same
    ``select`` rules (leniently: ``label=covid n=219`` selects no auxiliary film, and says so by
    leaving none, not by an error) and join train, unless their patient has a main-class image in val or test
    or they match a ``holdout`` rule: those are ``excluded`` (nothing of a val/test patient is
    trained on). Near-duplicates across labels were removed in the data itself, so patient ids
    are the link that matters here.
    """
    aux = set(aux_classes)
    is_aux = np.array([r.label in aux for r in dataset.records], bool)
    main = dataset.select(~is_aux)
    main_split = make_split(main, [h for h, a in zip(hashes, is_aux) if not a] if hashes else None, **protocol)
    aux_ds = dataset.select(is_aux)
    keep = select_mask(aux_ds, protocol.get("select"), protocol.get("seed", 0), strict=False)
    rules = [r for r, _ in _rules(protocol.get("holdout"), "holdout_source")] if protocol.get("holdout") else []
    held_patients = {
        r.patient_id for r, s in zip(main.records, main_split.assignment) if r.patient_id and s in ("val", "test")
    }
    assignment, group = [EXCLUDED] * len(dataset), [-1] * len(dataset)
    for i, s, g in zip(np.nonzero(~is_aux)[0], main_split.assignment, main_split.group):
        assignment[i], group[i] = s, g
    first_group = max(main_split.group, default=-1) + 1
    for k, (i, rec, selected) in enumerate(zip(np.nonzero(is_aux)[0], aux_ds.records, keep)):
        linked = rec.patient_id in held_patients or any(rule_matches(rec, r) for r in rules)
        assignment[i], group[i] = ("train" if selected and not linked else EXCLUDED), first_group + k
    taken = sum(1 for s, a in zip(assignment, is_aux) if a and s == "train")
    stats = dict(main_split.stats)
    stats["auxiliary"] = {"classes": list(aux_classes), "train": taken, "excluded": int(is_aux.sum()) - taken}
    return Split(assignment, group, stats)
