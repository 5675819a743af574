"""`cxr train`'s flags are generated from TrainConfig: every field settable, file < flags."""

from __future__ import annotations

import dataclasses

import pytest

from cxrkit.cli.main import build_parser
from cxrkit.cli.train import config_from_args
from cxrkit.errors import UsageError
from cxrkit.training.config import PRESET_DIR, TrainConfig, read_config_file


def _config(argv):
    return config_from_args(build_parser().parse_args(["train", *argv]))


def test_every_field_has_help_and_a_flag():
    parser = build_parser()
    train = parser._subparsers._group_actions[0].choices["train"]
    dests = {a.dest for a in train._actions}
    for f in dataclasses.fields(TrainConfig):
        assert f.metadata.get("help"), f"TrainConfig.{f.name} has no help text"
        assert f.name in dests, f"TrainConfig.{f.name} cannot be set from `cxr train`"


def test_flags_reach_the_config():
    cfg = _config(
        [
            "--data",
            "d",
            "--out",
            "o",
            "--dup-threshold",
            "-1",
            "--no-channels-last",
            "--pretrained",
            "none",
            "--fractions",
            "0.6,0.2,0.2",
            "--devices",
            "2",
            "--augment",
            "none",
            "--cache-features",
            "--finetune",
            "head",
            "--input-size",
            "96",
        ]
    )
    assert (cfg.dup_threshold, cfg.channels_last, cfg.pretrained, cfg.augment, cfg.cache_features) == (
        -1,
        False,
        False,
        "none",
        True,
    )
    assert cfg.fractions == (0.6, 0.2, 0.2) and cfg.devices == 2 and cfg.input_size == 96


def test_unset_flags_keep_the_dataclass_defaults():
    assert _config(["--data", "d", "--out", "o"]) == TrainConfig(data="d", out="o")


def test_config_file_then_flags_win(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("model: resdense_tiny\nepochs: 3\nlr: 0.01\ndata: from_file\nout: o\n")
    cfg = _config(["--config", str(f), "--epochs", "7"])
    assert (cfg.model, cfg.epochs, cfg.lr, cfg.data) == ("resdense_tiny", 7, 0.01, "from_file")


def test_presets_load_and_default_preset_is_the_default():
    assert {p.stem for p in PRESET_DIR.glob("*.yaml")} >= {"default", "fast"}
    for preset in PRESET_DIR.glob("*.yaml"):
        TrainConfig.from_dict({**read_config_file(preset.stem), "data": "d", "out": "o"})
    assert TrainConfig.from_dict({**read_config_file("default"), "data": "d", "out": "o"}) == TrainConfig("d", "o")


@pytest.mark.parametrize("text, needle", [("epochz: 3\n", "epochz"), ("- 1\n- 2\n", "mapping"), ("a: [\n", "YAML")])
def test_bad_config_files_name_the_file(tmp_path, text, needle):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(UsageError, match=needle) as err:
        _config(["--config", str(f), "--data", "d", "--out", "o"])
    assert "bad.yaml" in str(err.value)


def test_missing_data_is_a_usage_error():
    with pytest.raises(UsageError, match="--data"):
        _config(["--out", "o"])


def test_resume_refuses_recipe_changes(tmp_path):
    (tmp_path / "config.yaml").write_text(TrainConfig(data="d", out=str(tmp_path)).to_yaml())
    assert _config(["--resume", str(tmp_path), "--max-minutes", "5"]).max_minutes == 5
    with pytest.raises(Exception, match="--lr"):
        _config(["--resume", str(tmp_path), "--lr", "0.1"])


def test_the_original_setting_presets_share_one_composition_and_split():
    """Rows of the ladder's rung (a) compare recipes on one test split only if every
    seed-replication preset selects the same films and splits them the same way."""
    keys = ("classes", "select", "split_by", "seed", "fractions")
    presets = sorted(p.stem for p in PRESET_DIR.glob("seed-replication*.yaml"))
    assert len(presets) >= 3, presets
    first = read_config_file(presets[0])
    for name in presets[1:]:
        values = read_config_file(name)
        assert {k: values.get(k) for k in keys} == {k: first.get(k) for k in keys}, name
    assert first["split_by"] == "image" and "label=covid n=219" in first["select"]
