"""bench/ladder.py: the ladder page reads the runs it names, and keeps rungs measured before."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _ladder():
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        spec = importlib.util.spec_from_file_location("bench_ladder", ROOT / "bench" / "ladder.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(ROOT / "bench"))


def _run(path: Path, accuracy: float, leaked: int) -> None:
    (path / "evaluation").mkdir(parents=True)
    card = {
        "model": {"name": "tf_efficientnet_lite0"},
        "preprocessing": {"input_size": 224},
        "classes": ["covid", "normal"],
        "git_commit": "abcdef1234567",
        "host": {"cpu_model": "Test CPU"},
    }
    ci = {"value": accuracy, "lo": accuracy - 0.02, "hi": accuracy + 0.01}
    metrics = {
        "data": {"n_images": 435},
        "protocol": {"leaked_test_images": leaked},
        "overall": {"metrics": {"accuracy": ci, "sensitivity/covid": ci}},
    }
    (path / "model_card.json").write_text(json.dumps(card))
    (path / "evaluation" / "metrics.json").write_text(json.dumps(metrics))


def _build(tmp_path, monkeypatch, runs: list[str], command_a: str = "cxr train a") -> dict:
    """Write the spec (rungs a and c; rung a's command ``command_a``) and the ``runs``, run ladder.py."""
    commands = {"a": command_a, "c": "cxr train c"}
    spec = {
        "notes": "test",
        "recipes": [
            {
                "name": "r",
                "what": "a recipe",
                "rungs": [{"rung": x, "run": str(tmp_path / x), "commands": [commands[x]]} for x in "ac"],
            }
        ],
    }
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    for name in runs:
        _run(tmp_path / name, 0.95, 71 if name == "a" else 0)
    argv = ["ladder.py", "--spec", str(tmp_path / "spec.yaml"), "--out", str(tmp_path / "ladder")]
    monkeypatch.setattr(sys, "argv", argv)
    _ladder().main()
    return json.loads((tmp_path / "ladder.json").read_text())


def test_a_rung_row_is_read_from_its_run_and_an_absent_run_is_listed(tmp_path, monkeypatch):
    doc = _build(tmp_path, monkeypatch, ["a"])
    (row,) = doc["tables"][0]["rows"]
    assert row[1].startswith("(a)") and row[4] == "71" and row[5] == "95.0 [93.0, 96.0]"
    assert row[8] == "abcdef1234" and row[9] == "Test CPU" and "98.75" in row[6]
    assert "Not measured (no run directory; its commands are in bench/ladder.yaml): r (c)" in doc["markdown"]


def test_a_rung_measured_before_keeps_its_row_when_its_run_is_gone(tmp_path, monkeypatch):
    _build(tmp_path, monkeypatch, ["a", "c"])
    shutil.rmtree(tmp_path / "a")
    doc = _build(tmp_path, monkeypatch, [])
    rows = doc["tables"][0]["rows"]
    assert [r[1][:3] for r in rows] == ["(a)", "(c)"] and rows[0][5] == "95.0 [93.0, 96.0]"
    assert "Kept from the previous results file" in doc["markdown"] and "it): r (a)." in doc["markdown"]
    assert "Not measured" not in doc["markdown"]


def test_a_rung_whose_commands_changed_is_not_carried_over(tmp_path, monkeypatch):
    _build(tmp_path, monkeypatch, ["a"])
    shutil.rmtree(tmp_path / "a")
    doc = _build(tmp_path, monkeypatch, [], command_a="cxr train a --input-size 288")
    assert doc["tables"][0]["rows"] == [] and "r (a)" in doc["markdown"].split("Not measured")[1]
