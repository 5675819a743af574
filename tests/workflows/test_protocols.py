"""cxr protocols: one config under several split protocols, resumable, honest about leaks and missing classes."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from cxrkit import RESEARCH_NOTICE
from cxrkit.errors import CxrkitError
from cxrkit.evaluation.report import render_html, render_markdown
from cxrkit.workflows.protocols import PROTOCOLS, Protocol, parse_protocols, protocol_config, run_protocols

PER_CLASS = 18
ADULT_NORMALS = 8  # images i of patient i // 2 odd, of 18


def _pediatric_normal(i: int) -> bool:
    return (i // 2) % 2 == 0


@pytest.fixture(scope="module")
def sourced_blobs(tmp_path_factory, blob_writer):
    """Blob images with a manifest: patients of 2 images, normal patients half 'pediatric' (kermany), half adult."""
    root = blob_writer(tmp_path_factory.mktemp("sourced"), per_class=PER_CLASS)
    rows = []
    for path in sorted(root.rglob("*.png")):
        label, i = path.parent.name, int(path.stem.rsplit("_", 1)[1])
        pediatric = label == "viral_pneumonia" or (label == "normal" and _pediatric_normal(i))
        rows.append(
            {
                "file": path.relative_to(root).as_posix(),
                "label": label,
                "patient_id": f"{label}-{i // 2}",
                "subsource": "kermany" if pediatric else "raddb",
                "population": "pediatric" if pediatric else "adult (assumed)",
            }
        )
    with open(root / "manifest.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


@pytest.fixture
def base(tmp_path, tiny_settings) -> dict:
    """The protocols' recipe: one epoch of the tiny run, robust augmentation, no near-duplicate merging."""
    return tiny_settings(tmp_path / "cache", epochs=1, dup_threshold=-1, augment="robust")


ONE_CLASS_TEST = Protocol(
    "adult-normals",
    "normals of adults only in test",
    {"split_by": "source", "holdout_source": ["label=normal population=adult"]},
)
# the v1 pattern: only pediatric normals enter; the adult normals are left out and scored apart
PEDIATRIC_ONLY = Protocol(
    "pediatric-only",
    "random split of covid, viral and pediatric normals",
    {"split_by": "image", "select": ["label=covid", "label=viral_pneumonia", "label=normal population=pediatric"]},
)


def test_parse_protocols_names_the_choices():
    assert [p.name for p in parse_protocols("patient, image")] == ["patient", "image"]
    with pytest.raises(CxrkitError, match="choose from patient"):
        parse_protocols("patient,random")


def test_config_may_not_set_the_split(tmp_path):
    with pytest.raises(CxrkitError, match="split_by: set by each protocol"):
        protocol_config(PROTOCOLS["patient"], {"split_by": "image"}, "data", tmp_path)


