"""Issue 29 classes 3 and 5, issue 37 items 6, 7, 11a and 11d: broken run files are one line naming the
file; messages blame the right thing; evaluate reads several roots as train does."""

from __future__ import annotations

import json
import shutil
import socket

import numpy as np
import pytest
from PIL import Image

from cxrkit.cli.main import main
from cxrkit.data.images import ImageReadError, read_image

pytestmark = pytest.mark.timeout(600)


def _error(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    assert "Traceback" not in err and "unexpected" not in err and "this is a bug" not in err, err
    return " ".join(err.split())


@pytest.mark.parametrize(
    "config, mention",
    [
        ("", "is empty"),
        ("   \n# nothing\n", "is empty"),
        ("epochs: 3\n", "has no data, out"),
        ("- a\n- b\n", "must be a mapping"),
        ("data: d\nout: o\nepochs: abc\n", "epochs must be int"),
        ("data: d\nout: o\nfractions: 3\n", "fractions must be"),
        (b"\xff\xfe\x00", "not UTF-8"),
    ],
    ids=["empty", "comment-only", "incomplete", "list", "mistyped", "fractions", "binary"],
)
def test_resume_with_a_broken_config_yaml_is_one_line_naming_it(tiny_run, tmp_path, capsys, config, mention):
    run = shutil.copytree(tiny_run.run_dir, tmp_path / "run")
    cfg = run / "config.yaml"
    cfg.write_bytes(config if isinstance(config, bytes) else config.encode())
    err = _error(["train", "--resume", run], capsys)
    assert str(cfg) in err and mention in err, err


def test_yaml_floats_without_a_dot_are_read_as_numbers(tmp_path):
    from cxrkit.training.config import read_config_file

    (tmp_path / "c.yaml").write_text("data: d\nout: o\nlr: 1e-3\n")
    from cxrkit.training.config import resolve_config

    assert resolve_config(read_config_file(tmp_path / "c.yaml")).lr == 1e-3


def test_random_bytes_as_weights_are_not_called_pickled_objects(tmp_path, blob_dataset, capsys):
    weights = tmp_path / "w.pt"
    weights.write_bytes(np.random.default_rng(0).integers(0, 256, 1000, dtype=np.uint8).tobytes())
    err = _error(["train", "--data", blob_dataset, "--out", tmp_path / "run", "--weights", weights], capsys)
    assert "w.pt: not a PyTorch checkpoint" in err and "pickled" not in err, err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "section, values, mention",
    [
        ("calibration", {"temperature": 1e-300}, "calibration.temperature"),
        ("calibration", {"temperature": 1e300}, "calibration.temperature"),
        ("preprocessing", {"std": 1e-300}, "mean/std"),
        ("preprocessing", {"mean": 1e300}, "mean/std"),
    ],
    ids=["tiny-temperature", "huge-temperature", "tiny-std", "huge-mean"],
)
def test_cards_with_absurd_scales_are_refused_at_load_naming_the_field(
    tiny_run, tmp_path, capsys, section, values, mention
):
    run = shutil.copytree(tiny_run.run_dir, tmp_path / "run")
    card = json.loads((run / "model_card.json").read_text())
    card[section] = {**(card.get(section) or {}), **values}
    (run / "model_card.json").write_text(json.dumps(card))
    image = tmp_path / "x.png"
    Image.fromarray(np.full((64, 64), 128, np.uint8)).save(image)
    err = _error(["predict", run, image], capsys)
    assert "model_card.json" in err and mention in err and "non-finite" not in err, err


def test_explain_on_a_folder_without_images_says_so(tiny_run, tmp_path, capsys):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.txt").write_text("x")
    (folder / "b.csv").write_text("y")
    err = _error(["explain", tiny_run.run_dir, folder, "--out", tmp_path / "out"], capsys)
    assert f"no image files in {folder} (2 other file(s) ignored)" in err and ".png" in err, err
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.png").write_bytes(b"not a png")
    err = _error(["explain", tiny_run.run_dir, bad, "--out", tmp_path / "out2"], capsys)
    assert "all 1 file(s) failed" in err, err


def test_float_pixel_data_dicom_is_named(make_dicom):
    arr = np.random.default_rng(0).random((32, 32), dtype=np.float32)
    path = make_dicom("f.dcm", None, Rows=32, Columns=32, FloatPixelData=arr.tobytes())
    with pytest.raises(ImageReadError, match=r"FloatPixelData \(7FE0,0008\).*integer Pixel Data"):
        read_image(path)


