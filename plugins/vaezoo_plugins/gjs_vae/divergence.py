"""The skew geometric Jensen-Shannon divergence of Deasy et al. 2020, closed form for diagonal Gaussians.

With q = q(z|x), p the prior and G_a the normalised geometric mean q^a p^(1-a) (a Gaussian; the
skew sits in G, which is what makes the ends KLs rather than zero):
    JS-G-a(q || p)  = (1 - a) KL(q || G_a) + a KL(p || G_a)     a -> 0: KL(q || p), a -> 1: KL(p || q)
    dual            = (1 - a) KL(G_a || q) + a KL(G_a || p)     a -> 0: KL(p || q), a -> 1: KL(q || p)
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Distribution

from vaezoo.model.distributions import DiagonalGaussian, as_diagonal_gaussian
from vaezoo.model.parts import BuildContext
from vaezoo_plugins.standard.divergences import AnalyticGaussianKL


def geometric_mean(q: DiagonalGaussian, p: DiagonalGaussian, alpha: float) -> DiagonalGaussian:
    """G_a proportional to q^a p^(1 - a): precisions and precision-weighted means interpolate."""
    precision_q, precision_p = torch.exp(-q.logvar), torch.exp(-p.logvar)
    precision = alpha * precision_q + (1 - alpha) * precision_p
    mu = (alpha * precision_q * q.mu + (1 - alpha) * precision_p * p.mu) / precision
    return DiagonalGaussian(mu, -torch.log(precision))


def skew_geometric_js(q: DiagonalGaussian, p: DiagonalGaussian, alpha: float, dual: bool = False) -> Tensor:
    """JS-G-alpha(q || p), or its dual, per dimension (broadcasting like kl_per_dim)."""
    g = geometric_mean(q, p, alpha)
    if dual:
        return (1 - alpha) * g.kl_per_dim(q) + alpha * g.kl_per_dim(p)
    return (1 - alpha) * q.kl_per_dim(g) + alpha * p.kl_per_dim(g)


class GeometricJS(AnalyticGaussianKL):
    """The divergence part: JS-G-alpha(q(z|x) || p(z)) per latent dimension; closed form, so like
    its base it refuses a prior that is not one diagonal Gaussian."""

    part = "gjs"
    measures_kl = False  # training penalises JS-G; evaluation still reports the true KL

    def __init__(self, ctx: BuildContext):
        super().__init__(ctx)
        self.alpha = float(ctx.hp["alpha"])
        self.dual = bool(ctx.hp["dual"])

    def forward(self, q: Distribution, z: Tensor, p: Distribution) -> Tensor:
        return skew_geometric_js(as_diagonal_gaussian(q), as_diagonal_gaussian(p), self.alpha, self.dual)
