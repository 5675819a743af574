"""The Python API and the CLI take backend and precision defaults from one place."""

from __future__ import annotations

import argparse
import inspect
import json

import numpy as np
import pytest

import cxrkit
from cxrkit.cli.main import build_parser, main
from cxrkit.inference import Predictor, load_predictor
from cxrkit.inference.defaults import DEFAULT_BACKEND, DEFAULT_PRECISION
from cxrkit.inference.ensemble import EnsemblePredictor, load_ensemble

API = {
    "cxrkit.load": cxrkit.load,
    "load_predictor": load_predictor,
    "Predictor": Predictor.__init__,
    "Predictor.from_run": Predictor.from_run,
    "EnsemblePredictor.from_run": EnsemblePredictor.from_run,
    "load_ensemble": load_ensemble,
}


@pytest.mark.parametrize("name", sorted(API))
def test_every_loader_defaults_to_the_shared_values(name):
    params = inspect.signature(API[name]).parameters
    assert params["backend"].default == DEFAULT_BACKEND, name
    assert params["precision"].default == DEFAULT_PRECISION, name


def _options(command: str) -> dict[str, argparse.Action]:
    """The options of ``command`` ("pacs predict": a subcommand's own)."""
    parser = build_parser()
    for word in command.split():
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[word]
    return {opt: action for action in parser._actions for opt in action.option_strings}


@pytest.mark.parametrize("command", ["predict", "serve", "evaluate", "pacs predict", "explain"])
def test_every_command_defaults_to_the_shared_values(command):
    options = _options(command)
    assert options["--precision"].default == DEFAULT_PRECISION
    if "--backend" in options:  # evaluate and explain run the network itself (NETWORK_BACKEND)
        assert options["--backend"].default == DEFAULT_BACKEND
    assert command not in ("predict", "serve") or "--backend" in options


def test_a_script_and_cxr_predict_choose_the_same_backend_and_numbers(onnx_run, blob_dataset, capsys):
    """On a run with an export, both pick it (auto), at the same precision, with the same answers."""
    files = [str(p) for p in sorted(blob_dataset.glob("*/*.png"))[::12]]
    main(["predict", str(onnx_run), *files, "--format", "json"])
    doc = json.loads(capsys.readouterr().out)
    script = cxrkit.load(onnx_run)
    assert doc["backend"] == script.backend == "onnx" and doc["precision"] == script.precision
    got = np.array([[r["probabilities"][c] for c in doc["classes"]] for r in doc["results"]])
    np.testing.assert_allclose(got, script.predict_proba(files), atol=1e-6)


def test_explainer_takes_a_default_loaded_predictor_of_an_exported_run(onnx_run, synth_array):
    from cxrkit.explain import Explainer

    predictor = cxrkit.load(onnx_run)
    assert predictor.backend == "onnx"  # auto chose the export, which has no network to hook
    explainer = Explainer(predictor)
    assert explainer.predictor.backend == "torch" and explainer.predictor.run.run_dir == predictor.run.run_dir
    images = np.stack([explainer.predictor.preprocessing.to_uint8(synth_array(s) / 255) for s in range(2)])
    assert explainer.explain(images).maps.shape[0] == 2
