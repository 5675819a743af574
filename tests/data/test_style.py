"""Style mixing: the partner's amplitude spectrum or histogram arrives, the anatomy stays."""

import pytest
import torch

from cxrkit.data.acquisition import AcquisitionAugment, make_augment
from cxrkit.data.style import StyleMix, fourier_mix, histogram_match


def _films(b=2, size=48, seed=0):
    """Smooth mid-grey films with two dark lobes at different places (so clamping rarely bites)."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    out = []
    for i in range(b):
        cx = 0.2 + 0.3 * i
        lobes = (((xx + cx) / 0.3) ** 2 + (yy / 0.6) ** 2 < 1) | (((xx - cx) / 0.3) ** 2 + (yy / 0.6) ** 2 < 1)
        out.append(0.6 - 0.25 * lobes.float() + 0.03 * torch.rand(size, size, generator=g))
    return torch.stack(out)[:, None]


def test_fourier_mix_moves_amplitude_and_keeps_phase():
    x, partner = _films(2)[:1], 0.8 * _films(2, seed=1)[1:]
    assert torch.allclose(fourier_mix(x, partner, torch.zeros(1)), x, atol=1e-5)
    out = fourier_mix(x, partner, torch.ones(1))
    amp = torch.fft.rfft2(out).abs()
    to_partner = (amp - torch.fft.rfft2(partner).abs()).abs().mean()
    to_self = (amp - torch.fft.rfft2(x).abs()).abs().mean()
    assert to_partner < 0.2 * to_self

    # the edges stay where x had them: out correlates with x, not with the partner
    def corr(a, b):
        return torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1]

    assert corr(out, x) > 0.4 > corr(out, partner)


def test_histogram_match_takes_the_partners_values_in_this_images_order():
    x, partner = _films(1), torch.rand(1, 1, 48, 48) ** 2
    out = histogram_match(x, partner, torch.ones(1))
    # read in x's brightness order, out is the partner's values from darkest to brightest
    assert torch.equal(out.flatten()[x.flatten().argsort()], partner.flatten().sort().values)
    half = histogram_match(x, partner, torch.full((1,), 0.5))
    assert torch.allclose(half, 0.5 * (x + out), atol=1e-6)


@pytest.mark.parametrize("style", ["fourier", "histogram"])
def test_style_mix_changes_the_chosen_share_and_stays_in_range(style):
    x = _films(16)
    torch.manual_seed(0)
    assert torch.equal(StyleMix(style, p=0.0)(x), x)
    y = StyleMix(style, p=1.0)(x)
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
    changed = (y - x).abs().flatten(1).amax(1) > 1e-4
    assert changed.sum() >= 10  # all chosen; a few drew themselves as partner or lam ~ 0
    assert torch.equal(StyleMix(style)(x[:1]), x[:1])  # one image has no partner
    with pytest.raises(ValueError, match="style must be one of"):
        StyleMix("cartoon")


@pytest.mark.parametrize("name,style", [("robust-fourier", "fourier"), ("robust-histogram", "histogram")])
def test_robust_style_recipes_put_the_mix_between_geometry_and_traces(name, style):
    aug = make_augment(name)
    assert isinstance(aug[1], StyleMix) and aug[1].style == style
    assert isinstance(aug[2], AcquisitionAugment)
    assert len(make_augment("robust")) == 2