@pytest.mark.slow
def test_table_leaks_missing_classes_and_resume_after_kill(sourced_blobs, tmp_path, monkeypatch, base):
    import cxrkit.training.fit as fit

    protocols = [PROTOCOLS["patient"], PROTOCOLS["image"], ONE_CLASS_TEST]
    trained = []
    real_train = fit.train
    monkeypatch.setattr(fit, "train", lambda cfg, **kw: trained.append(cfg.split_by) or real_train(cfg, **kw))

    def killer(name, row):
        if name == "image":
            raise KeyboardInterrupt("killed between protocols")

    out = tmp_path / "p"
    with pytest.raises(KeyboardInterrupt):
        run_protocols(
            str(sourced_blobs),
            out,
            protocols,
            base,
            resamples=50,
            workers=1,
            on_protocol_done=killer,
        )
    assert trained == ["patient", "image"] and not (out / "protocols.json").exists()
    patient_result = (out / "patient" / "result.json").read_bytes()

    table = run_protocols(str(sourced_blobs), out, protocols, base, resamples=50, workers=1)
    assert trained == ["patient", "image", "source"]  # finished protocols were reused, not retrained
    assert (out / "patient" / "result.json").read_bytes() == patient_result
    rows = {r["protocol"]: r for r in table["rows"]}
    # patients of 2 images: a random image split puts some test images next to their patient in train
    assert rows["image"]["leaky"] and rows["image"]["leaked_test_images"] > 0
    assert not rows["patient"]["leaky"] and rows["patient"]["leaked_test_images"] == 0
    one = rows["adult-normals"]
    assert one["test_missing_classes"] == ["covid", "viral_pneumonia"]
    assert one["images"]["test"] == one["counts"]["test"]["normal"] == ADULT_NORMALS
    assert (
        one["test"]["sensitivity/covid"]["value"] is None
        or one["test"]["sensitivity/covid"]["value"] != one["test"]["sensitivity/covid"]["value"]
    )  # undefined (NaN/None), never a made-up number
    assert one["gap_to_patient_points"] == pytest.approx(
        100 * (one["test"]["accuracy"]["value"] - rows["patient"]["test"]["accuracy"]["value"]), abs=0.051
    )
    md = (out / "protocols.md").read_text()
    assert "**LEAKY**" in md and "no test images of covid, viral_pneumonia" in md and "research" in md.lower()
    assert json.loads((out / "protocols.json").read_text())["rows"][0]["protocol"] == "patient"

    # report.html: each protocol's row, the LEAKY label, the class a test split lacks, the notice
    page = (out / "report.html").read_text()
    assert all(f"<td>{name}</td>" in page for name in rows) and "<td>LEAKY</td>" in page
    assert "no test images of covid, viral_pneumonia" in page and RESEARCH_NOTICE in page
    # each run's metrics.json names its protocol, with the split's own leak count
    ev = {n: json.loads((out / n / "run" / "evaluation" / "metrics.json").read_text()) for n in rows}
    patient, image = ev["patient"]["protocol"], ev["image"]["protocol"]
    assert (patient["split_by"], patient["leaky"], patient["leaked_test_images"]) == ("patient", False, 0)
    assert (image["split_by"], image["leaky"]) == ("image", True)
    saved = list(csv.DictReader(open(out / "image" / "run" / "split.csv")))  # recounted here from split.csv
    train_patients = {r["patient_id"] for r in saved if r["split"] == "train"}
    assert image["leaked_test_images"] == sum(r["split"] == "test" and r["patient_id"] in train_patients for r in saved)
    assert image["leaked_test_images"] == rows["image"]["leaked_test_images"] > 0
    assert ev["adult-normals"]["protocol"]["holdout_source"] == ["label=normal population=adult"]
    assert "patient-disjoint test split" in render_html(ev["patient"], {})
    n = image["leaked_test_images"]
    assert f"(random image split: LEAKY, {n} test images share a patient or near-duplicate" in render_markdown(
        ev["image"]
    )
    # what `cxr evaluate` prints for the run whose test split lacks two classes: one warning line
    said = [line for line in render_markdown(ev["adult-normals"]).splitlines() if "no images of covid, viral" in line]
    assert len(said) == 1 and "leave-source-out test split" in said[0], said

    # another recipe in the same folder is refused, not mixed into the table
    with pytest.raises(CxrkitError, match="another config"):
        run_protocols(str(sourced_blobs), out, protocols[:1], {**base, "epochs": 3}, resamples=50)

    # an external set: every protocol's model scored on it whole
    shutil.rmtree(out / "adult-normals")
    ext = run_protocols(
        str(sourced_blobs),
        tmp_path / "e",
        [PEDIATRIC_ONLY],
        base,
        resamples=50,
        workers=1,
        external=str(sourced_blobs),
        external_by=["population"],
    )
    row = ext["rows"][0]
    assert row["external"]["n_images"] == 3 * PER_CLASS
    by_pop = row["external"]["subgroups"]["population"]
    assert sum(v["n_images"] for v in by_pop.values()) == 3 * PER_CLASS and "pediatric" in by_pop
    assert row["excluded_images"] == row["left_out"]["n_images"] == ADULT_NORMALS
    assert row["left_out"]["sensitivity/normal"]["value"] == row["left_out"]["accuracy"]["value"]
    assert "left out" in (tmp_path / "e" / "protocols.md").read_text()

    # `cxr evaluate --split excluded` scores the same left-out images (e.g. of an ensemble of such runs)
    from cxrkit.cli.main import main

    run_dir = tmp_path / "e" / PEDIATRIC_ONLY.name / "run"
    argv = ["evaluate", str(run_dir), "--split", "excluded", "--out", str(tmp_path / "x"), "--resamples", "50"]
    main([*argv, "--workers", "1", "--precision", "32"])
    left = json.loads((tmp_path / "x" / "metrics.json").read_text())["overall"]
    assert left["n_images"] == ADULT_NORMALS
    assert left["metrics"]["accuracy"]["value"] == pytest.approx(row["left_out"]["accuracy"]["value"])


def test_cli_flags_come_from_trainconfig_but_not_the_split():
    from cxrkit.cli.main import build_parser

    args = build_parser().parse_args(
        ["protocols", "--data", "d", "--out", "o", "--model", "resdense_tiny", "--protocols", "patient,v1-image"]
    )
    assert args.model == "resdense_tiny" and args.protocols == "patient,v1-image"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["protocols", "--data", "d", "--out", "o", "--split-by", "image"])


def test_cli_data_split_by_image_says_leaky(sourced_blobs, tmp_path, capsys):
    from cxrkit.cli.main import main

    main(
        [
            "data",
            "split",
            str(sourced_blobs),
            "--out",
            str(tmp_path / "s.csv"),
            "--split-by",
            "image",
            "--workers",
            "1",
            "--dup-threshold",
            "-1",
        ]
    )
    text = capsys.readouterr().out
    assert "leaky" in text and "test image(s) have their patient" in text
    main(
        [
            "data",
            "split",
            str(sourced_blobs),
            "--out",
            str(tmp_path / "h.csv"),
            "--split-by",
            "source",
            "--holdout-source",
            "raddb",
            "--workers",
            "1",
        ]
    )
    rows = list(csv.DictReader(open(tmp_path / "h.csv")))
    manifest = {r["file"]: r["subsource"] for r in csv.DictReader(open(sourced_blobs / "manifest.csv"))}
    assert {r["file"] for r in rows if r["split"] == "test"} == {f for f, s in manifest.items() if s == "raddb"}
