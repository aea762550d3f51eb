"""The importance-weighted family: IWAE's bound and the three of Rainforth et al. 2018 built on it.

With log w_k = log p(x, z_k) - log q(z_k|x) for S samples per image:
    IWAE_K          log (1/K) sum_k w_k                           K = 1: the ELBO
    MIWAE_{M,K}     (1/M) sum_m log (1/K) sum_k w_mk              M = 1: IWAE_K;  K = 1: the ELBO (M samples)
    CIWAE_{beta,K}  beta ELBO_K + (1 - beta) IWAE_K               beta = 1: the ELBO;  beta = 0: IWAE_K
    PIWAE_{M,K}     the generative model climbs IWAE_{MK}, the inference network MIWAE_{M,K}
Autograd through logsumexp gives Burda et al.'s estimator: sum_k w~_k grad log w_k with the
normalised weights w~ = softmax(log w) held constant, so no weight is differentiated.
"""

from __future__ import annotations

import torch
from torch import Tensor

from vaezoo.model.bounds import log_mean_exp
from vaezoo.model.parts import BuildContext, Objective, Terms
from vaezoo.model.structure import Structure
from vaezoo_plugins.standard.objectives import squared_norm


class ImportanceWeightedBound(Objective):
    """loss = -mean_x IWAE_k (+ lambda * sum theta^2), for any model with a density.

    Also logs the average ELBO over the samples and its two terms as Monte Carlo estimates:
    recon = -mean log p(x|z_k), kl = mean (log q(z_k|x) - log p(z_k)), neg_elbo their sum.
    Subclasses change `samples` and `bound`.
    """

    needs = frozenset({"density"})

    def __init__(self, ctx: BuildContext):
        super().__init__()
        self.k = int(ctx.hp["k"])
        self.l2_weight = float(ctx.hp["lambda"])

    @property
    def samples(self) -> int:
        return self.k

    def bound(self, log_w: Tensor) -> Tensor:
        """[B] the objective's bound from log weights [samples, B]."""
        return log_mean_exp(log_w)

    def forward(self, model: Structure, x: Tensor, step: int) -> Terms:
        log_px_z, log_ratio = model.importance_draw(x)(self.samples)
        loss = self.loss(model, log_px_z + log_ratio)
        if self.l2_weight:
            loss = loss + self.l2_weight * squared_norm(model)
        recon, kl = -log_px_z.detach().mean(), -log_ratio.detach().mean()
        return Terms(loss=loss, neg_elbo=recon + kl, recon=recon, kl=kl)

    def loss(self, model: Structure, log_w: Tensor) -> Tensor:
        return -self.bound(log_w).mean()


class MultiplyImportanceWeightedBound(ImportanceWeightedBound):
    """MIWAE: the mean of M independent K-sample IWAE bounds."""

    def __init__(self, ctx: BuildContext):
        super().__init__(ctx)
        self.m = int(ctx.hp["m"])

    @property
    def samples(self) -> int:
        return self.m * self.k

    def bound(self, log_w: Tensor) -> Tensor:
        return log_mean_exp(log_w.view(self.m, self.k, -1), dim=1).mean(0)


class CombinationImportanceWeightedBound(ImportanceWeightedBound):
    """CIWAE: beta * (the mean of the K one-sample ELBOs) + (1 - beta) * IWAE_K, on the same samples."""

    def __init__(self, ctx: BuildContext):
        super().__init__(ctx)
        self.beta = float(ctx.hp["ciwae_beta"])

    def bound(self, log_w: Tensor) -> Tensor:
        return self.beta * log_w.mean(0) + (1 - self.beta) * log_mean_exp(log_w)


class PartiallyImportanceWeightedBound(MultiplyImportanceWeightedBound):
    """PIWAE: IWAE_{MK} for the generative model, MIWAE_{M,K} for the inference network, on one set of samples.

    One loss carries both gradients: the IWAE loss, minus a term linear in the inference network's
    parameters whose gradient swaps IWAE's for MIWAE's there (its value is added back detached, so
    the logged loss is -IWAE_{MK}).
    """

    needs = frozenset({"density", "inference-network"})

    def loss(self, model: Structure, log_w: Tensor) -> Tensor:
        generative = -log_mean_exp(log_w).mean()
        inference = -super().bound(log_w).mean()
        params = [p for p in model.inference_parameters() if p.requires_grad]
        swaps = torch.autograd.grad(generative - inference, params, retain_graph=True, allow_unused=True)
        linear = sum((g.detach() * p).sum() for g, p in zip(swaps, params) if g is not None)
        return generative - linear + linear.detach()
