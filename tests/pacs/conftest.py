"""A real Orthanc per test (127.0.0.1, free port, temp storage) and synthetic DICOM cases."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from cxrkit.pacs import orthanc

CR, DX, CT = "1.2.840.10008.5.1.4.1.1.1", "1.2.840.10008.5.1.4.1.1.1.1", "1.2.840.10008.5.1.4.1.1.2"


@pytest.fixture
def server(tmp_path):
    if reason := orthanc.missing():
        pytest.skip(reason)
    with orthanc.LocalOrthanc(tmp_path / "orthanc") as srv:
        yield srv


def synthetic_dicom(
    sop_class: str = CR,
    modality: str = "CR",
    view: str | None = "PA",
    photometric: str = "MONOCHROME2",
    seed: int = 0,
    shape=(80, 72),
    study=None,
    series=None,
    frames: int = 1,
    pixels: bool = True,
    truncate: bool = False,
    patient: str = "SYNTH^ONE",
):
    """A pydicom Dataset (Part 10 ready) with 12-bit smooth noise; options make the broken kinds."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, generate_uid()
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = sop_class, ds.SOPInstanceUID
    ds.preamble = b"\0" * 128
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study or generate_uid(), series or generate_uid()
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = patient, "SYN-0001", "19700101", "O"
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.StudyID = "20261120", "101500", "ACC1", "S1"
    ds.ReferringPhysicianName = ""
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = modality, 1, 1
    if view:
        ds.ViewPosition = view
    if pixels:
        rng = np.random.default_rng(seed)
        from PIL import Image

        coarse = Image.fromarray((rng.random((6, 6)) * 255).astype(np.uint8)).resize(shape[::-1], Image.BICUBIC)
        arr = (np.asarray(coarse, np.float32) * 16).astype(np.uint16)
        arr = np.repeat(arr[None], frames, 0) if frames > 1 else arr
        ds.Rows, ds.Columns = shape
        ds.PhotometricInterpretation, ds.SamplesPerPixel = photometric, 1
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        if frames > 1:
            ds.NumberOfFrames = frames
        data = arr.tobytes()
        ds.PixelData = data[: len(data) // 2] if truncate else data
    return ds


def jpeg2000_without_decodable_pixels(ds):
    """The dataset relabelled JPEG 2000 with a codestream no decoder can read (a J2K start marker
    and noise): stands for a compressed transfer syntax this installation cannot decode."""
    from pydicom.encaps import encapsulate

    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.90"
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + bytes(range(256)) * 8])
    ds["PixelData"].VR = "OB"
    return ds


def part10(ds) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


@dataclass
class Archive:
    """What the test put on the PACS: datasets by role, their files (for `cxr predict`)."""

    items: dict[str, object] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)

    def uid(self, role: str) -> str:
        return self.items[role].SOPInstanceUID

    def study(self, role: str) -> str:
        return self.items[role].StudyInstanceUID


def upload(server, folder: Path, cases: dict[str, object]) -> Archive:
    """STOW the cases to ``server`` and keep a file copy of each (synthetic pixels only)."""
    from dicomweb_client.api import DICOMwebClient

    client = DICOMwebClient(server.dicomweb)
    archive = Archive()
    folder.mkdir(parents=True, exist_ok=True)
    for role, ds in cases.items():
        client.store_instances([ds])
        archive.items[role] = ds
        archive.files[role] = folder / f"{role}.dcm"
        archive.files[role].write_bytes(part10(ds))
    return archive


def standard_cases() -> dict[str, object]:
    """Study 1: PA MONOCHROME2 + lateral; study 2: AP MONOCHROME1 + broken, multi-frame, no-pixel and
    undecodable JPEG 2000 instances; study 3: CT."""
    from pydicom.uid import generate_uid

    s1, s2, s3 = generate_uid(), generate_uid(), generate_uid()
    return {
        "pa": synthetic_dicom(study=s1, seed=1),
        "lateral": synthetic_dicom(study=s1, view="LL", seed=2),
        "mono1": synthetic_dicom(DX, "DX", view="AP", photometric="MONOCHROME1", study=s2, seed=3),
        "broken": synthetic_dicom(DX, "DX", study=s2, seed=4, truncate=True),
        "multiframe": synthetic_dicom(DX, "DX", study=s2, seed=5, frames=3),
        "nopixels": synthetic_dicom(DX, "DX", study=s2, pixels=False),
        "compressed": jpeg2000_without_decodable_pixels(synthetic_dicom(DX, "DX", study=s2, seed=7)),
        "ct": synthetic_dicom(CT, "CT", view=None, study=s3, seed=6),
    }


@pytest.fixture
def archive(server, tmp_path) -> Archive:
    return upload(server, tmp_path / "sent", standard_cases())


@pytest.fixture
def dicomweb(server):
    from dicomweb_client.api import DICOMwebClient

    return DICOMwebClient(server.dicomweb)


@pytest.fixture(scope="session")
def pacs_run(blob_writer, tiny_config, tmp_path_factory) -> Path:
    """A seconds-long run (resdense_tiny, 1 epoch, 32 px) for the PACS tests: they test plumbing."""
    from cxrkit.training import train

    if reason := orthanc.missing():  # every user of this run also needs the server: skip before training
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("pacs_run")
    data = blob_writer(root / "data", per_class=8, size=32)
    cfg = tiny_config(data, root / "run", root / "cache", epochs=1, input_size=32, batch_size=8)
    return train(cfg, progress_bar=False).run_dir
