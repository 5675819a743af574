"""The run layer: a typed, validated model card; run directories written by 0.1 (784c882) still load."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from cxrkit.run import ModelCard, RunDir, RunError, read_card, update_card, write_card

FIXTURE = Path(__file__).parents[1] / "fixtures" / "model_card_784c882.json"


def _run_with(tmp_path: Path, card: dict | list | str) -> Path:
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    (run / "model_card.json").write_text(card if isinstance(card, str) else json.dumps(card))
    return run


def test_a_card_written_by_784c882_loads_and_round_trips(tmp_path):
    original = json.loads(FIXTURE.read_text())
    card = read_card(_run_with(tmp_path, original))
    assert card.classes == ["covid", "viral_pneumonia", "normal"] and card.model.name == "resdense_tiny"
    assert card.preprocessing.input_size == 32 and card.temperature == 1.0
    assert card.split_hash == original["split"]["hash"]
    assert card.to_dict() == original  # nothing lost, nothing renamed


def test_unknown_sections_and_fields_are_kept(tmp_path):
    d = json.loads(FIXTURE.read_text())
    d["future_section"] = {"x": 1}
    d["preprocessing"]["roi"] = "lungs"
    card = read_card(_run_with(tmp_path, d))
    assert card.to_dict()["future_section"] == {"x": 1} and card.preprocessing.to_dict()["roi"] == "lungs"


def _broken(d: dict, path: str, value):
    *parents, last = path.split(".")
    node = d
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = value
    return d


@pytest.mark.parametrize(
    "path, value, needle",
    [
        ("calibration.temperature", 0, "temperature"),
        ("calibration.temperature", -2.0, "temperature"),
        ("calibration.temperature", math.inf, "temperature"),
        ("preprocessing.std", 0, "std"),
        ("preprocessing.input_size", 100000, "input_size"),
        ("preprocessing.input_size", "224", "input_size"),
        ("classes", ["covid", "covid", "normal"], "twice"),
        ("classes", ["covid"], "at least two"),
        ("format", "other/9", "format"),
        ("model", "resnet", "malformed"),
    ],
)
def test_damaged_cards_are_refused_naming_the_file_and_field(tmp_path, path, value, needle):
    d = _broken(json.loads(FIXTURE.read_text()), path, value)
    with pytest.raises(RunError, match=needle) as err:
        read_card(_run_with(tmp_path, d))
    assert "model_card.json" in str(err.value)


@pytest.mark.parametrize(
    "text, needle",
    [("[1, 2]", "JSON object"), ("{not json", "not valid JSON"), ('{"format": "cxrkit-model-card/1"}', "no 'classes'")],
)
def test_cards_that_are_not_cards_are_refused(tmp_path, text, needle):
    with pytest.raises(RunError, match=needle):
        read_card(_run_with(tmp_path, text))


def test_update_card_replaces_one_section_and_keeps_the_rest(tmp_path):
    run = _run_with(tmp_path, json.loads(FIXTURE.read_text()))
    update_card(run, "calibration", {"temperature": 1.7, "fitted_on": "val", "val_images": 9})
    update_card(run, "onnx", {"file": "model.onnx"})
    card = read_card(run)
    assert card.temperature == 1.7 and card.onnx == {"file": "model.onnx"} and card.classes[0] == "covid"
    with pytest.raises(RunError, match="temperature"):
        update_card(run, "calibration", {"temperature": 0.0})
    assert read_card(run).temperature == 1.7  # a refused update changes nothing on disk
    assert [p.name for p in run.iterdir()] == ["model_card.json"]  # no temporary left behind


def test_write_card_stamps_versions_and_refuses_invalid(tmp_path):
    card = ModelCard.from_dict(json.loads(FIXTURE.read_text()))
    write_card(tmp_path, card)
    written = read_card(tmp_path)
    assert written.versions["cxrkit"] and written.host["cpu_model"]  # the CPU a trained number came from
    card.classes = ["a", "a"]
    with pytest.raises(RunError):
        write_card(tmp_path / "other", card)
    assert not (tmp_path / "other").exists()


def test_run_dir_names_every_file(tmp_path):
    r = RunDir(tmp_path)
    names = {r.config.name, r.split.name, r.weights.name, r.card.name, r.onnx.name, r.metrics.name}
    assert names == {"config.yaml", "split.csv", "model.safetensors", "model_card.json", "model.onnx", "metrics.json"}
    assert not r.has_started() and not r.is_finished()
    r.weights.write_bytes(b"")
    assert r.has_started()


def test_truncated_or_empty_weights_and_nan_weights(tmp_path):
    import torch

    import cxrkit
    from cxrkit.models import build_classifier, load_run, save_weights

    run = _run_with(tmp_path, json.loads(FIXTURE.read_text()))
    model, _ = build_classifier("resdense_tiny", 3, in_chans=1, pretrained=False)
    save_weights(run, model)
    good = (run / "model.safetensors").read_bytes()
    for damaged in (b"", good[: len(good) // 2]):
        (run / "model.safetensors").write_bytes(damaged)
        with pytest.raises(RunError, match="safetensors"):
            load_run(run)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    save_weights(run, model)
    out = cxrkit.load(run).predict(np.random.default_rng(0).random((3, 40, 40)).astype(np.float32))
    assert not out.results and len(out.errors) == 3 and "non-finite" in out.errors[0].reason
