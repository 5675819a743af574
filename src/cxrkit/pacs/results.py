"""The DICOM objects a PACS job sends back: one Comprehensive SR per image and, with ``--cam``,
one secondary-capture image of the Grad-CAM overlay, both built by highdicom.

Every UID is new (never a source UID) but derived from the result key (model id + model
card hash) and the source UID (``pydicom.uid.generate_uid(entropy_srcs=...)``, a SHA-512
hash): rerunning a job, even after a kill mid-study, recreates the same UIDs, so the PACS
keeps one copy (Orthanc ignores a SOP Instance UID it already holds) and a job can ask the
PACS which results already exist. ``--reprocess`` adds a salt, giving new series.

Codes: LOINC 18748-4 for the document, DCM 111001/111003 for the algorithm's name and version,
DCM 121071 Finding, DCM 121106 Comment (the research notice), DCM 121112 for the source image,
and ``99CXRKIT`` (a private coding scheme, as DICOM allows) for the per-class probabilities and
the uncertain flag, which have no standard code.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np

from .._meta import RESEARCH_NOTICE, __version__

MANUFACTURER = "cxrkit"
SERIES_PREFIX = "cxrkit"
SR_SERIES_NUMBER, SC_SERIES_NUMBER = 9901, 9902
SCHEME = "99CXRKIT"


def card_hash(card: dict) -> str:
    """First 12 hex digits of the SHA-256 of the model card as canonical JSON (calibration
    included: a recalibrated model gives other probabilities, hence other results)."""
    return hashlib.sha256(json.dumps(card, sort_keys=True, default=str).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class ResultNaming:
    """UIDs and series descriptions of one model's results (``salt`` set by ``--reprocess``)."""

    model_id: str
    card_hash: str
    salt: str = ""

    @property
    def key(self) -> str:
        return f"{self.model_id} card {self.card_hash}"

    def _uid(self, *parts: str) -> str:
        from pydicom.uid import generate_uid

        return generate_uid(entropy_srcs=["cxrkit-pacs", self.key, self.salt, *parts])

    def series_uid(self, study_uid: str, kind: str) -> str:
        return self._uid("series", kind, study_uid)

    def sop_uid(self, source_sop_uid: str, kind: str) -> str:
        return self._uid("sop", kind, source_sop_uid)

    def description(self, kind: str) -> str:
        """SeriesDescription (LO, at most 64 characters)."""
        return f"{SERIES_PREFIX} {kind} {self.model_id}"[:64]


# Patient and study attributes a derived object must carry (type 2: present, empty when unknown).
TYPE2 = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
)


def with_type2(source):
    """``source`` (a header) with the missing type-2 patient/study attributes present and empty,
    so highdicom copies them as DICOM requires instead of failing on a sparse source."""
    for keyword in TYPE2:
        if keyword not in source:
            setattr(source, keyword, "")
    return source


def _code(value: str, meaning: str, scheme: str = SCHEME):
    from highdicom.sr import CodedConcept

    return CodedConcept(value, scheme, meaning)


def _other_abnormal_items(prediction, unit, has) -> list:
    """Models with auxiliary outputs: the other-abnormal probability and its flag (none otherwise)."""
    from highdicom.sr import NumContentItem, TextContentItem

    if getattr(prediction, "other_abnormal", None) is None:
        return []
    return [
        NumContentItem(
            _code("OTHERABN", "Probability of another abnormality (none of the classes)"),
            float(prediction.other_abnormal),
            unit,
            relationship_type=has,
        ),
        TextContentItem(
            _code("OTHERFLAG", "Other abnormality flagged (needs a reader)"),
            "yes" if prediction.other_abnormal_flag else "no",
            has,
        ),
    ]


