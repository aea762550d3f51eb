"""The single-latent structure: x -> q(z|x) -> one reparameterised z -> p(x|z), the VAE of Kingma & Welling."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor, nn

from vaezoo.model.bounds import decoded_in_pieces
from vaezoo.model.distributions import central_value
from vaezoo.model.parts import BuildContext
from vaezoo.model.structure import ImportanceDraw, Pass, Structure, latent_group


class SingleLatent(Structure):
    """One latent group from the variant's encoder, decoder, likelihood, prior and divergence.

    Provides a density, a flat code and prior samples whatever the encoder's distribution (a flow
    posterior included); "gaussian-posterior" when the encoder declares `gaussian_posterior`.
    """

    graph_safe = True  # its pass is the same tensor operations every time (vaezoo.training.graphs)

    def __init__(self, ctx: BuildContext):
        super().__init__()
        self.encoder = ctx.part("encoder")
        self.decoder = ctx.part("decoder")
        self.likelihood = ctx.part("likelihood")
        self.prior = ctx.part("prior")
        self.divergence = ctx.part("divergence")
        capabilities = {"density", "elbo", "single-group", "flat-code", "prior-samples", "inference-network"}
        if getattr(self.encoder, "gaussian_posterior", False):
            capabilities.add("gaussian-posterior")
        self.capabilities = frozenset(capabilities)

    def forward(self, x: Tensor) -> Pass:
        q = self.encoder(x)
        z = q.rsample()
        out = self.decoder(z)
        recon = -self.likelihood.log_prob(x, out)
        return Pass([latent_group(q, z, self.prior(), self.divergence)], out, recon)

    def importance_draw(self, x: Tensor) -> ImportanceDraw:
        """Encodes x once; each draw decodes k fresh samples of the same posterior (in cache-sized pieces)."""
        q, p = self.encoder(x), self.prior()

        def log_likelihood(images: Tensor, z: Tensor) -> Tensor:
            return self.likelihood.log_prob(images, self.decoder(z))

        def draw(k: int) -> tuple[Tensor, Tensor]:
            z = q.rsample((k,))
            return decoded_in_pieces(log_likelihood, x, z), p.log_prob(z) - q.log_prob(z)

        return draw

    def inference_parameters(self) -> Iterator[nn.Parameter]:
        return self.encoder.parameters()

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        return self.decode_representation(self.representation(x))

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        return self.decode_representation(self.prior().sample((n,)))

    @torch.no_grad()
    def representation(self, x: Tensor) -> Tensor:
        """The posterior mean (for a flow posterior, its base mean carried through the flow)."""
        return central_value(self.encoder(x))

    @torch.no_grad()
    def decode_representation(self, z: Tensor) -> Tensor:
        return self.likelihood.mean(self.decoder(z))

