"""Deterministic autoencoders: a point code z = f(x) instead of a posterior (WAE, RAE).

A `PointEncoder` is a registered encoder's trunk with one linear head to the code; the
`Autoencoder` structure decodes the code directly. Its latent group has no posterior, no prior and
no KL, so it has no ELBO and no density: evaluation reports the reconstruction and says the rest
does not apply, and samples come from a post-hoc sampler fitted to the codes.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor, nn

from vaezoo.errors import NotApplicable
from vaezoo.model.parts import BuildContext
from vaezoo.model.structure import LatentGroup, Pass, Structure
from vaezoo_plugins.standard.trunks import base_trunk


class PointEncoder(nn.Module):
    """x -> z: the trunk of the registered encoder `base_encoder` and one linear head."""

    interface = "x -> a point z"
    wraps_base_encoder = True

    def __init__(self, ctx: BuildContext):
        super().__init__()
        self.trunk, features = base_trunk(ctx)
        self.code = nn.Linear(features, ctx.latent_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.code(self.trunk(x))


class Autoencoder(Structure):
    """x -> z = encoder(x) -> decoder -> likelihood; one group holding the code."""

    capabilities = frozenset({"single-group", "flat-code", "inference-network"})

    def __init__(self, ctx: BuildContext):
        super().__init__()
        self.encoder = ctx.part("encoder")
        self.decoder = ctx.part("decoder")
        self.likelihood = ctx.part("likelihood")

    def forward(self, x: Tensor) -> Pass:
        z = self.encoder(x)
        out = self.decoder(z)
        return Pass([LatentGroup(z, None)], out, -self.likelihood.log_prob(x, out))

    def inference_parameters(self) -> Iterator[nn.Parameter]:
        return self.encoder.parameters()

    @torch.no_grad()
    def representation(self, x: Tensor) -> Tensor:
        return self.encoder(x)

    @torch.no_grad()
    def decode_representation(self, z: Tensor) -> Tensor:
        return self.likelihood.mean(self.decoder(z))

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        return self.decode_representation(self.encoder(x))

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        raise NotApplicable("a deterministic autoencoder has no prior to sample; fit a post-hoc sampler to its "
                            "codes (docs/zoo.md)")
