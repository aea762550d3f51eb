"""The residual Normal parameterisation of each posterior relative to its prior (Vahdat & Kautz 2020, eq. 2).

p(z_l | z_<l) = N(mu_p, sigma_p^2) and q(z_l | z_<l, x) = N(mu_p + dmu, (sigma_p * dsigma)^2): the
encoder predicts only how the posterior moves away from the prior, and

    KL(q || p) = 0.5 * (dmu^2 / sigma_p^2 + dsigma^2 - 1) - log dsigma     (per dimension),

which depends on the prior only through sigma_p. Network outputs pass through NVAE's soft clamp
5 tanh(x / 5) before they become a mean or log-scale; the clamp is applied to the prior's parameters
and to (dmu, log dsigma) separately, so q is exactly the product above (NVlabs/NVAE clamps the sums,
which breaks it slightly). Distributions are vaezoo DiagonalGaussians over the flattened group
[B, C * H * W].
"""

from __future__ import annotations

import torch
from torch import Tensor

from vaezoo.model.distributions import DiagonalGaussian

CLAMP = 5.0


def soft_clamp(x: Tensor) -> Tensor:
    """5 tanh(x / 5): the identity near 0, smoothly bounded by +-5."""
    return CLAMP * torch.tanh(x / CLAMP)


def normal(mu: Tensor, log_sigma: Tensor) -> DiagonalGaussian:
    """N(mu, exp(log_sigma)^2) from raw network outputs [B, C, H, W], soft-clamped and flattened."""
    return DiagonalGaussian(soft_clamp(mu).flatten(1), 2 * soft_clamp(log_sigma).flatten(1))


def standard_normal_like(reference: Tensor) -> DiagonalGaussian:
    """N(0, I) with the batch and event shape of the flat `reference` [B, D]."""
    zeros = torch.zeros_like(reference)
    return DiagonalGaussian(zeros, zeros)


class Residual:
    """A posterior as a move (dmu, log dsigma) [B, D] away from a prior p: q = N(mu_p + dmu, (sigma_p dsigma)^2)."""

    def __init__(self, prior: DiagonalGaussian, delta_mu: Tensor, delta_log_sigma: Tensor):
        self.prior = prior
        self.delta_mu = soft_clamp(delta_mu).flatten(1)
        self.delta_log_sigma = soft_clamp(delta_log_sigma).flatten(1)

    def posterior(self) -> DiagonalGaussian:
        return DiagonalGaussian(self.prior.mu + self.delta_mu, self.prior.logvar + 2 * self.delta_log_sigma)

    def kl(self) -> Tensor:
        """KL(q || p) per image [B], in the paper's residual form."""
        per_dim = (0.5 * (self.delta_mu.square() * torch.exp(-self.prior.logvar) + torch.exp(2 * self.delta_log_sigma) - 1)
                   - self.delta_log_sigma)
        return per_dim.sum(-1)
