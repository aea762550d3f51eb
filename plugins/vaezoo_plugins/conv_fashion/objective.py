"""The beta-weighted ELBO with an L2 penalty on every model parameter."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vaezoo.model import Pass
from vaezoo.parts import BuildContext, Objective, Terms


def squared_norm(model: nn.Module) -> Tensor:
    """Sum of squares of all parameters."""
    return torch.stack([p.pow(2).sum() for p in model.parameters()]).sum()


class BetaELBO(Objective):
    """loss = E[-log p(x|z)] + beta * D(q || p) + lambda * sum(theta^2), each per image.

    Variants that add batch-level terms subclass it, pass their own `kl_weight` and extend
    `terms`, so the ELBO bookkeeping and the L2 penalty live only here.
    """

    def __init__(self, ctx: BuildContext, kl_weight: float | None = None):
        super().__init__()
        self.beta = float(ctx.hp["beta"]) if kl_weight is None else float(kl_weight)
        self.l2 = float(ctx.hp["lambda"])

    def forward(self, model: nn.Module, x: Tensor, step: int) -> Terms:
        return self.terms(model, model(x), step)

    def terms(self, model: nn.Module, out: Pass, step: int) -> Terms:
        """The loss terms of one pass `out` of `model` over the batch at global `step`."""
        recon = out.recon.mean()
        kl = out.kl.mean()
        loss = recon + self.beta * kl
        if self.l2:
            loss = loss + self.l2 * squared_norm(model)
        terms = Terms(loss=loss, neg_elbo=recon + kl, recon=recon, kl=kl)
        if out.divergence.dim() == 2:
            terms["kl_per_dim"] = out.divergence.mean(0)
        return terms
