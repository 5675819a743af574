"""Auxiliary classes: trained as extra outputs; the run reports the classes renormalised plus the
auxiliary mass as "other abnormal", flagged from a threshold fitted on val."""

import numpy as np
import pytest

from cxrkit.data.prepare import prepare
from cxrkit.errors import UsageError


def _with_aux(blob_writer, blob_folder, root, per_class=16):
    blob_writer(root, per_class=per_class)
    return blob_folder(root, "bacterial_pneumonia", (48, 48), per_class, seed=5)


def test_main_split_is_unchanged_and_aux_only_trains(blob_writer, blob_folder, tmp_path):
    data = _with_aux(blob_writer, blob_folder, tmp_path / "d")
    cache = tmp_path / "cache"
    plain = prepare(data, "covid,viral_pneumonia,normal", workers=1, cache_dir=cache)
    aux = prepare(data, "covid,viral_pneumonia,normal", aux_classes=["bacteria"], workers=1, cache_dir=cache)
    assert aux.dataset.classes == ("covid", "viral_pneumonia", "normal", "bacterial_pneumonia")
    by_file = {plain.dataset.relpath(r): s for r, s in zip(plain.dataset.records, plain.split.assignment)}
    for rec, s in zip(aux.dataset.records, aux.split.assignment):
        key = aux.dataset.relpath(rec)
        if rec.label == "bacterial_pneumonia":
            assert s == "train"
        else:
            assert s == by_file[key]  # same val and test images as without auxiliary classes
    assert aux.split.stats["auxiliary"] == {"classes": ["bacterial_pneumonia"], "train": 16, "excluded": 0}


def test_select_rules_written_for_the_classes_leave_auxiliary_films_out_without_error(
    blob_writer, blob_folder, tmp_path
):
    # the v1 composition's rules (label=covid n=219 ...) on data with auxiliary films: none of
    # them is selected, and the main split is the one the rules make without auxiliary classes
    data = _with_aux(blob_writer, blob_folder, tmp_path / "d", per_class=6)
    select = ["label=covid n=4", "label=normal", "label=viral_pneumonia"]
    kw = dict(workers=1, cache_dir=tmp_path / "c", select=select, split_by="image")
    plain = prepare(data, "covid,viral_pneumonia,normal", **kw)
    aux = prepare(data, "covid,viral_pneumonia,normal", aux_classes=["bacteria"], **kw)
    assert aux.split.stats["auxiliary"] == {"classes": ["bacterial_pneumonia"], "train": 0, "excluded": 6}
    main = [s for r, s in zip(aux.dataset.records, aux.split.assignment) if r.label != "bacterial_pneumonia"]
    assert main == plain.split.assignment


def test_aux_class_cannot_also_be_a_class(blob_writer, blob_folder, tmp_path):
    data = _with_aux(blob_writer, blob_folder, tmp_path / "d", per_class=4)
    with pytest.raises(UsageError, match="both as a class and as an auxiliary"):
        prepare(data, "covid,normal", aux_classes=["normal"], workers=1, cache_dir=tmp_path / "c")


@pytest.mark.slow
def test_trained_run_reports_classes_and_other_abnormal(blob_writer, blob_folder, tiny_config, tmp_path, monkeypatch):
    import cxrkit
    from cxrkit.evaluation import evaluate
    from cxrkit.evaluation.evaluate import calibrate_run
    from cxrkit.inference.formats import predictions_csv
    from cxrkit.run import read_card
    from cxrkit.training import train

    data = _with_aux(blob_writer, blob_folder, tmp_path / "d")
    result = train(
        tiny_config(
            data, tmp_path / "run", tmp_path / "cache", aux_classes=["bacterial_pneumonia"], epochs=3, augment="robust"
        ),
        progress_bar=False,
    )
    card = read_card(result.run_dir)
    assert card.classes == ["covid", "viral_pneumonia", "normal"]
    assert card.model.extra["aux_classes"] == ["bacterial_pneumonia"] == card.aux_outputs
    assert card.model.extra["aux_train_images"] == {"bacterial_pneumonia": 16}
    predictor = cxrkit.load(result.run_dir, backend="torch", precision="32")
    assert predictor.aux_classes == ["bacterial_pneumonia"] and predictor.other_abnormal_threshold is None
    normals = sorted((data / "normal").glob("*.png"))[:8]
    bacterial = sorted((data / "bacterial_pneumonia").glob("*.png"))[:8]
    probs = predictor.predict_proba([normals[0], bacterial[0]])
    assert probs.shape == (2, 3) and np.allclose(probs.sum(1), 1, atol=1e-5)

    # evaluate's calibration fits the flag's threshold on val and writes it into the card (this
    # val split holds 3 normal films: below the real minimum, lowered here to test the mechanics)
    monkeypatch.setattr(evaluate, "MIN_CALIBRATION_IMAGES", 3)
    fitted = calibrate_run(predictor, workers=1, cache_dir=tmp_path / "cache")
    assert fitted["other_abnormal"]["rule"].startswith("flags 5% of val")
    limit = predictor.other_abnormal_threshold
    assert limit is not None and 0.0 < limit < 1.0
    preds = predictor.predict([*normals, *bacterial])
    other = np.array([r.other_abnormal for r in preds.results])
    assert other[8:].mean() > other[:8].mean()  # the auxiliary images are the "other abnormal" ones
    assert all(r.other_abnormal_flag == (r.other_abnormal >= limit) for r in preds.results)
    text = predictions_csv(preds, predictor.classes)
    assert text.splitlines()[0].endswith("p_normal,p_other_abnormal,other_abnormal_flag,error")
    assert "other_abnormal" in preds.results[0].to_dict()

    # the ONNX export carries the auxiliary outputs too: same other-abnormal answers
    from cxrkit.inference.export import export_onnx

    export_onnx(result.run_dir)
    onnx = cxrkit.load(result.run_dir, backend="onnx")
    other_onnx = np.array([r.other_abnormal for r in onnx.predict([*normals, *bacterial]).results])
    assert np.allclose(other_onnx, other, atol=1e-4)


