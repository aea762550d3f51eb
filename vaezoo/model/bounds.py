"""Importance-weighted bounds on log p(x), shared by evaluation and the IWAE objective.

log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x),  z_k ~ q(z|x).
log p(x) >= E[log (1/K) sum_k w_k], with equality in the limit K -> infinity; K = 1 is the ELBO.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from vaezoo.model.distributions import DiagonalGaussian
from vaezoo.model.vae import VAE


def log_weights(model: VAE, x: Tensor, k: int, q: DiagonalGaussian | None = None) -> Tensor:
    """[k, B] log importance weights of k reparameterised samples per image."""
    q = model.encoder(x) if q is None else q
    z = q.rsample((k,))
    log_px = model.likelihood.log_prob(x, model.decoder(z))
    return log_px + model.prior.log_prob(z) - q.log_prob(z)


def log_mean_exp(log_w: Tensor, dim: int = 0) -> Tensor:
    """log (1/K) sum_k exp(log_w_k), computed stably."""
    return torch.logsumexp(log_w, dim) - math.log(log_w.shape[dim])
