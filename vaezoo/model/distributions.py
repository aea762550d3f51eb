"""Distributions are the currency between parts: anything with the `torch.distributions` contract.

Encoders return q(z|x), priors return p(z), structures hand both to divergences, objectives and
evaluation. `DiagonalGaussian` is the one hand-written class: a `torch.distributions.Distribution`
parameterised by the log-variance the encoders predict, with a closed-form KL registered in
torch's KL registry and kept per latent dimension (logged, and summed without a second pass).
`kl_or_estimate` is how every caller asks for KL(q || p): closed form where torch's registry has
one, else the Monte Carlo estimate log q(z) - log p(z) at a sample, and it says which it gave.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import (
    Distribution,
    Independent,
    Normal,
    TransformedDistribution,
    constraints,
    kl_divergence,
    register_kl,
)

LOG_2PI = math.log(2 * math.pi)


class DiagonalGaussian(Distribution):
    """N(mu, diag(exp(logvar))) over the last dimension (the event); batch dimensions in front."""

    arg_constraints = {"mu": constraints.real, "logvar": constraints.real}
    support = constraints.independent(constraints.real, 1)
    has_rsample = True

    def __init__(self, mu: Tensor, logvar: Tensor):
        if mu.shape != logvar.shape:
            mu, logvar = torch.broadcast_tensors(mu, logvar)
        self.mu, self.logvar = mu, logvar
        super().__init__(self.mu.shape[:-1], self.mu.shape[-1:], validate_args=False)

    @property
    def mean(self) -> Tensor:
        return self.mu

    @property
    def mode(self) -> Tensor:
        return self.mu

    @property
    def variance(self) -> Tensor:
        return torch.exp(self.logvar)

    @property
    def std(self) -> Tensor:
        return torch.exp(0.5 * self.logvar)

    @property
    def stddev(self) -> Tensor:
        return self.std

    def rsample(self, sample_shape: torch.Size | tuple[int, ...] = torch.Size()) -> Tensor:
        """Reparameterised sample mu + std * eps; `sample_shape` is prepended (for k samples)."""
        shape = torch.Size(sample_shape) + self.mu.shape
        eps = torch.randn(shape, dtype=self.mu.dtype, device=self.mu.device)
        return self.mu + self.std * eps

    def log_prob_per_dim(self, z: Tensor) -> Tensor:
        """log N(z; mu, var) for each latent dimension (broadcasts over leading sample dims)."""
        return -0.5 * (LOG_2PI + self.logvar + (z - self.mu) ** 2 * torch.exp(-self.logvar))

    def log_prob(self, z: Tensor) -> Tensor:
        return self.log_prob_per_dim(z).sum(-1)

    def entropy(self) -> Tensor:
        return 0.5 * (1.0 + LOG_2PI + self.logvar).sum(-1)

    def expand(self, batch_shape: torch.Size | tuple[int, ...], _instance=None) -> DiagonalGaussian:
        shape = torch.Size(batch_shape) + self.event_shape
        return DiagonalGaussian(self.mu.expand(shape), self.logvar.expand(shape))

    def kl_per_dim(self, other: DiagonalGaussian) -> Tensor:
        """Closed-form KL(self || other) per latent dimension."""
        return 0.5 * (
            other.logvar - self.logvar
            + (torch.exp(self.logvar) + (self.mu - other.mu) ** 2) * torch.exp(-other.logvar)
            - 1.0
        )


def as_diagonal_gaussian(d: Distribution) -> DiagonalGaussian | None:
    """`d` as a DiagonalGaussian when it is one (or an Independent Normal over one dimension), else None."""
    if isinstance(d, DiagonalGaussian):
        return d
    if isinstance(d, Independent) and isinstance(d.base_dist, Normal) and d.reinterpreted_batch_ndims == 1:
        return DiagonalGaussian(d.base_dist.loc, 2 * torch.log(d.base_dist.scale))
    return None


@register_kl(DiagonalGaussian, DiagonalGaussian)
@register_kl(DiagonalGaussian, Independent)
@register_kl(Independent, DiagonalGaussian)
def _kl_diagonal_gaussians(q: Distribution, p: Distribution) -> Tensor:
    """Closed-form KL between diagonal Gaussians, vaezoo's or torch's Independent Normal over one dimension."""
    mine, other = as_diagonal_gaussian(q), as_diagonal_gaussian(p)
    if mine is None or other is None:
        raise NotImplementedError
    return mine.kl_per_dim(other).sum(-1)


def kl_per_dim(q: Distribution, p: Distribution) -> Tensor | None:
    """KL(q || p) per latent dimension when both are diagonal Gaussians, else None."""
    q_gauss, p_gauss = as_diagonal_gaussian(q), as_diagonal_gaussian(p)
    return None if q_gauss is None or p_gauss is None else q_gauss.kl_per_dim(p_gauss)


def kl_or_estimate(q: Distribution, p: Distribution, z: Tensor) -> tuple[Tensor, bool]:
    """(KL(q || p) per batch element, exact): closed form from torch's registry where it has one,
    else the one-sample Monte Carlo estimate log q(z) - log p(z) at `z`, a sample of q."""
    try:
        return kl_divergence(q, p), True
    except NotImplementedError:
        return q.log_prob(z) - p.log_prob(z), False


def central_value(d: Distribution) -> Tensor:
    """The code that stands for `d` in pictures and metrics: its mode where it has one (the mean of a
    Gaussian; a vMF's direction, which lies on its sphere where the mean does not), else its mean; for
    a transformed distribution (a flow posterior), its base's central value carried through the transforms."""
    if isinstance(d, TransformedDistribution):
        value = central_value(d.base_dist)
        for transform in d.transforms:
            value = transform(value)
        return value
    try:
        return d.mode
    except NotImplementedError:
        return d.mean
