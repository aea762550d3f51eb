"""The diagonal Gaussian: the currency between encoders, priors and divergences."""

from __future__ import annotations

import math

import torch
from torch import Tensor

LOG_2PI = math.log(2 * math.pi)


class DiagonalGaussian:
    """N(mu, diag(exp(logvar))) over the last dimension; batch dimensions in front."""

    def __init__(self, mu: Tensor, logvar: Tensor):
        self.mu = mu
        self.logvar = logvar

    @property
    def mean(self) -> Tensor:
        return self.mu

    @property
    def std(self) -> Tensor:
        return torch.exp(0.5 * self.logvar)

    def rsample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> Tensor:
        """Reparameterised sample mu + std * eps; `sample_shape` is prepended (for k samples)."""
        shape = torch.Size(sample_shape) + self.mu.shape
        eps = torch.randn(shape, dtype=self.mu.dtype, device=self.mu.device)
        return self.mu + self.std * eps

    def log_prob_per_dim(self, z: Tensor) -> Tensor:
        """log N(z; mu, var) for each latent dimension (broadcasts over leading sample dims)."""
        return -0.5 * (LOG_2PI + self.logvar + (z - self.mu) ** 2 * torch.exp(-self.logvar))

    def log_prob(self, z: Tensor) -> Tensor:
        return self.log_prob_per_dim(z).sum(-1)

    def kl_per_dim(self, other: DiagonalGaussian) -> Tensor:
        """Closed-form KL(self || other) per latent dimension."""
        return 0.5 * (
            other.logvar - self.logvar
            + (torch.exp(self.logvar) + (self.mu - other.mu) ** 2) * torch.exp(-other.logvar)
            - 1.0
        )

    def kl_standard_normal_per_dim(self) -> Tensor:
        """Closed-form KL(self || N(0, I)) per dimension; the common case, without building N(0, I)."""
        return 0.5 * (torch.exp(self.logvar) + self.mu**2 - 1.0 - self.logvar)
