"""Off a terminal (here: pytest's captured stderr) progress is plain lines, at least every
``PLAIN_INTERVAL_S`` (shrunk here), never a rich bar's single frame."""

from __future__ import annotations

import re
import shutil
import time

import pytest

from cxrkit.cli import _plain
from cxrkit.cli._console import heartbeat, progress_bar, say
from cxrkit.cli.main import main

LINE = re.compile(r"^\[cxr \d+(s|m\d\ds|h\d\dm)\] ")


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if LINE.match(line)]


@pytest.mark.parametrize(("seconds", "text"), [(0, "0s"), (42.4, "42s"), (252, "4m12s"), (3720, "1h02m"), (-3, "0s")])
def test_durations_read_short(seconds, text):
    assert _plain.format_duration(seconds) == text


def test_progress_writes_a_line_only_when_one_is_due(capsys, monkeypatch):
    monkeypatch.setattr(_plain, "PLAIN_INTERVAL_S", 3600.0)
    with heartbeat(), progress_bar("reading images") as update:
        update(1, 10)
        assert capsys.readouterr().err == ""  # not due: silent, and no bar frame either
        monkeypatch.setattr(_plain, "PLAIN_INTERVAL_S", 0.0)
        update(5, 10)
        update(10, 10)
    err = capsys.readouterr().err
    assert [LINE.sub("", x) for x in _lines(err)] == [
        "reading images: 5/10 (50%), ETA 0s",
        "reading images: 10/10 (100%), ETA 0s",
    ]


def test_the_heartbeat_names_a_step_that_reports_no_counts(capsys, monkeypatch):
    monkeypatch.setattr(_plain, "PLAIN_INTERVAL_S", 0.1)
    with heartbeat():
        say("metrics with 1000 bootstrap resamples")
        time.sleep(0.6)
    out, err = capsys.readouterr()
    assert "» metrics with 1000 bootstrap resamples" in out
    beats = _lines(err)
    assert len(beats) >= 2 and all(
        re.search(r"metrics with 1000 bootstrap resamples \(\d+s so far\)$", b) for b in beats
    )


def test_train_writes_a_line_per_epoch_and_lines_within_epochs(
    blob_dataset, tmp_path, tiny_train_argv, capsys, monkeypatch
):
    monkeypatch.setattr(_plain, "PLAIN_INTERVAL_S", 0.0)  # every batch is due
    main(tiny_train_argv(blob_dataset, tmp_path / "run", tmp_path / "cache")[3:])
    err = capsys.readouterr().err
    lines = [LINE.sub("", x) for x in _lines(err)]
    epochs = [x for x in lines if re.match(r"epoch \d/2: train loss [\d.]+, val loss [\d.]+, val acc [\d.]+, ETA", x)]
    assert [x.split(":")[0] for x in epochs] == ["epoch 1/2", "epoch 2/2"], err
    assert any(re.match(r"epoch 2/2: batch 1/\d+ \(\d+%\), train loss [\d.]+, ETA \S+$", x) for x in lines), err
    assert "━" not in err  # no rich bar frame


def test_evaluate_says_what_it_is_doing(tiny_run, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(_plain, "PLAIN_INTERVAL_S", 0.0)
    run = shutil.copytree(tiny_run.run_dir, tmp_path / "run")
    main(["evaluate", str(run), "--resamples", "20", "--workers", "1"])
    lines = [LINE.sub("", x) for x in _lines(capsys.readouterr().err)]
    assert any(re.match(r"predicting the default split of the training data: \d+/\d+ \(\d+%\), ETA", x) for x in lines)
