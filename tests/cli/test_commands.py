"""The command line end to end: thin layer, files written, clean errors."""

from __future__ import annotations

import json
import shutil

import pytest

from cxrkit.cli.main import main


def test_data_inspect_writes_report_and_split(blob_dataset, tmp_path, capsys):
    main(["data", "inspect", str(blob_dataset), "--out", str(tmp_path), "--workers", "1"])
    report = json.loads((tmp_path / "inspect.json").read_text())
    assert report["images_per_class"] == {"covid": 24, "viral_pneumonia": 24, "normal": 24}
    assert (tmp_path / "split.csv").read_text().startswith("file,label,split,group,patient_id")
    assert "images per class and split" in capsys.readouterr().out


def test_errors_are_one_clean_line_with_exit_code_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["data", "inspect", str(tmp_path / "nowhere")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "no such file or folder" in err and "Traceback" not in err


def test_evaluate_with_audit_writes_a_report(tiny_run, tmp_path):
    run = shutil.copytree(tiny_run.run_dir, tmp_path / "run")
    main(["evaluate", str(run), "--resamples", "20", "--audit", "--workers", "1"])
    html = (run / "evaluation" / "report.html").read_text()
    assert "data:image/png;base64," in html and "research" in html.lower()
    ev = json.loads((run / "evaluation" / "metrics.json").read_text())
    assert ev["audit"]["verdict"]
    main(["compare", str(run), "--out", str(tmp_path / "cmp.md")])
    assert "resdense_tiny" in (tmp_path / "cmp.md").read_text()


def test_compare_needs_an_evaluation_first(tiny_run, capsys):
    with pytest.raises(SystemExit):
        main(["compare", str(tiny_run.run_dir)])
    assert "cxr evaluate" in capsys.readouterr().err


def test_demo_runs_end_to_end_and_reuses_the_finished_run(blob_dataset, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CXR_CACHE", str(tmp_path / "cache"))
    args = [
        "demo",
        "--data",
        str(blob_dataset),
        "--out",
        str(tmp_path / "demo"),
        "--model",
        "resdense_tiny",
        "--epochs",
        "2",
        "--workers",
        "1",
    ]
    main(args)
    html = (tmp_path / "demo/report/report.html").read_text()
    assert "mean_cam" in html or "Mean" in html  # the Grad-CAM summary is in the report
    assert "Accuracy (patient-disjoint test split)" in html  # the protocol stands next to the headline
    assert (tmp_path / "demo/report/explain/summary.json").is_file()
    assert (tmp_path / "demo/model/model.safetensors").is_file()
    main(args)
    assert "reusing the finished run" in capsys.readouterr().out


def test_demo_without_data_says_where_to_get_it(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CXR_DATA", raising=False)
    with pytest.raises(SystemExit):
        main(["demo"])
    assert "kaggle.com" in capsys.readouterr().err.replace("\n", "")