def test_serve_on_a_busy_port_is_one_line_before_serving(tiny_run, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(SystemExit) as exc:
            main(["serve", str(tiny_run.run_dir), "--port", str(port)])
        captured = capsys.readouterr()
    assert exc.value.code == 2
    err = " ".join(captured.err.split())
    assert f"cannot listen on 127.0.0.1:{port}" in err and "--port" in err, err
    assert "serving" not in captured.out, "nothing may claim to serve before the port is bound"


def _killed(tiny_run, dest):
    """A run killed after a checkpoint, before it wrote its model and card."""
    run = shutil.copytree(tiny_run.run_dir, dest)
    (run / "model_card.json").unlink()
    (run / "model.safetensors").unlink()
    return run


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_an_unfinished_run_is_not_called_not_a_run_directory(tiny_run, tmp_path, capsys, command):
    run = _killed(tiny_run, tmp_path / "run")
    image = tmp_path / "x.png"
    Image.fromarray(np.full((64, 64), 128, np.uint8)).save(image)
    argv = ["predict", run, image] if command == "predict" else ["evaluate", run, "--resamples", "5"]
    err = _error(argv, capsys)
    assert f"{run}: an unfinished run" in err and f"`cxr train --resume {run}`" in err, err
    assert "not a run directory" not in err
    shutil.rmtree(run / "checkpoints")  # stopped before its first checkpoint: nothing to resume
    err = _error(argv, capsys)
    assert "before its first checkpoint" in err and "nothing to resume" in err, err


def test_ensemble_members_that_disagree_about_auxiliary_outputs_are_named(tiny_run, tmp_path, capsys):
    plain = shutil.copytree(tiny_run.run_dir, tmp_path / "plain")
    aux = shutil.copytree(tiny_run.run_dir, tmp_path / "aux")
    card = json.loads((aux / "model_card.json").read_text())
    card["model"]["aux_outputs"] = ["bacterial_pneumonia"]
    (aux / "model_card.json").write_text(json.dumps(card))
    err = _error(["ensemble", "create", plain, aux, "--out", tmp_path / "ens"], capsys)
    assert "disagree about auxiliary outputs" in err and str(aux) in err and str(plain) in err, err
    assert "bacterial_pneumonia" in err and "none" in err and "not a run directory" not in err
    assert not (tmp_path / "ens").exists()


def test_evaluate_takes_several_data_roots_as_train_does(tiny_run, blob_dataset, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for root, classes in ((a, ("covid", "viral_pneumonia")), (b, ("normal",))):
        for c in classes:
            shutil.copytree(blob_dataset / c, root / c)
    run = shutil.copytree(tiny_run.run_dir, tmp_path / "run")
    out = tmp_path / "ev"
    argv = ["evaluate", run, "--data", a, b, "--workers", "1", "--resamples", "5", "--out", out]
    assert main([str(x) for x in argv]) in (0, None)
    ev = json.loads((out / "metrics.json").read_text())
    assert ev["data"]["path"] == [str(a), str(b)] and ev["data"]["external"] is True


def _animated_png(path, first: np.ndarray, second: np.ndarray):
    frames = [Image.fromarray(first), Image.fromarray(second)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)
    return path


def test_an_animated_png_is_refused_naming_the_file_not_predicted_from_its_black_first_frame(
    tiny_run, tmp_path, capsys, synth_array
):
    path = _animated_png(tmp_path / "anim.png", np.zeros((64, 64), np.uint8), synth_array(1))
    with Image.open(path) as img:
        assert img.n_frames == 2  # really animated
    with pytest.raises(ImageReadError, match="2 frames"):
        read_image(path)
    with pytest.raises(SystemExit) as exc:  # predict reports a failed input and exits 1 (its --help)
        main(["predict", str(tiny_run.run_dir), str(path)])
    captured = capsys.readouterr()
    said = " ".join((captured.out + captured.err).split())
    assert exc.value.code == 1 and "anim.png" in said and "2 frames" in said and "Traceback" not in said, said


def test_the_service_refuses_an_animated_png_it_would_reduce(tmp_path, synth_array):
    from cxrkit.serve.images import decode_upload
    from cxrkit.serve.limits import Limits
    from cxrkit.serve.responses import HttpError

    path = _animated_png(tmp_path / "anim.png", np.zeros((128, 128), np.uint8), synth_array(1, (128, 128)))
    with pytest.raises(HttpError, match="2 frames") as exc:
        decode_upload(None, path.read_bytes(), "anim.png", Limits(work_side=64))
    assert exc.value.status == 422
