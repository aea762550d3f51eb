"""The beta-weighted ELBO with an L2 penalty on every trainable model parameter."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vaezoo.model.building import penalised_parameters
from vaezoo.model.parts import BuildContext, Objective, Terms
from vaezoo.model.structure import Pass


@torch.no_grad()
def squared_norm(model: nn.Module) -> Tensor:
    """Sum of squares of the penalised parameters, as a value (its gradient comes from weight decay)."""
    norms = torch._foreach_norm(penalised_parameters(model))
    return torch.stack(norms).square().sum()


class BetaELBO(Objective):
    """loss = E[-log p(x|z)] + beta * D(q || p) + the structure's own loss terms + lambda * sum(theta^2),
    each per image; works for any structure (every latent group's divergence counts).

    The penalty's gradient is the trainer's weight decay (`l2_weight`), so only its value is added here.
    Variants that add batch-level terms subclass it, pass their own `kl_weight` and extend
    `terms`, so the ELBO bookkeeping and the L2 penalty live only here. The logged "kl" and
    "neg_elbo" are always the true KL and ELBO; a divergence that is not the KL (JS-G) is logged
    as "divergence".
    """

    needs = frozenset({"elbo"})
    graph_safe = True  # the same tensor operations at every step: the trainer may record it as a CUDA graph

    def __init__(self, ctx: BuildContext, kl_weight: float | None = None):
        super().__init__()
        self.beta = float(ctx.hp["beta"]) if kl_weight is None else float(kl_weight)
        self.l2_weight = float(ctx.hp["lambda"])

    def forward(self, model: nn.Module, x: Tensor, step: int) -> Terms:
        return self.terms(model, model(x), step)

    def terms(self, model: nn.Module, out: Pass, step: int) -> Terms:
        """The loss terms of one pass `out` of `model` over the batch at global `step`."""
        recon = out.recon.mean()
        kl = out.kl.mean()
        divergence = kl if out.divergence_is_kl else out.divergence.mean()
        loss = recon + self.beta * divergence
        for value in out.losses.values():
            loss = loss + value
        if self.l2_weight:
            loss = loss + self.l2_weight * squared_norm(model)
        terms = Terms(loss=loss, neg_elbo=recon + kl, recon=recon, kl=kl)
        if not out.divergence_is_kl:
            terms["divergence"] = divergence
        if len(out.groups) == 1 and out.groups[0].kl.dim() == 2:
            terms["kl_per_dim"] = out.groups[0].kl.mean(0)
        elif len(out.groups) > 1:
            terms["kl_per_group"] = torch.stack([group.kl_per_image.mean() for group in out.groups])
        terms.update(out.losses)
        terms.update(out.stats)
        return terms
