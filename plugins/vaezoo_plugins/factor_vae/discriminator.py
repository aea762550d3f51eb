"""FactorVAE's discriminator: tells samples of q(z) from samples of prod_d q(z_d).

With D(z) the probability that z comes from q(z), log D / (1 - D) estimates log q(z) / prod_d q(z_d),
so its mean over the batch estimates the total correlation KL(q(z) || prod_d q(z_d)).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vaezoo.model.parts import BuildContext, Terms
from vaezoo.model.structure import Pass
from vaezoo_plugins.standard.objectives import BetaELBO

HIDDEN_LAYERS = 5  # 6 linear layers in all, as in the paper


def permute_dims(z: Tensor) -> Tensor:
    """A sample of prod_d q(z_d): each latent dimension shuffled across the batch independently."""
    b, d = z.shape
    order = torch.argsort(torch.rand(b, d, device=z.device), dim=0)
    return torch.gather(z, 0, order)


def discriminator(latent_dim: int, hidden: int) -> nn.Sequential:
    """An MLP z -> 2 logits (column 0: "from q(z)", column 1: "permuted")."""
    layers: list[nn.Module] = []
    width = latent_dim
    for _ in range(HIDDEN_LAYERS):
        layers += [nn.Linear(width, hidden), nn.LeakyReLU(0.2)]
        width = hidden
    return nn.Sequential(*layers, nn.Linear(width, 2))


class DiscriminatorTCELBO(BetaELBO):
    """loss = E[-log p(x|z)] + KL + gamma * TC_hat; aux_loss trains the discriminator on detached z.

    As in Algorithm 2 of Kim & Mnih, the discriminator's "permuted" class comes from an independent
    second batch (the trainer appends one: `extra_batches`), encoded without gradient; negatives
    "same-batch" permutes the step's own codes instead (the first wave's behaviour).
    """

    needs = BetaELBO.needs | {"single-group"}

    def __init__(self, ctx: BuildContext):
        super().__init__(ctx, kl_weight=1.0)
        hp = ctx.hp
        self.gamma = float(hp["gamma"])
        self.discriminator = discriminator(ctx.latent_dim, int(hp["disc_hidden"]))
        self.adam = {"lr": float(hp["disc_lr"]), "betas": (float(hp["disc_beta1"]), float(hp["disc_beta2"]))}
        self.extra_batches = 1 if hp["negatives"] == "independent" else 0

    def total_correlation(self, z: Tensor) -> Tensor:
        """Batch mean of the discriminator's log-ratio log D(z) / (1 - D(z))."""
        logits = self.discriminator(z)
        return (logits[:, 0] - logits[:, 1]).mean()

    def discriminator_loss(self, z: Tensor, z_other: Tensor | None = None) -> Tensor:
        """Cross-entropy of telling z (class 0) from a dimension-wise permutation (class 1) of `z_other`
        (codes of an independent batch; z itself when None)."""
        z = z.detach()
        negatives = permute_dims((z if z_other is None else z_other).detach())
        logits = self.discriminator(torch.cat([z, negatives]))
        labels = torch.cat([z.new_zeros(len(z), dtype=torch.long), z.new_ones(len(negatives), dtype=torch.long)])
        return F.cross_entropy(logits, labels)

    def forward(self, model: nn.Module, x: Tensor, step: int) -> Terms:
        x, other = x.chunk(2) if self.extra_batches else (x, None)
        out = model(x)
        terms = self.terms(model, out, step)
        with torch.no_grad():
            z_other = None if other is None else model(other).z
        terms["aux_loss"] = self.discriminator_loss(out.z, z_other)
        return terms

    def terms(self, model: nn.Module, out: Pass, step: int) -> Terms:
        terms = super().terms(model, out, step)
        tc = self.total_correlation(out.z)
        terms["loss"] = terms["loss"] + self.gamma * tc
        terms["tc"] = tc
        return terms

    def aux_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.discriminator.parameters(), **self.adam)
