"""keep_outputs: the kept logits are exactly the trained model's first n."""

import pytest
import torch

from cxrkit.errors import UsageError
from cxrkit.models import build_classifier, keep_outputs


@pytest.mark.parametrize("name", ["resdense_tiny", "tf_efficientnet_lite0"])
def test_kept_logits_are_the_first_n(name):
    torch.manual_seed(0)
    model, _ = build_classifier(name, 4, pretrained=False)
    model.eval()
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        full = model(x)
        keep_outputs(model, 3)
        kept = model(x)
    assert kept.shape == (2, 3)
    assert torch.allclose(kept, full[:, :3], atol=1e-5)
    # its softmax is the full softmax renormalised over the kept classes
    p = full.softmax(1)[:, :3]
    assert torch.allclose(kept.softmax(1), p / p.sum(1, keepdim=True), atol=1e-5)
    with pytest.raises(UsageError, match="cannot keep"):
        keep_outputs(model, 5)
