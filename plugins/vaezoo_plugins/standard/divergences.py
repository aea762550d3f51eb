"""Divergences of q(z|x) from the prior: the closed-form Gaussian KL and the one-sample Monte Carlo KL."""

from __future__ import annotations

from torch import Tensor, nn

from vaezoo.errors import UsageError
from vaezoo.model.distributions import DiagonalGaussian
from vaezoo.model.parts import BuildContext, Prior


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


class MonteCarloKL(nn.Module):
    """log q(z|x) - log p(z) at the pass's own sample z: unbiased for KL(q || p), any prior; [B]."""

    def __init__(self, ctx: BuildContext):
        super().__init__()

    def forward(self, q: DiagonalGaussian, z: Tensor, prior: Prior) -> Tensor:
        return q.log_prob(z) - prior.log_prob(z)
