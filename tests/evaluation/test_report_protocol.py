"""The protocol named next to every headline number (cxrkit.evaluation.protocol)."""

from __future__ import annotations

from cxrkit.evaluation.protocol import protocol_label
from cxrkit.evaluation.report import tables_page

PATIENT = {"split_by": "patient", "holdout_source": None, "select": None, "leaky": False, "leaked_test_images": 0}


def test_patient_image_and_source_labels():
    assert protocol_label(PATIENT) == "patient-disjoint test split"
    image = {**PATIENT, "split_by": "image", "leaky": True, "leaked_test_images": 114}
    assert (
        protocol_label(image)
        == "random image split: LEAKY, 114 test images share a patient or near-duplicate with train"
    )
    source = {
        **PATIENT,
        "split_by": "source",
        "holdout_source": ["ieee8023", "Figure1"],
        "test_missing_classes": ["viral_pneumonia"],
    }
    assert protocol_label(source) == (
        "leave-source-out test split, held out: ieee8023, Figure1; no test images of viral_pneumonia"
    )


def test_a_patient_split_that_leaks_says_so_and_other_splits_are_named():
    leaked = {**PATIENT, "leaky": True, "leaked_test_images": 3, "select": ["label=covid n=219"]}
    assert protocol_label(leaked) == (
        "patient-disjoint test split: LEAKY, 3 test images share a patient or near-duplicate with train; "
        "images selected by label=covid n=219"
    )
    assert protocol_label(PATIENT, "val") == "val images of a patient-disjoint split"
    assert "includes the training images" in protocol_label(PATIENT, "all")
    assert protocol_label({**PATIENT, "external": True}, "all").startswith("external data, used whole")
    assert "unknown-protocol" in protocol_label({"split_by": None, "leaky": False})
    assert protocol_label(None) == ""


def test_tables_page_escapes_and_highlights():
    page = tables_page(
        "T <x>",
        "research only",
        ["intro & more"],
        [{"title": "A", "header": ["h"], "rows": [["<script>"], ["ok"]], "warn_rows": {0}, "text": "above"}],
        ["a note"],
    )
    assert page.startswith("<!DOCTYPE html>") and "Content-Security-Policy" in page
    assert "<script>" not in page and '<tr class="warn"><td>&lt;script&gt;</td>' in page
    assert "<tr><td>ok</td>" in page and "intro &amp; more" in page and "<li>a note</li>" in page
    assert page.count("research only") == 2
