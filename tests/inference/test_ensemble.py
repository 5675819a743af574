"""Ensembles of run directories: averaging rule, refusals, the ensemble directory, and every
command that accepts a run (predict, evaluate, serve, export) accepting one."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import cxrkit
from cxrkit.cli.main import main
from cxrkit.inference import Predictor
from cxrkit.inference.ensemble import EnsembleError, EnsemblePredictor, create_ensemble
from cxrkit.run import RunDir, read_card, update_card
from cxrkit.run.card import RunError


def _copy(tiny_run, dest, seed: int | None = None, temperature: float | None = None):
    """A private copy of the tiny run; ``seed`` perturbs its weights (a second, different model)."""
    run = shutil.copytree(tiny_run.run_dir, dest)
    if seed is not None:
        g = np.random.default_rng(seed)
        state = load_file(RunDir(run).weights)
        for k, v in state.items():
            if v.is_floating_point() and v.ndim > 1:
                state[k] = v + 0.2 * v.std() * torch.from_numpy(g.standard_normal(v.shape, np.float32))
        save_file(state, RunDir(run).weights, metadata={"format": "pt"})
    if temperature is not None:
        update_card(run, "calibration", {"temperature": temperature})
    return run


@pytest.fixture(scope="module")
def members(tiny_run, tmp_path_factory):
    """Two different members (temperatures 2.0 and 0.5) in one folder, as users keep runs."""
    root = tmp_path_factory.mktemp("members")
    return [_copy(tiny_run, root / "a", temperature=2.0), _copy(tiny_run, root / "b", seed=1, temperature=0.5)]


@pytest.fixture(scope="module")
def ens(members, tmp_path_factory):
    return create_ensemble(tmp_path_factory.mktemp("ens") / "ens", members)


@pytest.fixture
def images(members, synth_array) -> np.ndarray:
    pre = Predictor.from_run(members[0]).preprocessing
    return np.stack([pre.to_uint8(synth_array(s)) for s in range(4)])


def test_one_member_equals_the_member(members, images):
    one = EnsemblePredictor.from_members(members[:1], precision="32")
    member = Predictor.from_run(members[0], precision="32")
    np.testing.assert_allclose(one.proba_from_uint8(images), member.proba_from_uint8(images), atol=1e-6)
    assert one.classes == member.classes and one.temperature == 1.0


def test_two_members_average_probabilities_each_after_its_own_temperature(members, images):
    a, b = (Predictor.from_run(m, precision="32") for m in members)
    assert (a.temperature, b.temperature) == (2.0, 0.5)
    pa, pb = a.proba_from_uint8(images), b.proba_from_uint8(images)
    assert np.abs(pa - pb).max() > 1e-3  # the members differ, so the test can tell
    got = EnsemblePredictor.from_members(members, precision="32").proba_from_uint8(images)
    np.testing.assert_allclose(got, (pa + pb) / 2, atol=1e-6)
    tta = EnsemblePredictor.from_members(members, tta="standard", precision="32").proba_from_uint8(images)
    ta, tb = (Predictor.from_run(m, tta="standard", precision="32").proba_from_uint8(images) for m in members)
    np.testing.assert_allclose(tta, (ta + tb) / 2, atol=1e-6)


def test_mismatched_classes_or_split_are_refused(members, tmp_path):
    other = shutil.copytree(members[0], tmp_path / "reordered")
    card = json.loads(RunDir(other).card.read_text())
    card["classes"] = card["classes"][::-1]
    RunDir(other).card.write_text(json.dumps(card))
    with pytest.raises(EnsembleError, match="same classes in the same order"):
        EnsemblePredictor.from_members([members[0], other])
    update_card(other, "classes", read_card(members[0]).classes)
    update_card(other, "split", {**read_card(other).split, "hash": "0" * 64})
    with pytest.raises(EnsembleError, match="share one split.csv"):
        create_ensemble(tmp_path / "ens", [members[0], other])
    code = _cli(["evaluate", "--ensemble", str(members[0]), str(other)])
    assert code == 2 and not (members[0].parent / "ensemble-a+reordered").exists()


def test_ensemble_directory_round_trip(ens, members, images, tmp_path):
    spec = json.loads(RunDir(ens).ensemble.read_text())
    assert [m["path"] for m in spec["members"]] == [f"../../{m.parent.name}/{m.name}" for m in members]
    assert {m["split_hash"] for m in spec["members"]} == {read_card(members[0]).split_hash}
    card = read_card(ens)
    assert card.is_ensemble and card.classes == spec["classes"] == read_card(members[0]).classes
    assert RunDir(ens).split.read_bytes() == RunDir(members[0]).split.read_bytes()
    loaded = cxrkit.load(ens, precision="32")
    assert isinstance(loaded, EnsemblePredictor) and loaded.model_id.startswith("ens@")
    expected = EnsemblePredictor.from_members(members, precision="32").proba_from_uint8(images)
    np.testing.assert_allclose(loaded.proba_from_uint8(images), expected, atol=1e-6)
    assert create_ensemble(ens, members) == ens  # same members: kept
    with pytest.raises(EnsembleError, match="not this ensemble"):
        create_ensemble(ens, members[:1])
    moved = shutil.copytree(members[1], tmp_path / "b2")
    broken = create_ensemble(tmp_path / "e2", [members[0], moved])
    update_card(moved, "split", {**read_card(moved).split, "hash": "1" * 64})
    with pytest.raises(EnsembleError, match="changed since the ensemble was made"):
        cxrkit.load(broken)
    with pytest.raises(cxrkit.errors.UsageError, match="explain one member|use one member"):
        loaded.model  # noqa: B018


def test_members_with_different_preprocessing_decode_once_prepare_each(members, tmp_path, make_image):
    small = shutil.copytree(members[1], tmp_path / "small")
    card = json.loads(RunDir(small).card.read_text())
    card["preprocessing"]["input_size"] = 48
    RunDir(small).card.write_text(json.dumps(card))
    ensemble = EnsemblePredictor.from_members([members[0], small], precision="32")
    path = make_image("x.png", seed=3)
    packed = ensemble.prepare(path)
    assert packed.shape == (64 * 64 + 48 * 48,)
    got = ensemble.predict([path]).results[0].probabilities
    parts = [
        Predictor.from_run(m, precision="32").predict([path]).results[0].probabilities for m in (members[0], small)
    ]
    assert got == pytest.approx({c: (parts[0][c] + parts[1][c]) / 2 for c in got}, abs=1e-6)
    from cxrkit.inference.splits import predict_split

    ens = cxrkit.load(create_ensemble(tmp_path / "e", [members[0], small]), precision="32")
    scored = predict_split(ens, None, "val", 1)  # each member on its own cached pixels
    by_member = [predict_split(Predictor.from_run(m, precision="32"), None, "val", 1) for m in (members[0], small)]
    mean = np.mean([b.probs(Predictor.from_run(m).temperature) for b, m in zip(by_member, (members[0], small))], 0)
    np.testing.assert_allclose(scored.probs(), mean, atol=1e-5)
    assert [r.path for r in scored.dataset.records] == [r.path for r in by_member[0].dataset.records]
    assert ens.preprocessing.to_dict() == {
        "members": [read_card(m).preprocessing.to_dict() for m in (members[0], small)]
    }
    with pytest.raises(cxrkit.errors.UsageError, match="load it with cxrkit.load"):
        Predictor.from_run(tmp_path / "e")  # the single-run loader: ensembles go through cxrkit.load


def _cli(args) -> int:
    try:
        main(args)
    except SystemExit as exc:
        return exc.code
    return 0


def test_cli_create_predict_and_explain_refusal(members, blob_dataset, tmp_path, capsys):
    files = [str(p) for p in sorted(blob_dataset.glob("covid/*.png"))[:2]]
    assert _cli(["ensemble", "create", "--out", str(tmp_path / "e"), *map(str, members)]) == 0
    capsys.readouterr()
    assert _cli(["predict", str(tmp_path / "e"), *files, "--format", "json"]) == 0
    from_dir = json.loads(capsys.readouterr().out)
    assert _cli(["predict", *map(str, members), *files, "--format", "json"]) == 0  # leading runs: members
    inline = json.loads(capsys.readouterr().out)
    assert (
        from_dir["ensemble_members"] == inline["ensemble_members"] == [Predictor.from_run(m).model_id for m in members]
    )
    for r, s in zip(from_dir["results"], inline["results"], strict=True):
        assert r["probabilities"] == pytest.approx(s["probabilities"], abs=1e-6)
    assert _cli(["explain", str(tmp_path / "e"), files[0], "--out", str(tmp_path / "cam")]) == 2
    assert f"cxr explain {members[0]}" in " ".join(capsys.readouterr().err.split())


def test_evaluate_an_ensemble_keeps_members_untouched(members, tmp_path, capsys):
    before = [RunDir(m).card.read_bytes() for m in members]
    assert _cli(["evaluate", "--ensemble", *map(str, members), "--resamples", "20", "--workers", "1"]) == 0
    ens = members[0].parent / "ensemble-a+b"
    ev = json.loads(RunDir(ens).metrics.read_text())
    assert ev["ensemble_members"] == [Predictor.from_run(m).model_id for m in members] and ev["tta"] == "none"
    assert ev["run"]["split_hash"] == read_card(members[0]).split_hash
    assert read_card(ens).calibration.fitted_on  # the ensemble's own temperature, in its own card
    assert [RunDir(m).card.read_bytes() for m in members] == before


def test_serve_an_ensemble(ens, blob_dataset):
    from cxrkit.serve import create_app
    from cxrkit.serve.client import request, upload
    from cxrkit.serve.server import running

    path = blob_dataset / "normal" / "normal_000.png"
    with running(create_app(cxrkit.load(ens, precision="32"))) as url:
        health = request(f"{url}/healthz").json()
        r = upload(f"{url}/v1/predict", path.read_bytes(), path.name)
        cam = upload(f"{url}/v1/explain", path.read_bytes(), path.name)
    assert health["model_id"].startswith("ens@") and health["tta"] == "none"
    assert r.status == 200, r.body
    expected = cxrkit.load(ens, precision="32").predict([path]).results[0]
    assert r.json()["probabilities"] == pytest.approx(expected.probabilities, abs=1e-6)
    assert cam.status == 422 and "use one member" in cam.json()["detail"]


@pytest.mark.slow
def test_export_an_ensemble_onnx_parity(tiny_run, tmp_path, synth_array):
    runs = [_copy(tiny_run, tmp_path / "a", temperature=1.5), _copy(tiny_run, tmp_path / "b", seed=2)]
    ens = create_ensemble(tmp_path / "ens", runs)
    assert _cli(["export", str(ens), "--onnx"]) == 0
    assert all(read_card(r).onnx for r in runs) and read_card(ens).extra["onnx_ensemble"]["check"]["images"] == 4
    a, b = cxrkit.load(ens, backend="torch", precision="32"), cxrkit.load(ens, backend="onnx")
    assert [m.backend for m in b.members] == ["onnx", "onnx"]
    x = np.stack([a.preprocessing.to_uint8(synth_array(s)) for s in range(6)])
    np.testing.assert_allclose(a.proba_from_uint8(x), b.proba_from_uint8(x), atol=1e-4)
    with pytest.raises(RunError):  # a member retrained after export: its onnx is stale, refused
        update_card(runs[1], "onnx", {**read_card(runs[1]).onnx, "weights_sha256": "0"})
        cxrkit.load(ens, backend="onnx")


def _with_aux_output(run, seed: int, threshold: float | None):
    """``run`` given a trained-looking auxiliary output 'pneumonia' (one more row in its head) and,
    unless None, an other-abnormal threshold in its calibration, as `cxr evaluate` leaves it."""
    state = load_file(RunDir(run).weights)
    g = torch.Generator().manual_seed(seed)
    state["head.fc.weight"] = torch.cat(
        [state["head.fc.weight"], torch.randn(1, state["head.fc.weight"].shape[1], generator=g)]
    )
    state["head.fc.bias"] = torch.cat([state["head.fc.bias"], torch.tensor([0.5])])
    save_file(state, RunDir(run).weights, metadata={"format": "pt"})
    card = json.loads(RunDir(run).card.read_text())
    card["model"]["aux_outputs"] = ["pneumonia"]
    RunDir(run).card.write_text(json.dumps(card))
    if threshold is not None:
        update_card(
            run, "calibration", {"temperature": read_card(run).temperature, "other_abnormal": {"threshold": threshold}}
        )
    return run


@pytest.fixture(scope="module")
def aux_members(tiny_run, tmp_path_factory):
    root = tmp_path_factory.mktemp("aux_members")
    return [
        _with_aux_output(_copy(tiny_run, root / "a", temperature=2.0), 0, 0.2),
        _with_aux_output(_copy(tiny_run, root / "b", seed=1), 1, 0.4),
    ]


def test_an_ensemble_carries_the_members_other_abnormal_output(aux_members, images, blob_dataset):
    a, b = (Predictor.from_run(m, precision="32") for m in aux_members)
    ens = EnsemblePredictor.from_members(aux_members, precision="32")
    assert ens.aux_classes == ["pneumonia"] == a.aux_classes
    (pa, oa), (pb, ob) = a.proba_and_other_from_uint8(images), b.proba_and_other_from_uint8(images)
    assert np.abs(oa - ob).max() > 1e-3  # the members differ
    probs, other = ens.proba_and_other_from_uint8(images)
    np.testing.assert_allclose(probs, (pa + pb) / 2, atol=1e-6)  # classes as before
    np.testing.assert_allclose(other, (oa + ob) / 2, atol=1e-6)  # the mean other-abnormal probability
    np.testing.assert_allclose(ens.proba_from_uint8(images), (pa + pb) / 2, atol=1e-6)
    # the flag: the members' mean threshold until the ensemble has its own
    assert ens.other_abnormal_threshold == pytest.approx(0.3)
    files = sorted(blob_dataset.glob("*/*.png"))[::9]
    results = ens.predict(files).results
    assert all(r.other_abnormal is not None and r.other_abnormal_flag == (r.other_abnormal >= 0.3) for r in results)
    update_card(aux_members[1], "calibration", {"temperature": 1.0})  # a member without a threshold
    try:
        assert EnsemblePredictor.from_members(aux_members).other_abnormal_threshold is None
    finally:
        update_card(aux_members[1], "calibration", {"temperature": 1.0, "other_abnormal": {"threshold": 0.4}})


def test_ensemble_directory_and_cli_keep_the_other_abnormal_columns(
    aux_members, blob_dataset, tmp_path, capsys, monkeypatch
):
    ens = create_ensemble(tmp_path / "ens", aux_members)
    assert read_card(ens).aux_outputs == ["pneumonia"]
    loaded = cxrkit.load(ens, precision="32")
    assert loaded.aux_classes == ["pneumonia"] and loaded.other_abnormal_threshold == pytest.approx(0.3)
    files = [str(p) for p in sorted(blob_dataset.glob("normal/*.png"))[:3]]
    assert _cli(["predict", *map(str, aux_members), *files, "--out", str(tmp_path / "p.csv")]) == 0
    head = (tmp_path / "p.csv").read_text().splitlines()[0]
    assert head.endswith("p_other_abnormal,other_abnormal_flag,error")
    capsys.readouterr()
    assert _cli(["predict", str(ens), *files, "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["other_abnormal"]["threshold"] == pytest.approx(0.3)
    assert doc["other_abnormal"]["threshold_rule"].startswith("mean of the members' thresholds")
    assert all("other_abnormal" in r for r in doc["results"])
    # `cxr evaluate ENS` fits the ensemble's own threshold on val (few val films here: lowered)
    from cxrkit.evaluation import evaluate
    from cxrkit.evaluation.evaluate import calibrate_run

    monkeypatch.setattr(evaluate, "MIN_CALIBRATION_IMAGES", 3)
    fitted = calibrate_run(loaded, workers=1)["other_abnormal"]["threshold"]
    assert fitted is not None and loaded.other_abnormal_threshold == fitted
    assert loaded.other_abnormal_rule == "fitted on val for this ensemble"
