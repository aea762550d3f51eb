"""The implementations, imported only when a model is built."""

import math

from torch import nn

from vaezoo.model import DiagonalGaussian


class MLPEncoder(nn.Module):
    gaussian_posterior = True  # q(z|x) is a DiagonalGaussian: closed-form KLs apply

    def __init__(self, ctx):
        super().__init__()
        pixels, hidden = math.prod(ctx.input_shape), ctx.hp["hidden"]
        self.trunk = nn.Sequential(nn.Flatten(), nn.Linear(pixels, hidden), nn.ReLU(),
                                   nn.Linear(hidden, hidden), nn.ReLU())
        self.mu = nn.Linear(hidden, ctx.latent_dim)
        self.logvar = nn.Linear(hidden, ctx.latent_dim)

    def forward(self, x):
        h = self.trunk(x)
        return DiagonalGaussian(self.mu(h), self.logvar(h))


class MLPDecoder(nn.Module):
    def __init__(self, ctx):
        super().__init__()
        # as many output channels as the likelihood asks for (one per data channel for Bernoulli pixels)
        self.shape, hidden = (ctx.output_channels, *ctx.input_shape[1:]), ctx.hp["hidden"]
        self.net = nn.Sequential(nn.Linear(ctx.latent_dim, hidden), nn.ReLU(),
                                 nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, math.prod(self.shape)))

    def forward(self, z):
        return self.net(z).view(*z.shape[:-1], *self.shape)