def test_an_auxiliary_class_the_data_lacks_is_refused(blob_dataset, tiny_config, tmp_path):
    from cxrkit.training.fit import resolve_aux_classes

    # the blob data has no bacterial pneumonia: its output would learn only "never"
    config = tiny_config(blob_dataset, tmp_path / "run", tmp_path / "cache", aux_classes=["bacteria"])
    with pytest.raises(UsageError, match=r"--aux-classes bacteria: the data holds no bacterial_pneumonia film"):
        resolve_aux_classes(config)


@pytest.mark.parametrize(
    "aux, classes, message",
    [
        (["normal"], None, r"--aux-classes normal: normal is one of the classes \(covid, viral_pneumonia, normal\)"),
        (["No Finding"], "covid,normal", r"normal is one of the classes \(covid, normal\).*remove it from --aux"),
        (["none", "bacteria"], None, r"--aux-classes none bacteria: 'none' means no auxiliary class"),
        (["bacteria"], "all", r"--aux-classes bacteria needs an explicit --classes list"),
    ],
)
def test_auxiliary_classes_that_make_no_sense_are_refused(
    blob_writer, blob_folder, tiny_config, tmp_path, aux, classes, message
):
    from cxrkit.training.fit import resolve_aux_classes

    data = _with_aux(blob_writer, blob_folder, tmp_path / "d", per_class=4)
    config = tiny_config(data, tmp_path / "run", tmp_path / "cache", aux_classes=aux, classes=classes)
    with pytest.raises(UsageError, match=message):
        resolve_aux_classes(config)


def test_named_auxiliary_classes_are_checked_and_canonical(blob_writer, blob_folder, tiny_config, tmp_path):
    from cxrkit.training.fit import resolve_aux_classes

    data = _with_aux(blob_writer, blob_folder, tmp_path / "d", per_class=4)
    named = lambda aux: resolve_aux_classes(tiny_config(data, tmp_path / "r", tmp_path / "c", aux_classes=aux))  # noqa: E731
    assert named(["Bacteria", "bacterial_pneumonia"]) == ["bacterial_pneumonia"]
    assert named(["none"]) == [] == named(["None"])


def test_cli_train_refuses_aux_classes_mixed_with_none(blob_writer, blob_folder, tiny_train_argv, tmp_path):
    import subprocess

    data = _with_aux(blob_writer, blob_folder, tmp_path / "d", per_class=4)
    argv = tiny_train_argv(data, tmp_path / "run", tmp_path / "cache", "--aux-classes", "none", "viral_pneumonia")
    res = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "--aux-classes none viral_pneumonia: 'none' means no auxiliary class" in res.stdout + res.stderr
    assert "Traceback" not in res.stdout + res.stderr and not (tmp_path / "run").exists()


@pytest.mark.slow
def test_an_auxiliary_output_a_protocol_leaves_without_films_is_not_saved(
    blob_writer, blob_folder, tiny_config, tmp_path
):
    import cxrkit
    from cxrkit.run import read_card
    from cxrkit.training import train

    # the data holds bacterial pneumonia, but the selection keeps the classes only: its output
    # never sees a film, learns "never" and is left out of the saved model
    data = _with_aux(blob_writer, blob_folder, tmp_path / "d")
    config = tiny_config(
        data,
        tmp_path / "run",
        tmp_path / "cache",
        aux_classes=["bacteria"],
        select=["label=covid,viral_pneumonia,normal"],
        epochs=1,
    )
    card = read_card(train(config, progress_bar=False).run_dir)
    assert card.classes == ["covid", "viral_pneumonia", "normal"]
    assert card.model.extra["aux_train_images"] == {"bacterial_pneumonia": 0}
    assert card.aux_outputs == [] and card.model.extra["aux_outputs_dropped"] == ["bacterial_pneumonia"]
    predictor = cxrkit.load(card_dir := tmp_path / "run", backend="torch", precision="32")
    assert predictor.aux_classes == [] and predictor.other_abnormal_threshold is None
    result = predictor.predict([sorted((data / "normal").glob("*.png"))[0]]).results[0]
    assert result.other_abnormal is None and card_dir.is_dir()
