"""JointVAE's model: a continuous Gaussian code and a Gumbel-softmax categorical code, decoded together.

Two latent groups side by side: "continuous" (z_c ~ N(mu, sigma^2), prior N(0, I)) and "discrete"
(z_d ~ RelaxedOneHotCategorical(alpha, temperature) while training, the one-hot of the most likely
category in eval mode, as in Dupont's code; prior uniform over the categories). The decoder reads
[z_c, z_d]. The discrete group's KL is that of the categorical distributions, log K + sum alpha log
alpha, the paper's (the relaxed distributions have no closed form).
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import RelaxedOneHotCategorical

from vaezoo.hparams import HParams
from vaezoo.model.distributions import DiagonalGaussian, kl_per_dim
from vaezoo.model.parts import BuildContext
from vaezoo.model.structure import LatentGroup, Pass, Structure
from vaezoo_plugins.standard.trunks import base_trunk

#: What JointVAE's objective needs: the two groups named here.
CAPABILITY = "continuous-and-discrete-groups"


def categorical_kl(probabilities: Tensor) -> Tensor:
    """KL(Categorical(alpha) || uniform over K) = log K + sum_k alpha_k log alpha_k, per batch row."""
    return math.log(probabilities.shape[-1]) + torch.special.xlogy(probabilities, probabilities).sum(-1)


class JointEncoder(nn.Module):
    """x -> (mu, logvar, category logits): a registered encoder's trunk (`base_encoder`) with three heads."""

    interface = "x -> (mu, log-variance, category logits)"
    wraps_base_encoder = True

    def __init__(self, ctx: BuildContext):
        super().__init__()
        self.trunk, features = base_trunk(ctx)
        self.mu = nn.Linear(features, ctx.latent_dim)
        self.logvar = nn.Linear(features, ctx.latent_dim)
        self.logits = nn.Linear(features, int(ctx.hp["categories"]))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        h = self.trunk(x)
        return self.mu(h), self.logvar(h), self.logits(h)


class JointLatent(Structure):
    """The pass of JointVAE over the variant's encoder (three heads), decoder and likelihood."""

    def __init__(self, ctx: BuildContext):
        super().__init__()
        self.categories = int(ctx.hp["categories"])
        self.temperature = float(ctx.hp["temperature"])
        self.encoder = ctx.part("encoder")
        joint_code = replace(ctx, hp=HParams({**ctx.hp, "latent_dim": ctx.latent_dim + self.categories}))
        self.decoder = joint_code.build("decoder", ctx.parts["decoder"])
        self.likelihood = ctx.part("likelihood")
        self.latent_dim = ctx.latent_dim
        self.capabilities = frozenset({"elbo", "flat-code", "prior-samples", CAPABILITY})

    def _posteriors(self, x: Tensor) -> tuple[DiagonalGaussian, RelaxedOneHotCategorical]:
        mu, logvar, logits = self.encoder(x)
        return (DiagonalGaussian(mu, logvar),
                RelaxedOneHotCategorical(torch.tensor(self.temperature, device=x.device), logits=logits,
                                         validate_args=False))

    def _priors(self, like: Tensor) -> tuple[DiagonalGaussian, RelaxedOneHotCategorical]:
        zeros = like.new_zeros(self.latent_dim)
        uniform = like.new_zeros(self.categories)
        return (DiagonalGaussian(zeros, zeros),
                RelaxedOneHotCategorical(torch.tensor(self.temperature, device=like.device), logits=uniform,
                                         validate_args=False))

    def forward(self, x: Tensor) -> Pass:
        q_c, q_d = self._posteriors(x)
        p_c, p_d = self._priors(x)
        z_c = q_c.rsample()
        z_d = q_d.rsample() if self.training else F.one_hot(q_d.logits.argmax(-1), self.categories).to(x.dtype)
        out = self.decoder(torch.cat([z_c, z_d], -1))
        recon = -self.likelihood.log_prob(x, out)
        groups = [LatentGroup(z_c, kl_per_dim(q_c, p_c), q_c, p_c, name="continuous"),
                  LatentGroup(z_d, categorical_kl(q_d.probs), q_d, p_d, name="discrete")]
        return Pass(groups, out, recon)

    @torch.no_grad()
    def representation(self, x: Tensor) -> Tensor:
        """[mu, one-hot of the most likely category]."""
        q_c, q_d = self._posteriors(x)
        return torch.cat([q_c.mean, F.one_hot(q_d.logits.argmax(-1), self.categories).to(x.dtype)], -1)

    @torch.no_grad()
    def decode_representation(self, z: Tensor) -> Tensor:
        return self.likelihood.mean(self.decoder(z))

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        return self.decode_representation(self.representation(x))

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        anchor = next(self.parameters())
        z_c = torch.randn(n, self.latent_dim, device=anchor.device, dtype=anchor.dtype)
        z_d = F.one_hot(torch.randint(self.categories, (n,), device=anchor.device), self.categories).to(anchor.dtype)
        return self.decode_representation(torch.cat([z_c, z_d], -1))
