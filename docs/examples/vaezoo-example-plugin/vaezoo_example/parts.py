"""The implementations, imported only when a model is built."""

import math

from torch import nn

from vaezoo.model.distributions import DiagonalGaussian


class MLPEncoder(nn.Module):
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
        self.shape, hidden = tuple(ctx.input_shape), ctx.hp["hidden"]
        self.net = nn.Sequential(nn.Linear(ctx.latent_dim, hidden), nn.ReLU(),
                                 nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, math.prod(self.shape)))

    def forward(self, z):
        return self.net(z).view(*z.shape[:-1], *self.shape)
