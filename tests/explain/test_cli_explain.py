"""``cxr explain``: files and folders (a corrupt file reported, the rest done), --summary
with lung/border shares and faithfulness numbers."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

from cxrkit.cli.main import build_parser, main


@pytest.fixture
def scans(blob_dataset, tmp_path, make_dicom):
    """A folder with two blob PNGs (one nested) and a corrupt PNG, and a separate DICOM file."""
    folder = tmp_path / "scans"
    (folder / "nested").mkdir(parents=True)
    shutil.copy(blob_dataset / "covid" / "covid_000.png", folder / "a.png")
    shutil.copy(blob_dataset / "normal" / "normal_000.png", folder / "nested" / "b.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (folder / "notes.txt").write_text("not an image")
    dicom = make_dicom(tmp_path / "c.dcm", (np.random.default_rng(0).random((80, 96)) * 4000).astype(np.uint16))
    return folder, dicom


def test_files_and_folders_get_overlay_and_maps(tiny_run, scans, tmp_path, capsys):
    folder, dicom = scans
    out = tmp_path / "out"
    main(["explain", str(tiny_run.run_dir), str(folder), str(dicom), "--out", str(out)])
    printed = capsys.readouterr()
    assert sorted(p.name for p in out.iterdir()) == ["a.npy", "a.png", "b.npy", "b.png", "c.npy", "c.png"]
    assert np.load(out / "c.npy").shape == (1, 64, 64)
    flat = "".join(printed.out.split())  # rich may fold long paths across lines
    assert "broken.png:notanimagefile" in flat and "1file(s)couldnotbeexplained" in flat
    assert "wrote3overlay(s)" in flat and "skipped 1 non-image file" in printed.err


def test_all_classes_and_a_chosen_layer(tiny_run, scans, tmp_path):
    folder, _ = scans
    out = tmp_path / "out"
    main(
        [
            "explain",
            str(tiny_run.run_dir),
            str(folder / "a.png"),
            "--all-classes",
            "--method",
            "layercam",
            "--target-layer",
            "stages.2",
            "--out",
            str(out),
        ]
    )
    maps = np.load(out / "a.npy")
    assert maps.shape == (3, 64, 64) and maps.min() >= 0.0 and maps.max() <= 1.0


def test_a_wrong_layer_name_exits_with_the_valid_names(tiny_run, scans, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(
            [
                "explain",
                str(tiny_run.run_dir),
                str(scans[1]),
                "--target-layer",
                "stage.3",
                "--out",
                str(tmp_path / "out"),
            ]
        )
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "no module 'stage.3'" in err and "stages.3" in err


def test_summary_writes_images_shares_and_faithfulness(tiny_run, tmp_path):
    out = tmp_path / "summary"
    main(
        [
            "explain",
            str(tiny_run.run_dir),
            "--summary",
            "--split",
            "test",
            "--cases",
            "2",
            "--workers",
            "1",
            "--faithfulness",
            "gradcam",
            "eigencam",
            "--faithfulness-images",
            "6",
            "--out",
            str(out),
        ]
    )
    summary = json.loads((out / "summary.json").read_text())
    classes = ["covid", "viral_pneumonia", "normal"]
    assert set(summary["images"]) == {"mean_cam", *(f"cases_{c}" for c in classes)}
    assert all((out / name).is_file() for name in summary["images"].values())
    assert summary["lung_region"].startswith("central box")
    for share in summary["lung_vs_border"].values():
        assert set(share) == {"lung", "border"}
        assert 0.0 <= share["lung"] and 0.0 <= share["border"] and share["lung"] + share["border"] <= 1.0 + 1e-6
    faith = summary["faithfulness"]
    assert faith["n_images"] == 6 and set(faith["methods"]) == {"gradcam", "eigencam"}
    for scores in [*faith["methods"].values(), faith["random_maps"]]:
        assert all(math.isfinite(scores[k]) for k in ("road", "drop_most_relevant_first", "drop_least_relevant_first"))


def test_images_or_summary_not_both(tiny_run, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["explain", str(tiny_run.run_dir)])
    assert "give IMAGE files/folders to explain, or --summary" in capsys.readouterr().err


def test_help_teaches_methods_and_examples():
    sub = build_parser()._subparsers._group_actions[0].choices["explain"]
    text = sub.format_help()
    for needle in ("gradcam++", "ablationcam", "--target-layer", "--faithfulness", "cxr explain runs/lite0"):
        assert needle in text
