"""inference.sharded: prediction shared between processes, merged in order, resumable after a crash."""

from __future__ import annotations

import csv
import io
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cxrkit.inference import Predictor, find_images
from cxrkit.inference.formats import predictions_csv
from cxrkit.inference.sharded import PLAN_FILE, ShardPlanError, launch, parts_dir, predict_sharded

WORKER = Path(__file__).with_name("sharded_worker.py")


def _rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def assert_same_predictions(got: str, expected: str) -> None:
    """Same files in the same order, same classes and errors; probabilities to float noise."""
    a, b = _rows(got), _rows(expected)
    assert [r["file"] for r in a] == [r["file"] for r in b]
    for x, y in zip(a, b):
        assert (x["predicted_class"], x["uncertain"], x["error"]) == (y["predicted_class"], y["uncertain"], y["error"])
        for k in x:
            if k.startswith("p_") and x[k]:
                assert float(x[k]) == pytest.approx(float(y[k]), abs=1e-5)


@pytest.fixture
def inputs(blob_dataset, tmp_path):
    """The blob images plus one corrupt file among them (it must be reported, in its place)."""
    data = tmp_path / "inputs"
    shutil.copytree(blob_dataset, data, ignore=shutil.ignore_patterns("*.csv"))
    (data / "covid" / "covid_005b.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return data


@pytest.fixture
def single_csv(tiny_run, inputs):
    predictor = Predictor.from_run(tiny_run.run_dir, batch_size=4, precision="32")
    files, _, _ = find_images([inputs])
    return predictions_csv(predictor.predict(files), predictor.classes)


def test_one_process_resumes_after_a_crash_and_refuses_another_jobs_parts(tiny_run, inputs, single_csv, tmp_path):
    predictor = Predictor.from_run(tiny_run.run_dir, batch_size=4, precision="32")
    files, _, _ = find_images([inputs])
    fabric = launch("cpu", 1)
    out = tmp_path / "p.csv"

    def crash(chunk):
        if chunk == 2:
            raise KeyboardInterrupt  # interrupted after chunks 0..2 were saved

    with pytest.raises(KeyboardInterrupt):
        predict_sharded(predictor, files, out, fabric, chunk_size=6, on_chunk=crash)  # 6 -> 8: two batches
    saved = sorted(p.name for p in parts_dir(out).glob("chunk-*.json"))
    assert saved == ["chunk-000000.json", "chunk-000001.json", "chunk-000002.json"] and not out.exists()

    result = predict_sharded(
        predictor,
        files,
        out,
        fabric,
        chunk_size=6,
        write=lambda m: out.write_text(predictions_csv(m, predictor.classes)),
    )
    assert (result.chunks, result.skipped, result.predicted) == (10, 3, 7)  # 73 inputs in chunks of 8
    assert_same_predictions(out.read_text(), single_csv)
    assert not parts_dir(out).exists()  # removed once the merged file was written

    other = Predictor.from_run(tiny_run.run_dir, batch_size=4, threshold=0.9, precision="32")
    with pytest.raises(KeyboardInterrupt):
        predict_sharded(other, files, out, fabric, chunk_size=8, on_chunk=crash)
    with pytest.raises(ShardPlanError, match="threshold"):
        predict_sharded(predictor, files, out, fabric, chunk_size=8)
    assert (parts_dir(out) / PLAN_FILE).is_file()  # nothing of the other job was touched


@pytest.mark.timeout(300)
def test_cli_two_processes_give_the_single_process_file(tiny_run, inputs, single_csv, tmp_path, multiprocess_env):
    out = tmp_path / "sharded.csv"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "cxrkit",
            "predict",
            str(tiny_run.run_dir),
            str(inputs),
            "--out",
            str(out),
            "--devices",
            "2",
            "--accelerator",
            "cpu",
            "--batch-size",
            "4",
            "--chunk-size",
            "8",
            "--precision",
            "32",  # single_csv is fp32; auto would be bf16 on AVX-512 BF16 CPUs
        ],
        env=multiprocess_env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]  # 1: one input failed
    assert "over 2 process(es)" in proc.stdout
    assert_same_predictions(out.read_text(), single_csv)
    assert "covid_005b.png" in out.read_text().splitlines()[-1]  # the failure, after the results
    assert not parts_dir(out).exists()


@pytest.mark.timeout(300)
def test_torchrun_crash_of_one_rank_then_rerun_skips_finished_chunks(
    tiny_run, inputs, single_csv, tmp_path, multiprocess_env
):
    out = tmp_path / "p.csv"

    def torchrun(mode):
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                "--nproc-per-node",
                "2",
                str(WORKER),
                str(tiny_run.run_dir),
                str(inputs),
                str(out),
                mode,
            ],
            env=multiprocess_env,
            capture_output=True,
            text=True,
            timeout=140,
        )

    crashed = torchrun("crash")
    assert crashed.returncode != 0 and not out.exists()
    finished = len(list(parts_dir(out).glob("chunk-*.json")))
    assert finished >= 1  # rank 1 saved its first chunk before dying

    rerun = torchrun("ok")
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    skipped = int(re.search(r"rank 0: skipped (\d+) of 10", rerun.stdout).group(1))
    assert skipped == finished < 10
    assert_same_predictions(out.read_text(), single_csv)
