"""The two-stage VAE of Dai & Wipf 2019: a second VAE fitted to a finished first stage's codes.

The second stage models the first stage's codes z1 ~ q1(z1|x) with its own latent u ~ N(0, I), an
MLP encoder q2(u|z1), an MLP decoder and a Gaussian p2(z1|u) = N(mean(u), gamma I) whose variance
gamma is learnt. Samples: u ~ N(0, I), z1 = mean(u), decoded by the first stage.

The pass reports an ELBO of the whole model in image space, so evaluation compares it with any
other model's: -log p(x) <= -log p1(x|z1) + log q1(z1|x) - log p2(z1) and -log p2(z1) <= -ELBO2(z1).
Group "first-stage" carries log q1(z1|x) - log p2(z1|u) (a one-sample estimate), group
"second-stage" KL(q2(u|z1) || N(0, I)); with the first stage's reconstruction they sum to that
bound. Only the second stage trains (the first is frozen), and the gradient of the bound with
respect to its parameters is that of -ELBO2: training it with the beta-ELBO trains Dai & Wipf's
second stage.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vaezoo.model.distributions import DiagonalGaussian, kl_per_dim
from vaezoo.model.parts import BuildContext
from vaezoo.model.structure import LatentGroup, Pass, Structure


def mlp(inputs: int, width: int, layers: int, outputs: int) -> nn.Sequential:
    modules: list[nn.Module] = []
    for _ in range(layers):
        modules += [nn.Linear(inputs, width), nn.ReLU()]
        inputs = width
    return nn.Sequential(*modules, nn.Linear(inputs, outputs))


class TwoStage(Structure):
    """A second-stage VAE over a frozen first stage (ctx.parent) that has a density and one group."""

    capabilities = frozenset({"elbo", "single-group", "flat-code", "prior-samples"})

    def __init__(self, ctx: BuildContext):
        super().__init__()
        self.parent = ctx.parent
        with torch.no_grad():
            dims = self.parent.representation(torch.zeros(1, *ctx.input_shape)).shape[-1]
        width, layers = int(ctx.hp["width"]), int(ctx.hp["layers"])
        self.encoder = mlp(dims, width, layers, 2 * dims)
        self.decoder = mlp(dims, width, layers, dims)
        self.log_gamma = nn.Parameter(torch.zeros(()))  # gamma = 1 at the start, learnt

    def second_posterior(self, z1: Tensor) -> DiagonalGaussian:
        mu, logvar = self.encoder(z1).chunk(2, -1)
        return DiagonalGaussian(mu, logvar)

    def code_likelihood(self, u: Tensor) -> DiagonalGaussian:
        """p2(z1|u) = N(mean(u), gamma I)."""
        mean = self.decoder(u)
        return DiagonalGaussian(mean, self.log_gamma.expand_as(mean))

    def forward(self, x: Tensor) -> Pass:
        with torch.no_grad():
            first = self.parent(x)
        z1, q1 = first.z, first.q
        q2 = self.second_posterior(z1)
        u = q2.rsample()
        prior = DiagonalGaussian(torch.zeros_like(u[0]), torch.zeros_like(u[0]))
        first_kl = q1.log_prob(z1) - self.code_likelihood(u).log_prob(z1)
        groups = [LatentGroup(z1, first_kl, q1, None, kl_exact=False, name="first-stage"),
                  LatentGroup(u, kl_per_dim(q2, prior), q2, prior, name="second-stage")]
        return Pass(groups, first.out, first.recon, stats={"gamma": self.log_gamma.detach().exp()})

    @torch.no_grad()
    def representation(self, x: Tensor) -> Tensor:
        """The second stage's posterior mean of the first stage's code of x."""
        return self.second_posterior(self.parent.representation(x)).mean

    @torch.no_grad()
    def decode_representation(self, u: Tensor) -> Tensor:
        return self.parent.decode_representation(self.decoder(u))

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        return self.parent.reconstruct(x)

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        anchor = self.log_gamma
        dims = self.decoder[-1].out_features
        return self.decode_representation(torch.randn(n, dims, device=anchor.device, dtype=anchor.dtype))

