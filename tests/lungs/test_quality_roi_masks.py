"""Quality flag, ROI box and crop, and the mask checks (fast: no model)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cxrkit.cli.main import main
from cxrkit.lungs import MaskError, crop_to_roi, lung_roi_box, mask_pairs, quality, read_mask, scale_box
from cxrkit.lungs.quality import fraction_range

from .conftest import two_lobe, write_pairs


def _lobes(shape=(100, 100), boxes=((20, 80, 15, 45), (20, 80, 55, 85))) -> np.ndarray:
    mask = np.zeros(shape, bool)
    for y0, y1, x0, x1 in boxes:
        mask[y0:y1, x0:x1] = True
    return mask


def test_quality_accepts_two_lungs_and_names_each_failure():
    assert quality(_lobes()) == (True, "ok")
    assert quality(np.zeros((100, 100), bool))[1].startswith("no lung")
    assert quality(_lobes(boxes=((20, 80, 15, 45),)))[1].startswith("one lung")
    one_side = _lobes(boxes=((20, 80, 5, 20), (20, 80, 25, 45)))
    assert quality(one_side) == (False, "one lung (both large components on one side)")
    ok, reason = quality(_lobes(boxes=((0, 100, 0, 48), (0, 100, 52, 100))))  # 96% of the film
    assert not ok and "outside" in reason
    ok, reason = quality(_lobes(), fraction_range=(0.5, 0.7))  # 36%, below this training range
    assert not ok and "0.360 outside [0.500, 0.700]" in reason


def test_fraction_range_covers_training_masks():
    fracs = np.linspace(0.2, 0.56, 50)
    lo, hi = fraction_range(fracs)
    assert lo < 0.2 and hi > 0.56 and lo >= 0.02


def test_roi_box_margin_clip_and_fallback():
    mask = _lobes()  # rows 20-79, cols 15-84
    assert lung_roi_box(mask, margin=0.0) == (15, 20, 85, 80)
    assert lung_roi_box(mask, margin=0.1) == (8, 14, 92, 86)  # 10% of 70 wide, 60 high
    x0, y0, x1, y1 = lung_roi_box(_lobes(boxes=((0, 60, 0, 40), (0, 60, 60, 100))), margin=0.2)
    assert (x0, y0) == (0, 0) and x1 == 100 and y1 == 72  # clipped at the film's edges
    assert lung_roi_box(np.zeros((50, 50), bool)) is None
    image = np.arange(100 * 100, dtype=np.uint16).reshape(100, 100)
    assert crop_to_roi(image, None) is image  # fallback: the whole image
    crop = crop_to_roi(image, (15, 20, 85, 80))
    assert crop.shape == (60, 70) and crop[0, 0] == image[20, 15]
    blanked = crop_to_roi(image, None, mask=mask, blank_outside=True)
    assert (blanked[~mask] == 0).all() and (blanked[mask] == image[mask]).all()
    assert scale_box((15, 20, 85, 80), (100, 100), (200, 300)) == (45, 40, 255, 160)


@pytest.mark.parametrize(
    "bad, match",
    [
        ("wrong_size", "mask is 40x50 px but its image is 48x48"),
        ("empty", "mask is empty"),
        ("not_binary", "mask is not binary"),
    ],
)
def test_bad_masks_name_the_file(tmp_path, bad, match):
    img, mask = two_lobe(0, (48, 48))
    Image.fromarray(img).save(tmp_path / "img.png")
    arr = {
        "wrong_size": np.zeros((50, 40), np.uint8) + 255 * np.eye(50, 40, dtype=np.uint8),
        "empty": np.zeros((48, 48), np.uint8),
        "not_binary": (mask * 200 + 20).astype(np.uint8),
    }[bad]
    path = tmp_path / f"{bad}.png"
    Image.fromarray(arr).save(path)
    with pytest.raises(MaskError, match=match) as err:
        read_mask(path, (48, 48))
    assert str(path) in str(err.value)


def test_cli_train_stops_on_a_bad_mask_with_one_line(tmp_path, capsys):
    manifest = write_pairs(tmp_path / "d", 6, (32, 32))
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "d" / "mask3.png")
    with pytest.raises(SystemExit) as exit_:
        main(["lungs", "train", "--data", str(manifest), "--out", str(tmp_path / "run"), "--input-size", "64"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "mask3.png" in err and "empty" in err


def test_mask_pairs_from_kaggle_folders_and_missing_files(tmp_path):
    for cls in ("covid", "normal"):
        for sub in ("images", "masks"):
            (tmp_path / "k" / cls / sub).mkdir(parents=True)
        img, mask = two_lobe(1, (32, 32))
        Image.fromarray(img).save(tmp_path / "k" / cls / "images" / f"{cls}-1.png")
        Image.fromarray(mask.astype(np.uint8) * 255).save(tmp_path / "k" / cls / "masks" / f"{cls}-1.png")
    pairs = mask_pairs(tmp_path / "k")
    assert sorted(p.mask.parent.name for p in pairs) == ["masks", "masks"]
    (tmp_path / "m.csv").write_text("file,mask\nnowhere.png,nomask.png\n")
    with pytest.raises(MaskError, match="nowhere.png not found"):
        mask_pairs(tmp_path / "m.csv", images_root=tmp_path)


def test_learning_rate_warms_up_and_anneals_by_steps_or_time():
    from cxrkit.lungs.train import learning_rate

    assert learning_rate(1.0, 0, 0.0) < learning_rate(1.0, 29, 0.0) == 1.0
    assert learning_rate(1.0, 100, 0.5) == pytest.approx(0.5)
    assert learning_rate(1.0, 100, 1.0) == pytest.approx(0.0) == learning_rate(1.0, 100, 3.0)


def test_cli_train_keeps_size_as_a_deprecated_alias_of_input_size(tmp_path, capsys):
    manifest = write_pairs(tmp_path / "d", 6, (32, 32))
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "d" / "mask3.png")  # stops before training
    for flags in (["--size", "64"], ["--size", "64", "--input-size", "64"]):
        with pytest.raises(SystemExit):
            main(["lungs", "train", "--data", str(manifest), "--out", str(tmp_path / "run"), *flags])
        assert "--size is deprecated" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(
            [
                "lungs",
                "train",
                "--data",
                str(manifest),
                "--out",
                str(tmp_path / "r"),
                "--size",
                "64",
                "--input-size",
                "96",
            ]
        )
    assert exit_.value.code == 2 and "disagree" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["lungs", "train", "--data", str(manifest), "--out", str(tmp_path / "r"), "--input-size", "70"])
    assert exit_.value.code == 2 and "--input-size 70" in capsys.readouterr().err
