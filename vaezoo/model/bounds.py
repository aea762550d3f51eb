"""Importance-weighted bounds on log p(x), shared by evaluation and the IWAE objective.

log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x),  z_k ~ q(z|x)  (for a hierarchy, the sums over
its groups). log p(x) >= E[log (1/K) sum_k w_k], with equality in the limit K -> infinity; K = 1
is the ELBO.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from vaezoo.model.structure import Structure

#: Decoded images per decoder call; bounds memory when k samples of a whole batch are decoded.
SAMPLES_PER_PASS = 4096


def log_mean_exp(log_w: Tensor, dim: int = 0) -> Tensor:
    """log (1/K) sum_k exp(log_w_k), computed stably."""
    return torch.logsumexp(log_w, dim) - math.log(log_w.shape[dim])


@torch.no_grad()
def importance_log_likelihood(model: Structure, x: Tensor, k: int) -> Tensor:
    """[B] estimate of log p(x) from k importance samples per image, drawn in chunks of bounded size.

    With k = 1 it is a one-sample ELBO; it rises towards log p(x) as k grows.
    """
    draw = model.importance_draw(x)
    chunk = max(1, SAMPLES_PER_PASS // x.shape[0])
    log_w = torch.cat([sum(draw(min(chunk, k - done))) for done in range(0, k, chunk)])
    return log_mean_exp(log_w)
