"""NVAE's training objective: the ELBO with a KL warm-up and, during the warm-up, KL balancing across groups.

loss = E[-log p(x|z)] + beta(step) * sum_l gamma_l KL_l + the structure's own terms + lambda * sum(theta^2)

beta(step) = max(min(step / warmup_steps, 1), beta_min) rises linearly from (nearly) 0 to 1 (Vahdat &
Kautz 2020, appendix A; NVlabs/NVAE's kl_coeff with its negligible constant phase left out). While
beta < 1, gamma_l = G * c_l / sum_k c_k with c_l = (E_batch |KL_l| + 0.01) / s_l, s_l the number of
latent variables in group l: coefficients that average to 1 over the G groups and favour the groups
that carry more information per variable, so no group's latent variables are switched off early
(NVlabs/NVAE's kl_balancer; the paper's "proportional to the size" is a typo for inversely
proportional, per its first author in NVlabs/NVAE issue 26). Afterwards every gamma_l is 1: the
loss is the ELBO. The coefficients are constants in the gradient. The logged "kl" and "neg_elbo"
are always the true ones.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vaezoo.model.parts import BuildContext, Terms
from vaezoo.model.structure import Pass
from vaezoo_plugins.standard.objectives import BetaELBO

#: Added to each group's average KL before balancing (NVlabs/NVAE's): a group at zero KL still gets a weight.
BALANCE_FLOOR = 0.01


def kl_warmup(step: int, warmup_steps: int, minimum: float) -> float:
    """beta(step): linear from 0 at step 0 to 1 at `warmup_steps`, never below `minimum`."""
    return max(min(step / warmup_steps, 1.0), minimum) if warmup_steps else 1.0


def kl_balancing(kl: Tensor, sizes: Tensor) -> Tensor:
    """gamma [G] from per-image group KLs [B, G] and group sizes [G]: proportional to each group's
    average KL per latent variable, averaging to 1 over the groups."""
    per_variable = (kl.abs().mean(0) + BALANCE_FLOOR) / sizes
    return per_variable * (kl.shape[1] / per_variable.sum())


class NVAEObjective(BetaELBO):
    """The beta-ELBO with NVAE's KL warm-up and KL balancing; works on any structure's latent groups."""

    def __init__(self, ctx: BuildContext):
        super().__init__(ctx, kl_weight=0.0)
        self.warmup_steps = int(ctx.hp["kl_warmup_steps"])
        self.minimum = float(ctx.hp["kl_min_coeff"])
        self.balance = bool(ctx.hp["kl_balance"])

    def terms(self, model: nn.Module, out: Pass, step: int) -> Terms:
        terms = super().terms(model, out, step)
        kl = torch.stack([group.kl_per_image for group in out.groups], 1)  # [B, G]
        beta = kl_warmup(step, self.warmup_steps, self.minimum)
        if self.balance and beta < 1.0:
            sizes = torch.tensor([group.sample.shape[-1] for group in out.groups], dtype=kl.dtype, device=kl.device)
            kl = kl * kl_balancing(kl.detach(), sizes)
        terms["loss"] = terms["loss"] + beta * kl.sum(1).mean()
        terms["kl_coeff"] = torch.tensor(beta, device=kl.device)
        return terms
