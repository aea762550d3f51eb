"""The prior stage: a gated PixelCNN over a finished model's code grids, so that samples are real.

The model it describes is p(x) = sum_c p_prior(c) p(x | c), with the parent's frozen decoder for
p(x | c). The parent's q(c|x) is one-hot at its nearest codes, so this stage's latent group has
KL(q || p_prior) = -log p_prior(c(x)) exactly, its reconstruction term is the parent's
-log p(x | c(x)), and -ELBO = recon + KL is a true bound that `vaezoo evaluate` reports.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor

from vaezoo.model.parts import BuildContext
from vaezoo.model.structure import LatentGroup, Pass, Structure
from vaezoo_plugins.vq_vae.pixelcnn import GatedPixelCNN


class CodePrior(Structure):
    """A PixelCNN prior over the code grids of a parent with "discrete-codes"; the parent stays frozen."""

    capabilities = frozenset({"prior-samples", "elbo"})

    def __init__(self, ctx: BuildContext):
        super().__init__()
        self.parent = ctx.parent
        self.code_shape = tuple(ctx.parent.code_shape)
        self.pixelcnn = GatedPixelCNN(ctx.parent.num_codes, ctx.hp["prior_channels"], ctx.hp["prior_layers"])

    def forward(self, x: Tensor) -> Pass:
        with torch.no_grad():
            first = self.parent(x)
        codes = first.groups[0].sample
        kl = -self.pixelcnn.log_prob(codes)
        return Pass([LatentGroup(codes, kl, name="codes")], first.out, first.recon)

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        return self.parent.reconstruct(x)

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        return self.parent.decode_codes(self.pixelcnn.sample(n, self.code_shape))

    @torch.no_grad()
    def measures(self, batches: Iterable[Tensor]) -> dict[str, float]:
        """The parent's codebook measures, and the prior's -log p(codes) in bits per grid position
        beside log2 K, the uniform prior's (what the VQ-VAE's own KL charges)."""
        batches = list(batches)
        nats, positions = 0.0, 0
        for x in batches:
            codes = self.parent(x).groups[0].sample
            nats -= float(self.pixelcnn.log_prob(codes).sum())
            positions += codes.numel()
        return {**self.parent.measures(batches), "prior_bits_per_code": nats / max(positions, 1) / math.log(2),
                "uniform_bits_per_code": math.log2(self.parent.num_codes)}
