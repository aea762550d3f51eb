"""The VampPrior p(z) = (1/K) sum_k q(z|u_k); it has no closed-form KL (use monte-carlo-kl)."""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Categorical, MixtureSameFamily

from vaezoo.model.parts import BuildContext, PartRef

#: Pseudo-inputs start as near-black images, N(0.05, 0.01) per pixel as in the paper's code.
INIT_MEAN, INIT_STD = 0.05, 0.01


class VampPrior(nn.Module):
    """A mixture of the encoder's posteriors at K pseudo-inputs u_k, learnt with the model.

    The encoder is the model's own, held by reference (PartRef) so its weights are saved once. The
    pseudo-inputs are exempt from the L2 penalty: they are images, not weights (Tomczak's code does
    not decay them either).
    """

    no_weight_decay = ("pseudo_inputs",)

    def __init__(self, ctx: BuildContext):
        super().__init__()
        self._encoder = PartRef(ctx.part("encoder"))
        k = int(ctx.hp["pseudo_inputs"])
        self.pseudo_inputs = nn.Parameter(INIT_MEAN + INIT_STD * torch.randn(k, *ctx.input_shape))

    def forward(self) -> MixtureSameFamily:
        """p(z): the K components q(z|u_k), equally weighted; pixels of u are kept in [0, 1] like real images."""
        components = self._encoder(self.pseudo_inputs.clamp(0.0, 1.0))
        weights = Categorical(logits=components.mean.new_zeros(components.batch_shape), validate_args=False)
        return MixtureSameFamily(weights, components, validate_args=False)
