"""The KL decomposition of Chen et al. 2018 with its two minibatch estimators of log q(z).

E_x KL(q(z|x) || p(z)) = I(x; z) + KL(q(z) || prod_d q(z_d)) + sum_d KL(q(z_d) || p(z_d)),
estimated on a batch of B images from a training set of N: the aggregate density
q(z_i) = (1/N) sum_n q(z_i|x_n) becomes a weighted sum over the batch, sum_j W_ij q(z_i|x_j).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from vaezoo.errors import UsageError
from vaezoo.model.distributions import DiagonalGaussian
from vaezoo.model.parts import BuildContext, Terms
from vaezoo.model.structure import Pass
from vaezoo_plugins.standard.objectives import BetaELBO


def log_weight_matrix(batch_size: int, dataset_size: int, estimator: str) -> Tensor:
    """log W [B, B]: row i weights the batch's posteriors in the estimate of q(z_i).

    mws: every entry 1/B (minibatch weighted sampling). Chen et al. write 1/(N B); that row sum of
    1/N shifts log q(z) by -log N and each log q(z_d) too, so the logged TC by +(D - 1) log N, the
    MI by +log N and the dimension-wise KL by -D log N, while the loss's gradient is the same.
    With 1/B every row sums to 1 as under mss and the logged terms estimate what they are named.
    mss: 1/N on the diagonal (z_i's own image), (N - M)/(N M) for one other image (the last
    stratum) and 1/M for the rest, M = B - 1; each row sums to 1, so the estimate is unbiased.
    """
    n, b = dataset_size, batch_size
    if b < 2 or n < b:
        raise UsageError(f"the {estimator} estimator needs 2 <= batch size <= training-set size (got {b}, {n})")
    if estimator == "mws":
        return torch.full((b, b), -math.log(b), dtype=torch.float64)
    m = b - 1
    weights = torch.full((b, b), 1.0 / m, dtype=torch.float64)
    rows = torch.arange(b)
    weights[rows, (rows + 1) % b] = (n - m) / (n * m)
    weights[rows, rows] = 1.0 / n
    return weights.log()


def log_aggregate(q: DiagonalGaussian, z: Tensor, dataset_size: int, estimator: str) -> tuple[Tensor, Tensor]:
    """Estimates of log q(z_i) and log prod_d q(z_id), [B] each, from the batch's posteriors q [B, D]."""
    log_q_pairs = DiagonalGaussian(q.mu[None], q.logvar[None]).log_prob_per_dim(z[:, None])  # [i, j, D]
    log_w = log_weight_matrix(z.shape[0], dataset_size, estimator).to(z)
    log_qz = torch.logsumexp(log_w + log_q_pairs.sum(-1), dim=1)
    log_qz_product = torch.logsumexp(log_w[..., None] + log_q_pairs, dim=1).sum(-1)
    return log_qz, log_qz_product


def kl_decomposition(q: DiagonalGaussian, z: Tensor, log_pz: Tensor, dataset_size: int,
                     estimator: str) -> dict[str, Tensor]:
    """Batch means of the three terms; they sum to the Monte Carlo KL mean(log q(z|x) - log p(z)).

    q: the batch's posteriors [B, D]; z [B, D] one sample of each; log_pz [B] the prior at z.
    """
    log_qz, log_qz_product = log_aggregate(q, z, dataset_size, estimator)
    log_qzx = q.log_prob(z)
    return {
        "mi": (log_qzx - log_qz).mean(),
        "tc": (log_qz - log_qz_product).mean(),
        "dim_kl": (log_qz_product - log_pz).mean(),
    }


class TCDecomposedELBO(BetaELBO):
    """loss = E[-log p(x|z)] + alpha * MI + beta * TC + gamma * dimension-wise KL."""

    needs = BetaELBO.needs | {"single-group", "gaussian-posterior"}

    def __init__(self, ctx: BuildContext):
        super().__init__(ctx, kl_weight=0.0)
        if ctx.dataset_size is None:
            raise UsageError("the tc-decomposed-elbo objective needs the training-set size")
        self.dataset_size = ctx.dataset_size
        self.estimator = ctx.hp["estimator"]
        self.weights = {"mi": float(ctx.hp["alpha"]), "tc": float(ctx.hp["beta"]), "dim_kl": float(ctx.hp["gamma"])}

    def terms(self, model: nn.Module, out: Pass, step: int) -> Terms:
        terms = super().terms(model, out, step)
        parts = kl_decomposition(out.q, out.z, out.groups[0].prior.log_prob(out.z), self.dataset_size, self.estimator)
        terms["loss"] = terms["loss"] + sum(self.weights[k] * parts[k] for k in parts)
        terms.update(parts)
        return terms
