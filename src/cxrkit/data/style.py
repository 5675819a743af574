"""Style mixing: give each training image the intensity "style" of another image of the batch.

In this dataset the source decides the class more than the lungs do: adult normals are RSNA
films, COVID films come from papers and other hospitals, pediatric films from Guangzhou, and a
12 x 12 block average of the pixels already tells pediatric from adult normals at 0.987 balanced
accuracy (``bench/probe_floor.py``). :class:`~cxrkit.data.acquisition.AcquisitionAugment` puts
*random* traces on every image; style mixing goes one step further and moves the traces of one
source onto films of the other classes, so a normal film can look like a paper's COVID figure
and the other way round. Two forms, both swapping with a random partner in the batch:

- ``fourier``: keep the image's Fourier phase (where the edges are) and mix its amplitude
  spectrum with the partner's, ``(1 - lam) |F(x)| + lam |F(partner)|`` with ``lam ~ U(0, 1)``
  (Xu et al., "A Fourier-based Framework for Domain Generalization", CVPR 2021: amplitude
  carries the low-level statistics of a domain, phase the semantics);
- ``histogram``: exact histogram matching to the partner (rank i of this image takes the
  partner's i-th smallest value), blended by ``lam``: the grey-level distribution of another
  scanner and exposure, with the anatomy untouched.

Each runs on a random share ``p`` of the batch, batched on the device like the other
augmentations.
"""

from __future__ import annotations

import torch
from torch import nn

STYLES = ("fourier", "histogram")


def fourier_mix(x: torch.Tensor, partner: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """x's phase with the amplitude mixed towards partner's by lam (B,) in [0, 1]; (B, C, H, W)."""
    h, w = x.shape[-2:]
    fx, fp = torch.fft.rfft2(x.float()), torch.fft.rfft2(partner.float())
    lam = lam.view(-1, 1, 1, 1).to(fx.real.dtype)
    amplitude = (1 - lam) * fx.abs() + lam * fp.abs()
    out = torch.fft.irfft2(torch.polar(amplitude, fx.angle()), s=(h, w))
    return out.to(x.dtype).clamp(0, 1)


def histogram_match(x: torch.Tensor, partner: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """Each image's grey levels moved by lam (B,) towards partner's histogram; (B, C, H, W)."""
    b = x.shape[0]
    flat = x.reshape(b, -1)
    target = partner.reshape(b, -1).sort(dim=1).values
    matched = torch.empty_like(flat).scatter_(1, flat.argsort(dim=1), target)
    lam = lam.view(-1, 1).to(x.dtype)
    return ((1 - lam) * flat + lam * matched).reshape(x.shape)


class StyleMix(nn.Module):
    """Fourier-amplitude or histogram mixing of random images with random partners of the batch."""

    def __init__(self, style: str = "fourier", p: float = 0.5, strength: float = 1.0):
        super().__init__()
        if style not in STYLES:
            raise ValueError(f"style must be one of {', '.join(STYLES)}, got {style!r}")
        self.style, self.p, self.strength = style, p, strength

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, dev = x.shape[0], x.device
        pick = torch.rand(b, device=dev) < self.p
        if b < 2 or not pick.any():
            return x
        partner = x[torch.randperm(b, device=dev)[pick]]  # a partner may be itself: a no-op for that image
        lam = torch.rand(int(pick.sum()), device=dev) * self.strength
        mix = fourier_mix if self.style == "fourier" else histogram_match
        x = x.clone()
        x[pick] = mix(x[pick], partner, lam)
        return x
