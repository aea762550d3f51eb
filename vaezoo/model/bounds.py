"""Importance-weighted bounds on log p(x), shared by evaluation and the IWAE objective.

log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x),  z_k ~ q(z|x)  (for a hierarchy, the sums over
its groups). log p(x) >= E[log (1/K) sum_k w_k], with equality in the limit K -> infinity; K = 1
is the ELBO.

Speed on the CPU (docs/performance.md): the estimate streams over the samples, holding only one
draw's weights whatever K, and a structure decodes a draw in pieces of `CACHE_SAMPLES` codes
(`decoded_in_pieces`), whose activations stay in the processor's cache; a draw of thousands of
images at once spent most of its time waiting on memory.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from vaezoo.model.structure import Structure

#: Importance samples of a whole batch drawn per call of a structure's draw: bounds memory, and fixes
#: how the random draws are cut (so the estimate for a seed does not depend on anything else).
SAMPLES_PER_PASS = 4096
#: Codes decoded per decoder call and CPU thread, on the CPU without gradients: the conv decoder's
#: activations for this many images (32 KB each at 32x32x32 floats) stay in the processor's caches
#: (measured on one thread: 256-1,024 alike, 4,096 twice as slow).
CACHE_SAMPLES = 256


def log_mean_exp(log_w: Tensor, dim: int = 0) -> Tensor:
    """log (1/K) sum_k exp(log_w_k), computed stably."""
    return torch.logsumexp(log_w, dim) - math.log(log_w.shape[dim])


def decoded_in_pieces(log_likelihood: Callable[[Tensor, Tensor], Tensor], x: Tensor, z: Tensor) -> Tensor:
    """log p(x|z) [K, B] for codes z [K, B, ...] of images x [B, ...], as log_likelihood(x[b], z[k, b]).

    On the CPU without gradients the codes go through in pieces of at most CACHE_SAMPLES per thread
    (a few samples of the whole batch, or one sample of part of it); otherwise, and when a draw is
    that small already, in one call. The pieces compute the same function of each code: only how
    many images share a decoder call changes, hence at most float rounding.
    """
    k, batch = z.shape[:2]
    piece = CACHE_SAMPLES * torch.get_num_threads()
    if z.device.type != "cpu" or torch.is_grad_enabled() or k * batch <= piece:
        return log_likelihood(x, z)
    images = min(batch, piece)
    samples = max(1, piece // images)
    out = z.new_empty(k, batch)
    for start in range(0, batch, images):
        part = x[start:start + images]
        for first in range(0, k, samples):
            out[first:first + samples, start:start + images] = log_likelihood(
                part, z[first:first + samples, start:start + images])
    return out


@torch.no_grad()
def importance_log_likelihood(model: Structure, x: Tensor, k: int) -> Tensor:
    """[B] estimate of log p(x) from k importance samples per image, drawn SAMPLES_PER_PASS at a time.

    With k = 1 it is a one-sample ELBO; it rises towards log p(x) as k grows. The log-mean-exp
    streams over the draws (a running log-sum-exp), so memory does not grow with k.
    """
    draw = model.importance_draw(x)
    chunk = max(1, SAMPLES_PER_PASS // x.shape[0])
    total = None
    for done in range(0, k, chunk):
        part = torch.logsumexp(sum(draw(min(chunk, k - done))), 0)
        total = part if total is None else torch.logaddexp(total, part)
    return total - math.log(k)
