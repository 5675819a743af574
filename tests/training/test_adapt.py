"""`cxr adapt`: a run adapted to a new site's labeled films, and the site report's folds.

Synthetic data: the base learns blob positions; the "site" moves every blob a little and adds
labels the base has no class for, as a later acquisition would.
"""

import csv
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from cxrkit.cli.main import main
from cxrkit.errors import UsageError

pytestmark = pytest.mark.slow


def _site(blob_folder, root, n=8, extra=("bacterial_pneumonia",)):
    """A site: normal and viral films with shifted blobs, plus labels that are not classes."""
    blob_folder(root, "normal", (44, 28), n, 11)
    blob_folder(root, "viral_pneumonia", (20, 44), n, 12)
    for k, label in enumerate(extra):
        blob_folder(root, label, (48, 48), n // 2, 13 + k)
    return root


@pytest.fixture(scope="module")
def aux_base(blob_writer, tiny_config, tmp_path_factory, blob_folder):
    """A tiny base with an auxiliary 'pneumonia' output, calibrated as `cxr train` leaves it."""
    from cxrkit.training import train

    root = tmp_path_factory.mktemp("aux_base")
    data = blob_writer(root / "d", per_class=16)
    blob_folder(data, "pneumonia", (48, 48), 16, 5)
    config = tiny_config(data, root / "run", root / "cache", epochs=2)
    return train(config, progress_bar=False).run_dir, root / "cache"


def _settings(**kw):
    from cxrkit.training.adapt import AdaptSettings

    return AdaptSettings(**{"epochs": 1, "replay": 24, "batch_size": 8, **kw})


def test_adapted_run_keeps_the_base_and_names_its_lineage(aux_base, tmp_path, blob_folder):
    import cxrkit
    from cxrkit.run import read_card
    from cxrkit.workflows.adapt import adapt

    base, cache = aux_base
    site = _site(blob_folder, tmp_path / "site", extra=("bacterial_pneumonia", "fracture"))
    said = []
    settings = _settings(label_map={"bacterial_pneumonia": "pneumonia"})
    result = adapt(base, site, tmp_path / "new", settings, workers=1, cache_dir=cache, on_stage=said.append)
    card, base_card = read_card(result.run_dir), read_card(base)
    assert card.classes == base_card.classes and card.aux_outputs == base_card.aux_outputs == ["pneumonia"]
    assert card.preprocessing == base_card.preprocessing
    lineage = card.extra["adaptation"]
    assert lineage["base_run"] == str(base.resolve())
    # a label that is no class trains the output --map names; one it does not name is left out; both said
    assert lineage["site"]["label_map"] == {
        "bacterial_pneumonia": "pneumonia",
        "normal": "normal",
        "viral_pneumonia": "viral_pneumonia",
    }
    assert lineage["site"]["left_out"] == {"fracture": 4}
    assert lineage["site"]["films"] == {"bacterial_pneumonia": 4, "normal": 8, "viral_pneumonia": 8}
    assert any("bacterial_pneumonia trains the base's output pneumonia" in m for m in said)
    assert any("left out: 4 film(s) labeled fracture" in m and "--map fracture=CLASS" in m for m in said)
    assert card.calibration is not None and card.calibration.fitted_on  # refit: ready to predict at once
    assert (result.run_dir / "split.csv").read_text() == (base / "split.csv").read_text()
    # the weights moved, and the new run predicts like any run
    old = cxrkit.load(base, backend="torch", precision="32")
    new = cxrkit.load(result.run_dir, backend="torch", precision="32")
    films = sorted((site / "normal").glob("*.png"))[:3]
    assert not np.allclose(old.predict_proba(films), new.predict_proba(films))
    assert len(new.predict(films).results) == 3


def test_adapted_run_works_everywhere_a_run_does(aux_base, tmp_path, blob_folder):
    import cxrkit
    from cxrkit.evaluation.evaluate import evaluate_run
    from cxrkit.explain import Explainer
    from cxrkit.inference import Predictor
    from cxrkit.inference.export import export_onnx
    from cxrkit.serve.app import create_app
    from cxrkit.workflows.adapt import adapt

    base, cache = aux_base
    site = _site(blob_folder, tmp_path / "site")
    run = adapt(base, site, tmp_path / "new", _settings(), workers=1, cache_dir=cache).run_dir
    film = sorted((site / "normal").glob("*.png"))[0]
    # evaluate: the base's own test split by default (what the adaptation cost elsewhere)
    metrics = evaluate_run(run, workers=1, cache_dir=cache, n_resamples=20)
    assert metrics["data"]["split"] == "test" and metrics["overall"]["n_images"] > 0
    # explain
    predictor = Predictor.from_run(run)
    images = np.stack([predictor.preprocessing.to_uint8(np.asarray(Image.open(film)))])
    assert Explainer(predictor).explain(images).maps.shape[0] == 1
    # export: ONNX gives the torch probabilities
    export_onnx(run)
    torch_p = cxrkit.load(run, backend="torch", precision="32").predict_proba([film])
    onnx_p = cxrkit.load(run, backend="onnx").predict_proba([film])
    assert np.allclose(torch_p, onnx_p, atol=1e-4)
    # serve
    from cxrkit.serve.client import upload
    from cxrkit.serve.server import running

    with running(create_app(cxrkit.load(run, precision="32"))) as url:
        r = upload(f"{url}/v1/predict", film.read_bytes(), "a.png")
    assert r.status == 200 and set(r.json()["probabilities"]) == {"covid", "viral_pneumonia", "normal"}


def test_site_report_measures_on_held_out_patients(aux_base, tmp_path, blob_folder):
    from cxrkit.workflows.adapt import site_report

    base, cache = aux_base
    site = _site(blob_folder, tmp_path / "site", n=6)
    report = site_report(
        base,
        site,
        tmp_path / "rep",
        folds=2,
        shots=(0, 2, None),
        settings=_settings(label_map={"bacterial_pneumonia": "pneumonia"}),
        workers=1,
        cache_dir=cache,
        resamples=20,
    )
    saved = json.loads((tmp_path / "rep" / "site_report.json").read_text())
    assert saved["learning_curve"][0]["shots"] == 0 and [s["shots"] for s in saved["learning_curve"]] == [0, 2, "all"]
    for step in report["learning_curve"]:
        assert step["films"] == {"viral_pneumonia": 6, "normal": 6}  # every class film predicted once per step
        m = step["metrics"]["balanced_accuracy"]
        assert 0.0 <= m["lo"] <= m["value"] <= m["hi"] <= 1.0
    assert (tmp_path / "rep" / "learning_curve.png").stat().st_size > 1000
    md = (tmp_path / "rep" / "site_report.md").read_text()
    assert "| 0 (base) |" in md and "base run's own test split" in md
    assert report["adapted_on_all"]["adapted"]["accuracy"]["value"] >= 0
    assert (tmp_path / "rep" / "model" / "model_card.json").is_file()
    assert not (tmp_path / "rep" / "work").exists()
    with open(tmp_path / "rep" / "site_predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    site_films = [r for r in rows if r["trains"] in ("normal", "viral_pneumonia")]
    assert len(rows) == 15 and len(site_films) == 12  # the 3 bacterial films train the aux output: no class
    assert {r["p_label_all"] for r in rows if r["trains"] == "pneumonia"} == {""}
    assert {r["fold"] for r in rows} == {"0", "1"} and {r["called_all"] for r in rows} <= {
        "covid",
        "viral_pneumonia",
        "normal",
    }
    right = sum(r["called_all"] == r["trains"] for r in site_films)
    assert right / 12 == pytest.approx(report["learning_curve"][-1]["metrics"]["accuracy"]["value"])
    assert all(0.0 <= float(r["p_label_base"]) <= 1.0 for r in site_films)


def test_folds_are_patient_disjoint_and_nested_shots():
    from cxrkit.workflows.adapt import shot_rows, site_folds

    patients = [f"p{i // 2}" for i in range(40)]  # two films per patient
    labels = np.array([0 if i < 20 else 1 for i in range(40)])
    fold = site_folds(patients, labels, 5, seed=3)
    for p in set(patients):
        assert len({fold[i] for i, q in enumerate(patients) if q == p}) == 1
    assert sorted(np.bincount(fold)) == [8] * 5
    pool = np.nonzero(fold != 0)[0]
    five, two = set(shot_rows(patients, labels, pool, 5, 1)), set(shot_rows(patients, labels, pool, 2, 1))
    assert two < five and len({patients[i] for i in five}) == 10


def test_one_patient_cannot_be_folded():
    from cxrkit.workflows.adapt import site_folds

    with pytest.raises(UsageError, match="1 patient; folds need at least 2"):
        site_folds(["p1", "p1"], np.array([0, 0]), 5)
    with pytest.raises(UsageError, match="--folds 3"):
        site_folds(["a", "b", "c"], np.array([0, 1, 0]), 5)


def test_bad_sites_and_bases_get_one_clear_line(aux_base, tiny_run, tmp_path, capsys, blob_folder):
    base, cache = aux_base
    common = ["--epochs", "1", "--replay", "8", "--workers", "1"]

    def run(*argv):
        with pytest.raises(SystemExit) as exc:
            main(["adapt", *map(str, argv), *common])
        return exc.value.code, capsys.readouterr().err

    # unknown labels and no auxiliary output to take them: nothing to train on
    odd = tmp_path / "odd"
    blob_folder(odd, "fracture", (10, 10), 4, 1)
    code, err = run(tiny_run.run_dir, "--data", odd, "--out", tmp_path / "o1")
    assert code == 2 and "no film maps to an output" in err and "fracture (4)" in err and "--map" in err
    assert not (tmp_path / "o1").exists()
    # images that do not decode: all of them -> refused, naming what was found
    broken = tmp_path / "broken"
    (broken / "normal").mkdir(parents=True)
    for i in range(3):
        (broken / "normal" / f"x{i}.png").write_bytes(b"not a png")
    code, err = run(base, "--data", broken, "--out", tmp_path / "o2")
    assert code == 2 and "no film maps" in err and "no readable films" in err
    # an ensemble: adapt a member
    from cxrkit.inference.ensemble import create_ensemble

    ens = tmp_path / "ens"
    create_ensemble(ens, [tiny_run.run_dir, tiny_run.run_dir])
    code, err = run(ens, "--data", _site(blob_folder, tmp_path / "s"), "--out", tmp_path / "o3")
    assert code == 2 and "is an ensemble; adapt one member" in err
    # a bad --map and an existing --out
    code, err = run(base, "--data", tmp_path / "s", "--out", tmp_path / "o4", "--map", "fracture")
    assert code == 2 and "LABEL=CLASS" in err
    code, err = run(base, "--data", tmp_path / "s", "--out", base)
    assert code == 2 and "already holds a run" in err


def test_some_unreadable_site_films_are_listed_and_the_rest_adapts(aux_base, tmp_path, blob_folder):
    from cxrkit.workflows.adapt import adapt

    base, cache = aux_base
    site = _site(blob_folder, tmp_path / "site", extra=())
    (site / "normal" / "broken.png").write_bytes(b"\x89PNG truncated")
    result = adapt(base, site, tmp_path / "new", _settings(), workers=1, cache_dir=cache)
    assert [s["path"].endswith("broken.png") for s in result.skipped] == [True]
    assert result.card.extra["adaptation"]["site"]["films"] == {"normal": 8, "viral_pneumonia": 8}


def test_one_patient_site_adapts_with_a_warning(aux_base, tmp_path, blob_folder):
    from cxrkit.workflows.adapt import adapt

    base, cache = aux_base
    site = tmp_path / "site"
    blob_folder(site, "normal", (44, 28), 1, 1)
    said = []
    adapt(base, site, tmp_path / "new", _settings(), workers=1, cache_dir=cache, on_stage=said.append)
    assert any("one site patient" in m for m in said)
    shutil.rmtree(tmp_path / "new")


def test_replay_is_bounded_by_count_and_by_site_films():
    from cxrkit.training.adapt import AdaptSettings, n_replay

    s = AdaptSettings()
    assert n_replay(s, 15) == 60 and n_replay(s, 215) == 800 and n_replay(AdaptSettings(replay=0), 50) == 0


def test_cxr_adapt_in_a_log_file_says_every_epoch(aux_base, tmp_path, blob_folder, multiprocess_env):
    import subprocess
    import sys

    base, cache = aux_base
    site = _site(blob_folder, tmp_path / "site", extra=())
    argv = [sys.executable, "-m", "cxrkit", "adapt", str(base), "--data", str(site), "--out", str(tmp_path / "new")]
    argv += ["--epochs", "2", "--replay", "16", "--workers", "1"]
    with open(tmp_path / "err.log", "w") as err:
        done = subprocess.run(
            argv, env={**multiprocess_env, "CXR_CACHE": str(cache)}, stderr=err, stdout=subprocess.PIPE
        )
    log = (tmp_path / "err.log").read_text()
    assert done.returncode == 0, log
    assert "epoch 1/2: train loss" in log and "epoch 2/2: train loss" in log
    assert b"adapted from" in done.stdout and (tmp_path / "new" / "model_card.json").is_file()


def test_site_films_alike_keeps_the_site_total_and_the_replay_weights():
    from cxrkit.training.adapt import site_films_alike

    # replay: 2 normal (weight 1), 1 viral (weight 2); site: 3 normal (1), 1 viral (2)
    w = site_films_alike(np.array([1.0, 1.0, 2.0, 1.0, 1.0, 1.0, 2.0]), n_replay=3)
    assert w[:3].tolist() == [1.0, 1.0, 2.0]
    assert w[3:].tolist() == [1.25] * 4 and w[3:].sum() == 5.0


def test_site_weights_films_fits_and_moves_the_weights_differently(aux_base, tmp_path, blob_folder):
    from cxrkit.training.adapt import fit_adapted, load_site

    base, cache = aux_base
    site = _site(blob_folder, tmp_path / "site", n=6, extra=())
    blob_folder(site, "normal", (44, 28), 12, 21)  # twice as many normal films as viral ones
    sd = load_site(base, site, workers=1, cache_dir=cache)
    alike = fit_adapted(sd, settings=_settings(site_weights="films"))
    labels = fit_adapted(sd, settings=_settings(site_weights="labels"))
    p_alike, p_labels = (np.concatenate([p.detach().ravel().numpy() for p in m.parameters()]) for m in (alike, labels))
    assert not np.allclose(p_alike, p_labels)
    with pytest.raises(UsageError, match="site_weights must be one of labels, films"):
        fit_adapted(sd, settings=_settings(site_weights="patients"))
