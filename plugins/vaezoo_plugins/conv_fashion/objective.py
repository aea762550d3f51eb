"""The beta-weighted ELBO with an L2 penalty on every model parameter."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vaezoo.parts import BuildContext, Objective, Terms


def squared_norm(model: nn.Module) -> Tensor:
    """Sum of squares of all parameters."""
    return torch.stack([p.pow(2).sum() for p in model.parameters()]).sum()


class BetaELBO(Objective):
    """loss = E[-log p(x|z)] + beta * D(q || p) + lambda * sum(theta^2), each per image."""

    def __init__(self, ctx: BuildContext):
        super().__init__()
        self.beta = float(ctx.hp["beta"])
        self.l2 = float(ctx.hp["lambda"])

    def forward(self, model: nn.Module, x: Tensor, step: int) -> Terms:
        out = model(x)
        recon = out.recon.mean()
        kl = out.kl.mean()
        loss = recon + self.beta * kl
        if self.l2:
            loss = loss + self.l2 * squared_norm(model)
        terms = Terms(loss=loss, neg_elbo=recon + kl, recon=recon, kl=kl)
        if out.divergence.dim() == 2:
            terms["kl_per_dim"] = out.divergence.mean(0)
        return terms
