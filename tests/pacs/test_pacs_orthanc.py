"""`cxr pacs predict` / `watch` against a real Orthanc: results, idempotence, outage, bad input."""

from __future__ import annotations

import json

import pytest
import requests

from cxrkit.cli.main import build_parser, main
from cxrkit.cli.pacs import make_job, run_watch

pytestmark = pytest.mark.slow
ELIGIBLE = ("pa", "mono1")


def cxr(*argv) -> int:
    try:
        main([str(a) for a in argv])
    except SystemExit as exc:
        return exc.code
    return 0


def all_instances(client) -> dict[str, list]:
    """SeriesDescription -> SOP Instance UIDs, over every study on the server."""
    out: dict[str, list] = {}
    for st in client.search_for_studies():
        study = st["0020000D"]["Value"][0]
        for se in client.search_for_series(study, fields=["SeriesDescription"]):
            desc = (se.get("0008103E", {}).get("Value") or ["(source)"])[0]
            inst = client.search_for_instances(study, se["0020000E"]["Value"][0])
            out.setdefault(desc, []).extend(i["00080018"]["Value"][0] for i in inst)
    return out


def results(client, kind: str) -> list:
    """Every stored cxrkit object of ``kind`` (SR or CAM) as a pydicom Dataset."""
    out = []
    for st in client.search_for_studies():
        study = st["0020000D"]["Value"][0]
        for se in client.search_for_series(study, fields=["SeriesDescription"]):
            if (se.get("0008103E", {}).get("Value") or [""])[0].startswith(f"cxrkit {kind} "):
                out += client.retrieve_series(study, se["0020000E"]["Value"][0])
    return out


def sr_values(sr) -> tuple[str, dict[str, float], str]:
    """(referenced source SOP UID, class -> probability, uncertain text) from our content tree."""
    probs, ref, uncertain = {}, None, None
    for item in sr.ContentSequence:
        meaning = item.ConceptNameCodeSequence[0].CodeMeaning
        if item.ValueType == "NUM" and meaning.startswith("Probability of "):
            probs[meaning.removeprefix("Probability of ")] = float(item.MeasuredValueSequence[0].NumericValue)
        elif item.ValueType == "IMAGE":
            ref = item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
        elif meaning.startswith("Uncertain ("):
            uncertain = item.TextValue
    return ref, probs, uncertain


def test_predict_writes_one_sr_and_overlay_per_eligible_instance(pacs_run, server, archive, dicomweb, tmp_path, capfd):
    run = pacs_run
    base = ["pacs", "predict", run, "--url", server.dicomweb, "--all-new", "--cam", "--state", tmp_path / "s.json"]
    base += ["--precision", "32"]  # fp32 on both sides: bf16 (auto on AVX-512 BF16 CPUs) differs by batch
    assert cxr(*base, "--out", tmp_path / "summary.json") == 1  # broken + multi-frame: exit 1, rest done
    srs, cams = results(dicomweb, "SR"), results(dicomweb, "CAM")
    assert sorted(sr_values(s)[0] for s in srs) == sorted(archive.uid(r) for r in ELIGIBLE)
    assert sorted(c.SourceImageSequence[0].ReferencedSOPInstanceUID for c in cams) == sorted(
        archive.uid(r) for r in ELIGIBLE
    )
    for obj in srs + cams:  # new UIDs, same patient and study as the source
        source = next(ds for ds in archive.items.values() if ds.StudyInstanceUID == obj.StudyInstanceUID)
        assert obj.PatientID == source.PatientID and obj.SOPInstanceUID not in {
            d.SOPInstanceUID for d in archive.items.values()
        }
    assert all(c.BurnedInAnnotation == "YES" and c.PhotometricInterpretation == "RGB" for c in cams)
    assert all("For research use only" in json.dumps([i.to_json_dict() for i in s.ContentSequence]) for s in srs)

    # probabilities equal `cxr predict` on the same files
    files = (archive.files[r] for r in ELIGIBLE)
    assert cxr("predict", run, *files, "--format", "json", "--out", tmp_path / "p.json", "--precision", "32") == 0
    expected = {}
    for row in json.loads((tmp_path / "p.json").read_text())["results"]:
        for role in ELIGIBLE:
            if row["name"] == str(archive.files[role]):
                expected[archive.uid(role)] = row
    for sr in srs:
        ref, probs, uncertain = sr_values(sr)
        assert probs == pytest.approx(expected[ref]["probabilities"], abs=1e-6)  # float32: batch composition
        assert uncertain == ("yes" if expected[ref]["uncertain"] else "no")

    summary = json.loads((tmp_path / "summary.json").read_text())
    reasons = {i["uid"]: (i["kind"], i["reason"]) for i in summary["issues"]}
    assert reasons[archive.uid("lateral")] == ("skipped", "view position LL (only frontal PA/AP views are read)")
    assert reasons[archive.uid("ct")][1].startswith("modality CT")
    assert reasons[archive.uid("broken")][0] == "error" and "PixelData" in reasons[archive.uid("broken")][1]
    assert reasons[archive.uid("multiframe")] == ("error", "multi-frame object (3 frames); a radiograph is one frame")
    kind, reason = reasons[archive.uid("compressed")]
    assert kind == "error" and reason.startswith("cannot decode DICOM pixels")
    assert reasons[archive.uid("nopixels")] == (
        "error",
        "DICOM file has no pixel data (a report or structured document?)",
    )
    assert len(reasons) == 6

    before = all_instances(dicomweb)
    assert cxr(*base) == 0  # state says done: nothing selected
    assert cxr(*base[:-2], "--state", tmp_path / "fresh.json", "--out", tmp_path / "again.json") == 1
    assert all_instances(dicomweb) == before  # a second run adds nothing, even with a fresh state file
    again = json.loads((tmp_path / "again.json").read_text())  # the broken instance is read (and refused) again
    assert (again["sr"], again["overlays"], again["already"]) == (0, 0, [archive.study("pa")])
    logged = capfd.readouterr()
    assert "SYNTH^ONE" not in logged.err + logged.out and "SYN-0001" not in logged.err + logged.out


