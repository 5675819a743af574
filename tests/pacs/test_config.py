"""PACS configuration without a server: retries and back-off, credentials, state, DICOM objects."""

from __future__ import annotations

import json

import pytest
import requests

from cxrkit.errors import UsageError
from cxrkit.pacs.config import PacsConfig, PacsError, with_retries
from cxrkit.pacs.state import JobState


def failing(status=None, times=99):
    calls = []

    def fn():
        calls.append(1)
        if len(calls) <= times:
            if status is None:
                raise requests.ConnectionError("refused")
            response = requests.Response()
            response.status_code = status
            raise requests.HTTPError(response=response)
        return "ok"

    return fn, calls


def test_transient_errors_are_retried_with_exponential_backoff():
    waits = []
    fn, calls = failing(503, times=2)
    assert with_retries("QIDO-RS studies", fn, attempts=4, backoff=1.0, sleep=waits.append) == "ok"
    assert waits == [1.0, 2.0] and len(calls) == 3
    fn, calls = failing(None)
    with pytest.raises(PacsError, match=r"QIDO-RS studies: PACS unreachable \(connection failed\) after 3 attempts"):
        with_retries("QIDO-RS studies", fn, attempts=3, backoff=0.5, sleep=waits.append)
    assert waits[2:] == [0.5, 1.0]


def test_client_errors_are_not_retried():
    fn, calls = failing(403)
    with pytest.raises(PacsError, match="HTTP 403") as info:
        with_retries("study 1.2.3: QIDO-RS series", fn, attempts=4, backoff=1.0, sleep=lambda s: None)
    assert len(calls) == 1 and not info.value.transient and info.value.status == 403


def test_credentials_never_from_the_url_and_files_must_be_private(tmp_path, monkeypatch):
    with pytest.raises(UsageError, match="must not contain a user or password"):
        PacsConfig("https://bob:pw@pacs.example.org/dicom-web")
    with pytest.raises(UsageError, match="expected http"):
        PacsConfig("pacs.example.org")
    secret = tmp_path / "pacs.json"
    secret.write_text(json.dumps({"username": "bob", "password": "pw"}))
    secret.chmod(0o644)
    with pytest.raises(UsageError, match="chmod 600"):
        PacsConfig("https://pacs.example.org/dicom-web", credentials=secret).auth()
    secret.chmod(0o600)
    assert PacsConfig("https://pacs.example.org/dicom-web", credentials=secret).auth() == ("bob", "pw")
    monkeypatch.setenv("CXR_PACS_TOKEN", "tok-123")
    auth = PacsConfig("https://pacs.example.org/dicom-web").auth()
    request = auth(requests.Request("GET", "https://pacs.example.org").prepare())
    assert request.headers["Authorization"] == "Bearer tok-123" and "tok-123" not in repr(auth)
    assert PacsConfig("https://pacs.example.org/dicom-web").connect().session.verify is True


def test_state_holds_uids_only_and_belongs_to_one_model(tmp_path):
    path = tmp_path / "state.json"
    state = JobState(path, "run@abc card 123")
    state.record("1.2.3", False)
    state.record("1.2.3", False)
    state.record("1.2.4", True)
    again = JobState(path, "run@abc card 123")
    assert again.attempts("1.2.3") == 2 and again.done("1.2.4") and not again.done("1.2.3")
    assert set(json.loads(path.read_text())["studies"]["1.2.3"]) == {"status", "attempts"}
    with pytest.raises(UsageError, match="belongs to model"):
        JobState(path, "other@def card 456")


def test_sr_content_and_derived_uids():
    from types import SimpleNamespace

    from cxrkit import RESEARCH_NOTICE
    from cxrkit.pacs.results import ResultNaming, structured_report

    from .conftest import synthetic_dicom

    source = synthetic_dicom()
    pred = SimpleNamespace(
        predicted_class="normal", uncertain=True, probabilities={"covid": 0.2, "viral_pneumonia": 0.3, "normal": 0.5}
    )
    naming = ResultNaming("run@abc", "0123456789ab")
    sr = structured_report(pred, ["covid", "viral_pneumonia", "normal"], source, naming, 0.6, 1.3, 1)
    again = structured_report(pred, ["covid", "viral_pneumonia", "normal"], source, naming, 0.6, 1.3, 1)
    other = ResultNaming("run@abc", "0123456789ab", salt="reprocess").sop_uid(source.SOPInstanceUID, "SR")
    assert sr.SOPInstanceUID == again.SOPInstanceUID != other != source.SOPInstanceUID
    assert (sr.PatientID, sr.StudyInstanceUID) == (source.PatientID, source.StudyInstanceUID)
    assert sr.SeriesInstanceUID != source.SeriesInstanceUID
    items = {i.ConceptNameCodeSequence[0].CodeMeaning: i for i in sr.ContentSequence}
    assert items["Finding"].TextValue == "normal" and items["Comment"].TextValue == RESEARCH_NOTICE
    assert float(items["Probability of normal"].MeasuredValueSequence[0].NumericValue) == 0.5
    assert items["Uncertain (top probability below threshold)"].TextValue == "yes"
    assert "0123456789ab" in items["Algorithm Version"].TextValue
    assert not any("another abnormality" in k for k in items)  # a model without auxiliary outputs

    flagged = SimpleNamespace(**vars(pred), other_abnormal=0.8, other_abnormal_flag=True)
    sr = structured_report(flagged, ["covid", "viral_pneumonia", "normal"], source, naming, 0.6, 1.3, 1)
    items = {i.ConceptNameCodeSequence[0].CodeMeaning: i for i in sr.ContentSequence}
    assert items["Other abnormality flagged (needs a reader)"].TextValue == "yes"
    assert (
        float(items["Probability of another abnormality (none of the classes)"].MeasuredValueSequence[0].NumericValue)
        == 0.8
    )
