"""The S-VAE's parts: an encoder giving a von Mises-Fisher posterior, and the uniform prior on the sphere."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from vaezoo.model.parts import BuildContext
from vaezoo_plugins.s_vae.distributions import HypersphericalUniform, VonMisesFisher
from vaezoo_plugins.standard.trunks import base_trunk


class VMFEncoder(nn.Module):
    """x -> vMF(mu(x), kappa(x)) on S^(D-1): the trunk of a registered encoder (`base_encoder`), a
    linear head for the direction (normalised) and one for kappa = softplus(.) + 1, as in Davidson
    et al.'s code. The base encoder's own heads are not kept."""

    interface = "x -> q(z|x)"
    wraps_base_encoder = True

    def __init__(self, ctx: BuildContext):
        super().__init__()
        self.trunk, features = base_trunk(ctx)
        self.direction = nn.Linear(features, ctx.latent_dim)
        self.concentration = nn.Linear(features, 1)

    def forward(self, x: Tensor) -> VonMisesFisher:
        h = self.trunk(x)
        mu = self.direction(h)
        return VonMisesFisher(mu / mu.norm(dim=-1, keepdim=True), F.softplus(self.concentration(h)) + 1)


class HypersphericalUniformPrior(nn.Module):
    """p(z) uniform on the unit sphere S^(D-1)."""

    def __init__(self, ctx: BuildContext):
        super().__init__()
        self.latent_dim = ctx.latent_dim

    def forward(self) -> HypersphericalUniform:
        return HypersphericalUniform(self.latent_dim)
