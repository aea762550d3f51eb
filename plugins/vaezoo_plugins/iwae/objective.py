"""The IWAE objective: minus the k-sample importance-weighted bound, averaged over the batch.

Autograd through logsumexp gives the estimator of Burda et al.: sum_k w~_k grad log w_k with the
normalised weights w~ = softmax(log w) held constant, so no weight is differentiated.
"""

from __future__ import annotations

from torch import Tensor

from vaezoo.model.bounds import log_mean_exp
from vaezoo.model.parts import BuildContext, Objective, Terms
from vaezoo.model.structure import Structure
from vaezoo_plugins.standard.objectives import squared_norm


class ImportanceWeightedBound(Objective):
    """loss = -mean_x log (1/k) sum_k w_k (+ lambda * sum theta^2), for any model with a density.

    Also logs the k-sample average ELBO and its two terms as k-sample Monte Carlo estimates:
    recon = -mean log p(x|z_k), kl = mean (log q(z_k|x) - log p(z_k)), neg_elbo their sum.
    """

    needs = frozenset({"density"})

    def __init__(self, ctx: BuildContext):
        super().__init__()
        self.k = int(ctx.hp["k"])
        self.l2_weight = float(ctx.hp["lambda"])

    def forward(self, model: Structure, x: Tensor, step: int) -> Terms:
        log_px_z, log_ratio = model.importance_draw(x)(self.k)
        loss = -log_mean_exp(log_px_z + log_ratio).mean()
        if self.l2_weight:
            loss = loss + self.l2_weight * squared_norm(model)
        recon, kl = -log_px_z.detach().mean(), -log_ratio.detach().mean()
        return Terms(loss=loss, neg_elbo=recon + kl, recon=recon, kl=kl)
