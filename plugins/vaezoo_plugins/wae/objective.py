"""The WAE-MMD objective of Tolstikhin et al. 2018: reconstruction + lambda * MMD(q(z), p(z)).

The codes are deterministic; the MMD between the batch's codes and as many prior samples uses the
inverse multiquadratic kernel with the paper's scale C = 2 d sigma_z^2 (sigma_z = 1 for N(0, I)),
the same unbiased estimator as InfoVAE's (vaezoo_plugins.info_vae.mmd).
"""

from __future__ import annotations

from torch import Tensor, nn

from vaezoo.model.parts import BuildContext, Objective, Terms
from vaezoo_plugins.info_vae.mmd import mmd
from vaezoo_plugins.standard.objectives import squared_norm


class WassersteinMMD(Objective):
    """loss = E[-log p(x|z)] + mmd_weight * MMD_imq(codes, prior samples) (+ lambda * sum theta^2)."""

    needs = frozenset({"single-group"})

    def __init__(self, ctx: BuildContext):
        super().__init__()
        self.prior = ctx.part("prior")
        self.mmd_weight = float(ctx.hp["mmd_weight"])
        self.l2_weight = float(ctx.hp["lambda"])

    def forward(self, model: nn.Module, x: Tensor, step: int) -> Terms:
        out = model(x)
        recon = out.recon.mean()
        divergence = mmd(out.z, self.prior().sample((len(x),)), "imq")
        loss = recon + self.mmd_weight * divergence
        if self.l2_weight:
            loss = loss + self.l2_weight * squared_norm(model)
        return Terms(loss=loss, recon=recon, mmd=divergence)
