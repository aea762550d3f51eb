"""The standard normal prior, the analytic Gaussian KL and the Bernoulli-logits likelihood."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vaezoo.distributions import LOG_2PI, DiagonalGaussian
from vaezoo.errors import UsageError
from vaezoo.parts import BuildContext, Prior


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


class AnalyticGaussianKL(nn.Module):
    """KL(q || p) in closed form per latent dimension; needs a prior that is one diagonal Gaussian."""

    part = "gaussian-kl"  # the registered name, for the error message

    def __init__(self, ctx: BuildContext):
        super().__init__()
        prior = ctx.built["prior"]
        if not isinstance(prior, Prior) or prior.gaussian() is None:
            raise UsageError(f"the {self.part} divergence needs a Gaussian prior; use monte-carlo-kl")

    def forward(self, q: DiagonalGaussian, z: Tensor, prior: Prior) -> Tensor:
        return q.kl_per_dim(prior.gaussian())


class BernoulliLikelihood(nn.Module):
    """Pixels in [0, 1] as Bernoulli probabilities given by sigmoid(logits)."""

    def __init__(self, ctx: BuildContext):
        super().__init__()

    def log_prob(self, x: Tensor, logits: Tensor) -> Tensor:
        """-sum over pixels of BCE-with-logits, [S..., B]; x broadcasts over leading sample dims."""
        bce = F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none")
        return -bce.flatten(-3).sum(-1)

    def mean(self, logits: Tensor) -> Tensor:
        return torch.sigmoid(logits)
