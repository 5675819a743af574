"""An ensemble whose members differ in input size, contrast and lung ROI (the README's trio:
whole film, lung crop...) works in predict, serve, pacs and evaluate; only a CAM summary,
which needs one model input, refuses it and names the member to explain instead."""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest

import cxrkit
from cxrkit.inference import Predictor
from cxrkit.run import RunDir

from ..inference.test_ensemble import _cli


def _variant(run_dir, dest, **preprocessing):
    """A copy of ``run_dir`` whose card asks for other preprocessing (same weights and split)."""
    run = shutil.copytree(run_dir, dest)
    card = json.loads(RunDir(run).card.read_text())
    pre = {k: v for k, v in card["preprocessing"].items() if not k.startswith(("roi", "lung_run"))}
    card["preprocessing"] = {**pre, **preprocessing}
    RunDir(run).card.write_text(json.dumps(card))
    return run


@pytest.fixture(scope="module")
def trio(roi_run, tmp_path_factory):
    """(ensemble dir, [lung-ROI 32 px, whole film 48 px, whole film CLAHE 32 px], data)."""
    result, data, _ = roi_run
    root = tmp_path_factory.mktemp("trio")
    members = [
        shutil.copytree(result.run_dir, root / "lungs"),
        _variant(result.run_dir, root / "whole48", input_size=48),
        _variant(result.run_dir, root / "clahe", contrast="clahe"),
    ]
    assert _cli(["ensemble", "create", "--out", str(root / "trio"), *map(str, members)]) == 0
    return root / "trio", members, data


def _mean_of_members(members, files):
    return np.mean([Predictor.from_run(m, precision="32").predict_proba(files) for m in members], axis=0)


def test_predict_json_and_csv_average_members_that_differ_in_every_step(trio, capsys):
    ens, members, data = trio
    files = [data / "covid" / "covid_0.png", data / "normal" / "noise_0.png"]
    capsys.readouterr()
    assert _cli(["predict", str(ens), *map(str, files), "--format", "json", "--precision", "32"]) == 0
    doc = json.loads(capsys.readouterr().out)
    got = np.array([[r["probabilities"][c] for c in doc["classes"]] for r in doc["results"]])
    np.testing.assert_allclose(got, _mean_of_members(members, files), atol=1e-5)
    assert [m.get("roi", "none") for m in doc["roi"]["members"]] == ["lungs", "none", "none"]
    flags = [r["roi_fallback"] for r in doc["results"]]
    assert flags[0] is None and flags[1].startswith("member 1: ")  # the noise film has no lungs
    assert _cli(["predict", str(ens), *map(str, files), "--format", "csv"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0].endswith(",roi_fallback") and rows[2].endswith(flags[1])
    assert _cli(["predict", str(ens), *map(str, files), "--format", "json", "--tta"]) == 0
    assert json.loads(capsys.readouterr().out)["tta"] == "standard"  # the README's `cxr predict runs/trio --tta`


def test_serve_answers_with_the_members_mean(trio):
    from cxrkit.serve import create_app
    from cxrkit.serve.client import request, upload
    from cxrkit.serve.server import running

    ens, members, data = trio
    path = data / "viral_pneumonia" / "viral_pneumonia_1.png"
    with running(create_app(cxrkit.load(ens, precision="32"))) as url:
        health = request(f"{url}/healthz").json()
        r = upload(f"{url}/v1/predict", path.read_bytes(), path.name)
        cam = upload(f"{url}/v1/explain", path.read_bytes(), path.name)
    assert r.status == 200, r.body and health["roi"] == "lungs"
    probs = r.json()["probabilities"]
    np.testing.assert_allclose(list(probs.values()), _mean_of_members(members, [path])[0], atol=1e-5)
    assert r.json()["roi_fallback"] is None
    assert cam.status == 422 and "use one member" in cam.json()["detail"]


def test_pacs_job_reports_each_instance_with_the_ensemble(trio, monkeypatch):
    """The PACS job's own path (decode -> prepare -> results -> DICOM SR), the PACS stubbed."""
    from cxrkit.pacs.job import JobSummary, PacsJob

    from ..pacs.conftest import synthetic_dicom

    ens, members, data = trio
    predictor = cxrkit.load(ens, precision="32")
    job = PacsJob(predictor, conn=None, log=lambda line: None)
    header = synthetic_dicom(seed=1)
    inst = SimpleNamespace(study=header.StudyInstanceUID, series=header.SeriesInstanceUID, sop=header.SOPInstanceUID)
    gray = predictor.decode(data / "covid" / "covid_2.png")
    stored = []
    monkeypatch.setattr(job, "_read", lambda batch, summary: [(inst, header, gray)])
    monkeypatch.setattr(job, "_store", lambda study, out: stored.extend(out))
    summary = JobSummary()
    job._flush([(inst.study, [inst], {inst.sop: 1}, 0)], summary, 0)
    assert not summary.errors and len(stored) == 1  # one structured report
    expected = predictor.proba_from_uint8(predictor.prepare(gray)[None])[0]
    np.testing.assert_allclose(expected, _mean_of_members(members, [gray])[0], atol=1e-5)


def test_evaluate_scores_it_and_only_the_cam_summary_refuses(trio, capsys):
    ens, members, _ = trio
    assert _cli(["evaluate", str(ens), "--resamples", "20", "--workers", "1"]) == 0
    assert json.loads(RunDir(ens).metrics.read_text())["ensemble_members"] == [
        Predictor.from_run(m).model_id for m in members
    ]
    capsys.readouterr()
    assert _cli(["explain", str(ens), "--summary", "--workers", "1"]) == 2
    assert f"cxr explain {members[0]}" in " ".join(capsys.readouterr().err.split())
