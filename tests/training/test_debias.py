"""De-confounding: group codes, group-balanced sampling, the adversarial head's reversed gradient."""

import csv

import numpy as np
import pytest
import torch

from cxrkit.data import load_dataset
from cxrkit.data.groups import balanced_weights, group_codes, group_value, joint_group_codes
from cxrkit.errors import UsageError


def test_group_values_drop_detail_that_is_not_a_group():
    assert group_value("population", "adult (RSNA via RadDB, assumed)") == "adult"
    assert group_value("population", "unknown") == ""
    assert group_value("subsource", "ieee8023:COVID-19") == "ieee8023"
    assert group_value("subsource", "RadDB-Normal") == "RadDB"
    assert group_value("view", "AP Supine") == group_value("view", "ap") == "AP"
    assert [group_value("age", a) for a in ("4", "17.9", "18", "45", "77", "", "n/a")] == [
        "0-17", "0-17", "18-39", "40-59", "60+", "", ""
    ]  # fmt: skip


def test_joint_codes_balance_population_and_view_together(blob_dataset, tmp_path):
    ds = load_dataset(_manifest(blob_dataset, tmp_path), allow_outside_paths=True)
    for i, r in enumerate(ds.records):
        r.metadata["view"] = ("AP", "PA", "")[i % 3 if i % 2 else 2]
    joint = joint_group_codes(ds, ["population", "view"])
    pop = group_codes(ds, "population")[0]
    view = group_codes(ds, "view")[0]
    pairs = {(p, v): j for p, v, j in zip(pop, view, joint)}
    assert len(set(pairs.values())) == len(pairs)  # one code per (population, view) combination
    assert all(j == -1 for (p, v), j in pairs.items() if p == -1 and v == -1)
    w = balanced_weights(ds.labels, joint)
    for c in np.unique(ds.labels):
        assert w[ds.labels == c].sum() == pytest.approx(1.0)


def _manifest(blob_dataset, tmp_path):
    rows = []
    for i, path in enumerate(sorted(blob_dataset.rglob("*.png"))):
        pop = "pediatric" if i % 3 == 0 else ("adult (assumed)" if i % 3 == 1 else "unknown")
        rows.append({"file": str(path), "label": path.parent.name, "population": pop, "subsource": f"src{i % 2}:x"})
    out = tmp_path / "manifest.csv"
    with out.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return out


def test_group_codes_and_balanced_weights(blob_dataset, tmp_path):
    ds = load_dataset(_manifest(blob_dataset, tmp_path), allow_outside_paths=True)
    codes, values = group_codes(ds, "population")
    assert values == ["adult", "pediatric"] and set(codes.tolist()) == {-1, 0, 1}
    w = balanced_weights(ds.labels, codes)
    for c in np.unique(ds.labels):
        assert w[ds.labels == c].sum() == pytest.approx(1.0)  # every class drawn equally often
        for g in np.unique(codes[ds.labels == c]):  # and every group within it
            cell = (ds.labels == c) & (codes == g)
            assert w[cell].sum() == pytest.approx(1.0 / len(np.unique(codes[ds.labels == c])))
    with pytest.raises(UsageError, match="no such metadata column"):
        group_codes(load_dataset(blob_dataset), "population")


def test_adversary_gradient_is_reversed_for_the_features():
    from cxrkit.models import build_classifier
    from cxrkit.training.module import CxrClassifier

    torch.manual_seed(0)
    model, _ = build_classifier("resdense_tiny", 3, pretrained=False)
    pre = {"input_size": 32, "mean": 0.5, "std": 0.5, "contrast": "none"}
    module = CxrClassifier(model, ["a", "b", "c"], pre, debias={"population": 2}, debias_weight=1.0, augment="none")
    x, y, g = torch.rand(4, 1, 32, 32), torch.tensor([0, 1, 2, 0]), torch.tensor([[0], [1], [0], [-1]])
    pooled = module.model.forward_head(module.model.forward_features(x), pre_logits=True).detach().requires_grad_()
    from cxrkit.training.module import _GradReverse

    z = torch.cat([_GradReverse.apply(pooled, 1.0), torch.nn.functional.one_hot(y, 3).float()], 1)
    loss = torch.nn.functional.cross_entropy(module.adversaries["population"](z), g[:, 0], ignore_index=-1)
    loss.backward()
    reversed_grad = pooled.grad.clone()
    pooled.grad = None
    z = torch.cat([pooled, torch.nn.functional.one_hot(y, 3).float()], 1)
    torch.nn.functional.cross_entropy(module.adversaries["population"](z), g[:, 0], ignore_index=-1).backward()
    assert torch.allclose(reversed_grad, -pooled.grad)


@pytest.mark.slow
def test_debiased_group_balanced_training_runs(blob_dataset, tiny_config, tmp_path):
    from cxrkit.run import read_card
    from cxrkit.training import train

    config = tiny_config(
        _manifest(blob_dataset, tmp_path),
        tmp_path / "run",
        tmp_path / "cache",
        debias=["population", "subsource"],
        balance="group",
        allow_outside_paths=True,
        epochs=2,
    )
    result = train(config, progress_bar=False)
    card = read_card(result.run_dir)
    assert card.classes == ["covid", "viral_pneumonia", "normal"]
    logged = (result.run_dir / "logs" / "version_0" / "metrics.csv").read_text()
    assert "train/adversary_population_acc" in logged and "train/adversary_subsource_acc" in logged
