"""Maximum mean discrepancy between samples, and the InfoVAE objective that uses it.

The kernel scale c = 2 D is the expected squared distance between two N(0, I) samples in D dims:
    rbf k(a, b) = exp(-|a - b|^2 / c)        imq k(a, b) = c / (c + |a - b|^2)
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vaezoo.errors import UsageError
from vaezoo.model.parts import BuildContext, Terms
from vaezoo.model.structure import Pass
from vaezoo_plugins.standard.objectives import BetaELBO

KERNELS = {
    "rbf": lambda d2, c: torch.exp(-d2 / c),
    "imq": lambda d2, c: c / (c + d2),
}


def _mean_kernel(u: Tensor, v: Tensor, kernel: str, skip_diagonal: bool) -> Tensor:
    """Mean of k(u_i, v_j) over all pairs, or over i != j (u is v) for the unbiased estimate."""
    gram = KERNELS[kernel]((u[:, None] - v[None]).pow(2).sum(-1), 2.0 * u.shape[-1])
    if not skip_diagonal:
        return gram.mean()
    n = len(u)
    return (gram.sum() - gram.diagonal().sum()) / (n * (n - 1))


def mmd(a: Tensor, b: Tensor, kernel: str = "rbf") -> Tensor:
    """The unbiased estimate of MMD^2 between samples a [n, D] and b [m, D] (n, m >= 2)."""
    return _mean_kernel(a, a, kernel, True) + _mean_kernel(b, b, kernel, True) - 2 * _mean_kernel(a, b, kernel, False)


class MMDELBO(BetaELBO):
    """loss = E[-log p(x|z)] + (1 - alpha) KL + (alpha + lambda - 1) MMD(z, samples of p(z))."""

    needs = BetaELBO.needs | {"single-group"}

    def __init__(self, ctx: BuildContext):
        alpha, info_lambda = float(ctx.hp["alpha"]), float(ctx.hp["info_lambda"])
        if alpha + info_lambda - 1 < 0:
            raise UsageError(f"info-vae needs alpha + info_lambda >= 1 (got {alpha} + {info_lambda})")
        super().__init__(ctx, kl_weight=1.0 - alpha)
        self.mmd_weight = alpha + info_lambda - 1
        self.kernel = ctx.hp["kernel"]

    def terms(self, model: nn.Module, out: Pass, step: int) -> Terms:
        terms = super().terms(model, out, step)
        divergence = mmd(out.z, out.groups[0].prior.sample((len(out.z),)), self.kernel)
        terms["loss"] = terms["loss"] + self.mmd_weight * divergence
        terms["mmd"] = divergence
        return terms
