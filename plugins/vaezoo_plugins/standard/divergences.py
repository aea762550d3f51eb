"""Divergences of q(z|x) from the prior: the closed-form Gaussian KL and the one-sample Monte Carlo KL."""

from __future__ import annotations

from torch import Tensor, nn
from torch.distributions import Distribution, kl_divergence

from vaezoo.errors import UsageError
from vaezoo.model.distributions import as_diagonal_gaussian, kl_per_dim
from vaezoo.model.parts import BuildContext


class AnalyticGaussianKL(nn.Module):
    """KL(q || p) in closed form per latent dimension; needs a diagonal Gaussian posterior and prior."""

    part = "gaussian-kl"  # the registered name, for the error message
    needs = frozenset({"gaussian-posterior"})

    def __init__(self, ctx: BuildContext):
        super().__init__()
        if as_diagonal_gaussian(ctx.part("prior")()) is None:
            raise UsageError(f"the {self.part} divergence needs a diagonal Gaussian prior; use monte-carlo-kl")

    def forward(self, q: Distribution, z: Tensor, p: Distribution) -> Tensor:
        return kl_per_dim(q, p)


class AnalyticKL(nn.Module):
    """KL(q || p) in closed form from torch's KL registry, any families it knows (vMF against uniform,
    categoricals, ...); [B]. Refused at the first pass when the registry has no closed form."""

    def __init__(self, ctx: BuildContext):
        super().__init__()

    def forward(self, q: Distribution, z: Tensor, p: Distribution) -> Tensor:
        try:
            return kl_divergence(q, p)
        except NotImplementedError:
            raise UsageError(f"the analytic-kl divergence has no closed form for {type(q).__name__} against "
                             f"{type(p).__name__}; use monte-carlo-kl") from None


class MonteCarloKL(nn.Module):
    """log q(z|x) - log p(z) at the pass's own sample z: unbiased for KL(q || p), any posterior and prior; [B]."""

    exact = False  # an estimate: evaluation says so

    def __init__(self, ctx: BuildContext):
        super().__init__()

    def forward(self, q: Distribution, z: Tensor, p: Distribution) -> Tensor:
        return q.log_prob(z) - p.log_prob(z)
