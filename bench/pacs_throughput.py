"""PACS throughput: studies per second end to end against a local Orthanc, next to `cxr predict`
on the same images from files.

Makes ``--studies`` synthetic one-image CR studies (``--size`` px, 12-bit, MONOCHROME2, PA),
writes them as DICOM files in a temporary folder and uploads them to a throwaway Orthanc
(``cxrkit.pacs.orthanc.LocalOrthanc``, Debian's orthanc + orthanc-dicomweb). Then, in one
process and with one Predictor (``cxrkit.load``):

* ``cxr predict`` path: ``Predictor.predict(files)`` on the DICOM files;
* ``cxr pacs predict --all-new`` path: ``PacsJob.run`` (QIDO plan, WADO metadata and pixels,
  prediction, SR built by highdicom, STOW-RS), studies per second;
* the same again: every study already has its results (the idempotence check alone);
* with ``--cam`` on the first ``--cam-studies`` studies (Grad-CAM + secondary capture).

    nice -n 10 .venv/bin/python bench/pacs_throughput.py [--run RUN_DIR] [--studies 200] [--size 512]

Without ``--run`` it trains resdense_tiny for one epoch at 64 px on synthetic blobs (the model
cost is then small, so the numbers show the DICOMweb and DICOM overheads). Writes
bench/results/pacs_throughput.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import cxrkit  # noqa: E402
from cxrkit.pacs.config import PacsConfig  # noqa: E402
from cxrkit.pacs.job import PacsJob  # noqa: E402
from cxrkit.pacs.orthanc import LocalOrthanc  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import save_result  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "pacs_throughput.json"


def synthetic_study(seed: int, size: int):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    rng = np.random.default_rng(seed)
    coarse = Image.fromarray((rng.random((8, 8)) * 255).astype(np.uint8)).resize((size, size), Image.BICUBIC)
    arr = (np.asarray(coarse, np.float32) * 16).astype(np.uint16)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.1", generate_uid()
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    ds.preamble = b"\0" * 128
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.StudyDate, ds.Modality, ds.ViewPosition = (
        f"BENCH^{seed}",
        f"B{seed:04d}",
        "20261201",
        "CR",
        "PA",
    )
    ds.Rows = ds.Columns = size
    ds.PhotometricInterpretation, ds.SamplesPerPixel = "MONOCHROME2", 1
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = arr.tobytes()
    return ds


def tiny_run(root: Path) -> Path:
    from cxrkit.training import TrainConfig, train

    rng = np.random.default_rng(0)
    for k, name in enumerate(("covid", "normal", "viral_pneumonia")):
        (root / "data" / name).mkdir(parents=True)
        for i in range(12):
            img = rng.normal(100, 20, (64, 64))
            img[8 + 16 * k : 24 + 16 * k, 20:44] += 80
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / "data" / name / f"{i}.png")
    tiny = {"model": "resdense_tiny", "pretrained": False, "epochs": 1, "input_size": 64, "batch_size": 8}
    cfg = TrainConfig(data=str(root / "data"), out=str(root / "run"), cache_dir=str(root / "cache"), workers=1, **tiny)
    return train(cfg, progress_bar=False).run_dir


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path)
    ap.add_argument("--studies", type=int, default=200)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--cam-studies", type=int, default=20)
    args = ap.parse_args()
    from dicomweb_client.api import DICOMwebClient

    with tempfile.TemporaryDirectory() as tmp, LocalOrthanc(Path(tmp) / "orthanc") as server:
        tmp = Path(tmp)
        run = args.run or tiny_run(tmp / "model")
        studies = [synthetic_study(i, args.size) for i in range(args.studies)]
        files = []
        for ds in studies:
            files.append(tmp / "files" / f"{ds.SOPInstanceUID}.dcm")
            files[-1].parent.mkdir(exist_ok=True)
            ds.save_as(files[-1], enforce_file_format=True)
        uploader = DICOMwebClient(server.dicomweb)
        _, t_upload = timed(lambda: [uploader.store_instances(studies[i : i + 20]) for i in range(0, len(studies), 20)])
        predictor = cxrkit.load(run)
        preds, t_files = timed(lambda: predictor.predict(files))
        assert not preds.errors, preds.errors[:3]
        conn = PacsConfig(server.dicomweb).connect()
        job = PacsJob(predictor, conn, log=lambda line: None)
        uids = [ds.StudyInstanceUID for ds in studies]
        first, t_pacs = timed(lambda: job.run(job.select(uids)))
        again, t_again = timed(lambda: PacsJob(predictor, conn, log=lambda line: None).run(uids))
        cam_job = PacsJob(predictor, conn, cam=True, reprocess=True, log=lambda line: None)
        cam, t_cam = timed(lambda: cam_job.run(uids[: args.cam_studies]))
    assert first.sr == args.studies and not first.errors and len(again.already) == args.studies
    assert cam.overlays == args.cam_studies
    n = args.studies
    rows = [
        ("`cxr predict` on the DICOM files (Predictor.predict)", n, t_files),
        ("`cxr pacs predict` (QIDO + WADO + predict + SR + STOW)", n, t_pacs),
        ("`cxr pacs predict` again (all results present: checks only)", n, t_again),
        ("`cxr pacs predict --cam` (+ Grad-CAM + secondary capture)", args.cam_studies, t_cam),
    ]
    text = [
        f"# PACS throughput ({n} one-image CR studies, {args.size}x{args.size} 12-bit, local Orthanc)",
        "",
        f"`nice -n 10 .venv/bin/python bench/pacs_throughput.py --studies {n} --size {args.size}"
        f"{' --run ' + str(args.run) if args.run else ''}`",
        "",
        f"Model: {predictor.model_id} ({'given run' if args.run else 'resdense_tiny, 64 px, trained here'});"
        f" {os.cpu_count()} CPU cores, {platform.python_version()}; upload of the studies (not counted): "
        f"{t_upload:.1f} s.",
        "",
        "| path | studies | seconds | studies/s |",
        "| --- | ---: | ---: | ---: |",
    ]
    text += [f"| {name} | {k} | {t:.1f} | {k / t:.1f} |" for name, k, t in rows]
    text += [
        "",
        f"PACS path / file path: {t_pacs / t_files:.1f}x the time per study. Load average at the end: "
        f"{os.getloadavg()[0]:.1f} (the machine is shared: compare rows of one run, not runs).",
    ]
    save_result(OUT, {"paths": [list(r) for r in rows]}, markdown="\n".join(text) + "\n")
    print("\n".join(text))


if __name__ == "__main__":
    main()
