"""The DIP regulariser of Kumar et al. 2018: the aggregate posterior's covariance against the identity.

With mu(x), Sigma(x) the posterior's mean and (diagonal) covariance and the batch standing for p(x):
    Cov_i  = Cov_x[mu(x)]                         (DIP-VAE-I)
    Cov_ii = E_x[Sigma(x)] + Cov_x[mu(x)]          (DIP-VAE-II: the covariance of q(z) itself)
    R      = lambda_od * sum_{i != j} Cov_ij^2 + lambda_d * sum_i (Cov_ii - 1)^2
Cov_x is the batch's population covariance (E[mu mu^T] - E[mu] E[mu]^T), as in disentanglement_lib.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vaezoo.model.distributions import as_diagonal_gaussian
from vaezoo.model.parts import BuildContext, Terms
from vaezoo.model.structure import Pass
from vaezoo_plugins.standard.objectives import BetaELBO


def aggregate_covariance(mu: Tensor, logvar: Tensor | None = None) -> Tensor:
    """[D, D] Cov_x[mu] over the batch, plus E_x[diag(exp(logvar))] when `logvar` is given (type ii)."""
    centred = mu - mu.mean(0)
    covariance = centred.T @ centred / mu.shape[0]
    if logvar is not None:
        covariance = covariance + torch.diag(logvar.exp().mean(0))
    return covariance


def dip_regulariser(covariance: Tensor, lambda_od: float, lambda_d: float) -> Tensor:
    """lambda_od * sum of squared off-diagonal entries + lambda_d * sum of (diagonal - 1)^2."""
    diagonal = torch.diagonal(covariance)
    off_diagonal = covariance - torch.diag(diagonal)
    return lambda_od * off_diagonal.pow(2).sum() + lambda_d * (diagonal - 1).pow(2).sum()


class DIPELBO(BetaELBO):
    """loss = the ELBO (KL weight 1, L2 penalty) + the DIP regulariser of the batch's posteriors."""

    needs = BetaELBO.needs | {"single-group", "gaussian-posterior"}

    def __init__(self, ctx: BuildContext):
        super().__init__(ctx, kl_weight=1.0)
        self.second_type = ctx.hp["dip_type"] == "ii"
        self.lambda_od, self.lambda_d = float(ctx.hp["lambda_od"]), float(ctx.hp["lambda_d"])

    def terms(self, model: nn.Module, out: Pass, step: int) -> Terms:
        terms = super().terms(model, out, step)
        q = as_diagonal_gaussian(out.q)
        covariance = aggregate_covariance(q.mu, q.logvar if self.second_type else None)
        regulariser = dip_regulariser(covariance, self.lambda_od, self.lambda_d)
        terms["loss"] = terms["loss"] + regulariser
        terms["dip"] = regulariser
        return terms
