"""The standard normal prior N(0, I)."""

from __future__ import annotations

import torch
from torch import Tensor

from vaezoo.model.distributions import LOG_2PI, DiagonalGaussian
from vaezoo.model.parts import BuildContext, Prior


class StandardNormalPrior(Prior):
    """p(z) = N(0, I)."""

    def __init__(self, ctx: BuildContext):
        super().__init__()
        self.latent_dim = ctx.latent_dim
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)  # follows .to(device)

    def log_prob(self, z: Tensor) -> Tensor:
        return -0.5 * (z**2 + LOG_2PI).sum(-1)

    def sample(self, n: int) -> Tensor:
        return torch.randn(n, self.latent_dim, device=self._anchor.device, dtype=self._anchor.dtype)

    def gaussian(self) -> DiagonalGaussian:
        zeros = self._anchor.new_zeros(self.latent_dim)
        return DiagonalGaussian(zeros, zeros)