def test_watch_survives_a_pacs_outage_and_resumes(pacs_run, server, archive, dicomweb, tmp_path, capfd):
    argv = [
        "pacs",
        "watch",
        str(pacs_run),
        "--url",
        server.dicomweb,
        "--interval",
        "0.1",
        "--cycles",
        "1",
        "--attempts",
        "2",
        "--state",
        str(tmp_path / "state.json"),
    ]
    first: list[str] = []

    def stop_after_first(study: str) -> None:
        first.append(study)
        server.stop()

    run_watch(build_parser().parse_args(argv), after_study=stop_after_first)
    out = capfd.readouterr().err
    assert len(first) == 1 and "PACS unreachable (connection failed) after 2 attempts" in out
    assert "rerun the same command to continue" in out and "cycle 1:" in out
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["studies"][first[0]]["status"] == "done"
    assert set(json.dumps(state)) and "SYNTH" not in json.dumps(state)  # UIDs and counters only

    server.start()
    run_watch(build_parser().parse_args(argv))
    srs = results(dicomweb, "SR")
    assert sorted(sr_values(s)[0] for s in srs) == sorted(archive.uid(r) for r in ELIGIBLE)
    resumed = capfd.readouterr().err
    assert "cycle 1:" in resumed and f"study {first[0]}" not in resumed  # the finished study is not redone


def test_dry_run_stores_nothing_and_vanished_study_is_reported(pacs_run, server, archive, dicomweb, tmp_path, capfd):
    base = ["pacs", "predict", str(pacs_run), "--url", server.dicomweb, "--state", str(tmp_path / "s.json")]
    before = all_instances(dicomweb)
    assert cxr(*base, "--all-new", "--dry-run", "--out", tmp_path / "dry.json") == 0
    assert all_instances(dicomweb) == before
    planned = json.loads((tmp_path / "dry.json").read_text())["planned"]
    # broken, no-pixel and compressed headers look fine: only their pixels tell
    assert planned == {archive.study("pa"): 1, archive.study("mono1"): 4, archive.study("ct"): 0}

    gone = archive.study("mono1")
    job = make_job(build_parser().parse_args(base + ["--all-new"]))
    studies = job.select()  # the QIDO query; then the study is deleted before it is retrieved
    for found in requests.post(f"{server.url}/tools/lookup", data=gone).json():
        requests.delete(f"{server.url}/studies/{found['ID']}").raise_for_status()
    summary = job.run(studies)
    assert summary.failed == [gone] and summary.stopped is None
    assert f"study {gone}: failed: study {gone}: not found on the PACS" in capfd.readouterr().err
    assert [sr_values(s)[0] for s in results(dicomweb, "SR")] == [archive.uid("pa")]


def test_basic_auth_from_the_environment(pacs_run, tmp_path, monkeypatch, capfd):
    from cxrkit.pacs import orthanc

    from .conftest import part10, synthetic_dicom

    if reason := orthanc.missing():
        pytest.skip(reason)
    with orthanc.LocalOrthanc(tmp_path / "o", users={"reader": "s3cret-pw"}) as srv:
        upload = requests.post(f"{srv.url}/instances", data=part10(synthetic_dicom()), auth=("reader", "s3cret-pw"))
        upload.raise_for_status()
        base = [
            "pacs",
            "predict",
            pacs_run,
            "--url",
            srv.dicomweb,
            "--all-new",
            "--attempts",
            "1",
            "--state",
            tmp_path / "s.json",
        ]
        monkeypatch.delenv("CXR_PACS_USER", raising=False)
        assert cxr(*base) == 2
        assert "HTTP 401" in capfd.readouterr().err
        monkeypatch.setenv("CXR_PACS_USER", "reader")
        monkeypatch.setenv("CXR_PACS_PASSWORD", "s3cret-pw")
        assert cxr(*base) == 0
        logged = capfd.readouterr()
        assert "1 studies done" in logged.out and "s3cret-pw" not in logged.out + logged.err
