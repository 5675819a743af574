"""The residual-dense net builds through timm's registry and behaves like a timm classifier."""

import pytest
import timm
import torch

import cxrkit.models  # noqa: F401  (registers resdense_*)
from cxrkit.models.resdense import ResDense, ResDenseStage

PARAM_RANGES = {
    "resdense_tiny": (0.2e6, 0.45e6),
    "resdense_small": (0.7e6, 1.5e6),
    "resdense_base": (3.0e6, 5.0e6),
}


REGISTERED = timm.list_models("resdense_*")


def test_every_registered_variant_has_a_documented_size():
    assert REGISTERED and set(REGISTERED) == set(PARAM_RANGES)


@pytest.mark.parametrize("name", REGISTERED)  # timm style: over the registry, not a hand list
def test_variant_builds_by_timm_name_and_trains(name):
    model = timm.create_model(name, num_classes=3, in_chans=1)
    low, high = PARAM_RANGES[name]
    assert low < sum(p.numel() for p in model.parameters()) < high

    x = torch.randn(2, 1, 64, 64)
    logits = model(x)
    assert logits.shape == (2, 3)
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 2])).backward()
    assert all(p.grad is not None and p.grad.isfinite().all() for p in model.parameters())


def test_timm_interface():
    model = timm.create_model("resdense_tiny", num_classes=3, drop_rate=0.3).eval()
    assert model.in_chans == 1  # grayscale is the default for this net
    x = torch.randn(2, 1, 64, 64)

    features = model.forward_features(x)
    assert features.shape == (2, model.num_features, 2, 2)  # stride 32
    assert model.forward_head(features, pre_logits=True).shape == (2, model.num_features)
    assert torch.equal(model.forward_head(features), model(x))
    assert model.head.drop.p == 0.3

    cfg = model.pretrained_cfg
    assert cfg["mean"] == (0.5,) and cfg["std"] == (0.5,) and cfg["input_size"] == (1, 224, 224)
    assert model.get_submodule(cfg["first_conv"]).in_channels == 1
    assert model.get_submodule(cfg["classifier"]) is model.get_classifier()

    model.reset_classifier(5)
    assert model.num_classes == 5 and model.get_classifier().out_features == 5
    assert model(x).shape == (2, 5)


def test_last_stage_is_the_final_feature_map_for_grad_cam():
    model = timm.create_model("resdense_tiny", in_chans=3).eval()
    assert isinstance(model.stages[-1], ResDenseStage)
    captured = []
    model.stages[-1].register_forward_hook(lambda module, args, out: captured.append(out))
    features = model.forward_features(torch.randn(1, 3, 64, 64))
    assert captured[0] is features


def test_features_only_gives_every_stage():
    model = timm.create_model("resdense_tiny", features_only=True)
    maps = model(torch.randn(1, 1, 64, 64))
    assert [m.shape[-1] for m in maps] == [16, 16, 8, 4, 2]
    assert [m.shape[1] for m in maps] == model.feature_info.channels()


def test_stage_is_dense_inside_and_residual_around():
    stage = ResDenseStage(8, 8, depth=3, growth=4, stride=1, act_layer=torch.nn.ReLU).eval()
    seen = {}  # module -> (input, output) of its last call
    for module in (*stage.units, stage.transition):
        module.register_forward_hook(lambda m, args, out: seen.__setitem__(m, (args[0], out)))
    x = torch.randn(2, 8, 6, 6)

    # A fresh stage is the activation of its shortcut: the dense branch starts silent.
    assert torch.equal(stage(x), torch.relu(x))

    torch.nn.init.ones_(stage.transition.bn.weight)
    out = stage(x)
    outputs = [seen[unit][1] for unit in stage.units]
    for k, unit in enumerate(stage.units):  # unit k sees the input and all k earlier outputs
        assert torch.equal(seen[unit][0], torch.cat([x, *outputs[:k]], dim=1))
    concat, projected = seen[stage.transition]
    assert torch.equal(concat, torch.cat([x, *outputs], dim=1))
    assert torch.equal(out, torch.relu(projected + x))


def test_channels_last_gives_the_same_logits():
    model = timm.create_model("resdense_tiny").eval()
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        expected = model(x)
        model = model.to(memory_format=torch.channels_last)
        got = model(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_stage_lists_of_different_lengths_are_rejected():
    with pytest.raises(ValueError, match="one entry per stage"):
        ResDense(depths=(1, 1), widths=(8, 16), growth_rates=(4, 4, 4), stem_width=8)
