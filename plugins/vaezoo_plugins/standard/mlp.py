"""Fully connected encoder and decoder, for vectors (datasets of shape [1, 1, D]) or any small input."""

from __future__ import annotations

import math

from torch import Tensor, nn

from vaezoo.model.distributions import DiagonalGaussian
from vaezoo.model.parts import BuildContext


def hidden_layers(inputs: int, ctx: BuildContext) -> list[nn.Module]:
    """mlp_layers dense layers of mlp_width units with ReLUs, taking `inputs` values."""
    width, layers = int(ctx.hp["mlp_width"]), []
    for _ in range(int(ctx.hp["mlp_layers"])):
        layers += [nn.Linear(inputs, width), nn.ReLU()]
        inputs = width
    return layers


class MLPEncoder(nn.Module):
    """x [B, C, H, W] flattened -> hidden layers -> two linear heads, mu and log-variance of q(z|x)."""

    gaussian_posterior = True
    interface = "x -> q(z|x)"

    def __init__(self, ctx: BuildContext):
        super().__init__()
        self.trunk = nn.Sequential(nn.Flatten(), *hidden_layers(math.prod(ctx.input_shape), ctx))
        self.features = int(ctx.hp["mlp_width"] if ctx.hp["mlp_layers"] else math.prod(ctx.input_shape))
        self.mu = nn.Linear(self.features, ctx.latent_dim)
        self.logvar = nn.Linear(self.features, ctx.latent_dim)

    def forward(self, x: Tensor) -> DiagonalGaussian:
        h = self.trunk(x)
        return DiagonalGaussian(self.mu(h), self.logvar(h))


class MLPDecoder(nn.Module):
    """z [..., D] -> hidden layers -> [..., C', H, W] with C' = ctx.output_channels; leading sample
    dimensions are kept."""

    interface = "z [..., D] -> outputs"

    def __init__(self, ctx: BuildContext):
        super().__init__()
        self.shape = (ctx.output_channels, *ctx.input_shape[1:])
        width = ctx.hp["mlp_width"] if ctx.hp["mlp_layers"] else ctx.latent_dim
        self.net = nn.Sequential(*hidden_layers(ctx.latent_dim, ctx), nn.Linear(width, math.prod(self.shape)))

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z).view(*z.shape[:-1], *self.shape)