def content_tree(prediction, classes: list[str], source, naming: ResultNaming, threshold: float, temperature: float):
    """The SR content: root container with the finding, probabilities, flag, model, notice, source."""
    from highdicom.sr import (
        ContainerContentItem,
        ContentSequence,
        ImageContentItem,
        NumContentItem,
        RelationshipTypeValues,
        TextContentItem,
    )

    has = RelationshipTypeValues.CONTAINS
    unit = _code("1", "no units", "UCUM")
    items = [
        TextContentItem(_code("121071", "Finding", "DCM"), prediction.predicted_class, has),
        *[
            NumContentItem(
                _code(f"P{k}", f"Probability of {c}"), float(prediction.probabilities[c]), unit, relationship_type=has
            )
            for k, c in enumerate(classes)
        ],
        TextContentItem(
            _code("UNCERTAIN", "Uncertain (top probability below threshold)"),
            "yes" if prediction.uncertain else "no",
            has,
        ),
        *_other_abnormal_items(prediction, unit, has),
        NumContentItem(_code("THRESHOLD", "Uncertain threshold"), float(threshold), unit, relationship_type=has),
        NumContentItem(
            _code("TEMPERATURE", "Calibration temperature"), float(temperature), unit, relationship_type=has
        ),
        TextContentItem(_code("111001", "Algorithm Name", "DCM"), naming.model_id, has),
        TextContentItem(
            _code("111003", "Algorithm Version", "DCM"), f"model card {naming.card_hash}; cxrkit {__version__}", has
        ),
        TextContentItem(_code("121106", "Comment", "DCM"), RESEARCH_NOTICE, has),
        ImageContentItem(
            _code("121112", "Source of Measurement", "DCM"),
            source.SOPClassUID,
            source.SOPInstanceUID,
            relationship_type=has,
        ),
    ]
    root = ContainerContentItem(_code("18748-4", "Diagnostic imaging report", "LN"))
    root.ContentSequence = ContentSequence(items)
    return root


def structured_report(
    prediction,
    classes: list[str],
    source,
    naming: ResultNaming,
    threshold: float,
    temperature: float,
    instance_number: int,
):
    """A highdicom ComprehensiveSR for one prediction on ``source`` (its header, without pixels)."""
    from highdicom.sr import ComprehensiveSR

    sr = ComprehensiveSR(
        evidence=[with_type2(source)],
        content=content_tree(prediction, classes, source, naming, threshold, temperature),
        manufacturer_model_name=naming.model_id[:64],
        **_identity(source, naming, "SR", SR_SERIES_NUMBER, instance_number),
    )
    return _part10(sr)


def _identity(source, naming: ResultNaming, kind: str, series_number: int, instance_number: int) -> dict:
    """highdicom arguments naming a derived object: its (derived) UIDs, numbers, series, maker."""
    return {
        "series_instance_uid": naming.series_uid(source.StudyInstanceUID, kind),
        "series_number": series_number,
        "sop_instance_uid": naming.sop_uid(source.SOPInstanceUID, kind),
        "instance_number": instance_number,
        "manufacturer": MANUFACTURER,
        "series_description": naming.description(kind),
        "software_versions": f"cxrkit {__version__}",
    }


def overlay_image(rgb: np.ndarray, source, naming: ResultNaming, instance_number: int):
    """A highdicom secondary-capture image of the overlay ``rgb`` (H, W, 3) uint8, which has the
    research notice burned in, referencing ``source``."""
    from highdicom.sc import SCImage
    from pydicom.dataset import Dataset

    source = with_type2(source)
    orientation = tuple(source.get("PatientOrientation") or ()) or ("L", "F")
    sc = SCImage.from_ref_dataset(
        ref_dataset=source,
        pixel_array=np.ascontiguousarray(rgb),
        photometric_interpretation="RGB",
        bits_allocated=8,
        coordinate_system="PATIENT",
        patient_orientation=orientation[:2],
        **_identity(source, naming, "CAM", SC_SERIES_NUMBER, instance_number),
    )
    ref = Dataset()
    ref.ReferencedSOPClassUID = source.SOPClassUID
    ref.ReferencedSOPInstanceUID = source.SOPInstanceUID
    sc.SourceImageSequence = [ref]
    sc.DerivationDescription = f"Grad-CAM overlay by {naming.model_id}"[:1024]
    sc.BurnedInAnnotation = "YES"
    sc.ImageComments = RESEARCH_NOTICE
    return _part10(sc)


def _part10(ds):
    """Give the dataset the 128-byte preamble dicomweb-client's STOW encoding needs to write a
    valid Part 10 file (without it the PACS stores, and later serves, a headerless object)."""
    ds.preamble = b"\0" * 128
    return ds


def figure_rgb(fig) -> np.ndarray:
    """A matplotlib Figure on the Agg canvas as an (H, W, 3) uint8 array."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
