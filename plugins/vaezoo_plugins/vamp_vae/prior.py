"""The VampPrior p(z) = (1/K) sum_k q(z|u_k); it has no closed-form KL (use monte-carlo-kl)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from vaezoo.model.distributions import DiagonalGaussian
from vaezoo.model.parts import BuildContext, Prior

#: Pseudo-inputs start as near-black images, N(0.05, 0.01) per pixel as in the paper's code.
INIT_MEAN, INIT_STD = 0.05, 0.01


class VampPrior(Prior):
    """A mixture of the encoder's posteriors at K pseudo-inputs u_k, learnt with the model.

    The encoder is the model's own (ctx.built["encoder"]); it is held in a tuple so that its
    weights are not registered (and saved) a second time under the prior.
    """

    def __init__(self, ctx: BuildContext):
        super().__init__()
        self._encoder = (ctx.built["encoder"],)
        k = int(ctx.hp["pseudo_inputs"])
        self.pseudo_inputs = nn.Parameter(INIT_MEAN + INIT_STD * torch.randn(k, *ctx.input_shape))

    def components(self) -> DiagonalGaussian:
        """q(z|u_k) for every pseudo-input, [K, D]; pixels are kept in [0, 1] like real images."""
        return self._encoder[0](self.pseudo_inputs.clamp(0.0, 1.0))

    def log_prob(self, z: Tensor) -> Tensor:
        log_pk = self.components().log_prob(z.unsqueeze(-2))  # [..., K]
        return torch.logsumexp(log_pk, -1) - math.log(log_pk.shape[-1])

    def sample(self, n: int) -> Tensor:
        c = self.components()
        pick = torch.randint(len(c.mu), (n,), device=c.mu.device)
        return DiagonalGaussian(c.mu[pick], c.logvar[pick]).rsample()
