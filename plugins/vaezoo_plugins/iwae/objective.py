"""The IWAE objective: minus the k-sample importance-weighted bound, averaged over the batch.

Autograd through logsumexp gives the estimator of Burda et al.: sum_k w~_k grad log w_k with the
normalised weights w~ = softmax(log w) held constant, so no weight is differentiated.
"""

from __future__ import annotations

import torch
from torch import Tensor

from vaezoo.model.bounds import log_mean_exp, log_weights
from vaezoo.model.parts import BuildContext, Objective, Terms
from vaezoo.model.vae import VAE


class ImportanceWeightedBound(Objective):
    """loss = -mean_x log (1/k) sum_k w_k; also logs the k-sample average ELBO and its KL."""

    def __init__(self, ctx: BuildContext):
        super().__init__()
        self.k = int(ctx.hp["k"])

    def forward(self, model: VAE, x: Tensor, step: int) -> Terms:
        q = model.encoder(x)
        log_w = log_weights(model, x, self.k, q)
        loss = -log_mean_exp(log_w).mean()
        with torch.no_grad():
            neg_elbo = -log_w.mean()
            kl = model.divergence(q, q.rsample(), model.prior).reshape(len(x), -1).sum(-1).mean()
        return Terms(loss=loss, neg_elbo=neg_elbo, recon=neg_elbo - kl, kl=kl)
