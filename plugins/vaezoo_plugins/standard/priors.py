"""The standard normal prior N(0, I)."""

from __future__ import annotations

import torch
from torch import nn

from vaezoo.model.distributions import DiagonalGaussian
from vaezoo.model.parts import BuildContext


class StandardNormalPrior(nn.Module):
    """p(z) = N(0, I) over the latent dimensions; broadcasts against any batch of posteriors."""

    def __init__(self, ctx: BuildContext):
        super().__init__()
        self.latent_dim = ctx.latent_dim
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)  # follows .to(device)

    def forward(self) -> DiagonalGaussian:
        zeros = self._anchor.new_zeros(self.latent_dim)
        return DiagonalGaussian(zeros, zeros)
