"""The convolutional encoder and decoder of Burgess et al. 2018, for any square power-of-two image size.

log2(H / 4) stride-2 convolutions of 32 channels bring an HxH image down to 32x4x4 = 512 features;
two dense layers of 256 follow, then linear heads for mu and log-variance. The decoder mirrors it.
At 64x64 this is the architecture of Burgess et al. 2018 (appendix A.1: four 4x4 stride-2
convolutions of 32 channels, two dense layers of 256); at 32x32 it has one convolution fewer and
is the reference model conv-fashion (469,173 parameters with 10 latents).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vaezoo.errors import UsageError
from vaezoo.model.distributions import DiagonalGaussian
from vaezoo.model.layers import ConvTranspose2d
from vaezoo.model.parts import BuildContext

HIDDEN = 256
CHANNELS = 32
SMALLEST = 4  # the side of the feature map the convolutions stop at
FEATURES = CHANNELS * SMALLEST * SMALLEST  # 512 whatever the image size
# oneDNN runs these small convolutions faster, forward and backward, with channels_last weights
# (measured +5-7 % per CPU training step); Module.to changes only the 4-d convolution weights.
LAYOUT = torch.channels_last


def conv_layers(ctx: BuildContext) -> tuple[int, int]:
    """(image channels, number of stride-2 layers) for the data shape; other shapes are refused."""
    channels, height, width = ctx.input_shape
    side_ok = height == width and height >= 2 * SMALLEST and height & (height - 1) == 0
    if not side_ok:
        raise UsageError(f"the conv parts need square images whose side is a power of two of at least 8 "
                         f"(8x8, 16x16, 32x32, 64x64, ...); the dataset has {channels}x{height}x{width}")
    return channels, height.bit_length() - SMALLEST.bit_length()


class ConvEncoder(nn.Module):
    """x [B, C, H, H] -> q(z|x); the trunk runs once, two linear heads give mu and log-variance."""

    gaussian_posterior = True
    interface = "x -> q(z|x)"

    def __init__(self, ctx: BuildContext):
        super().__init__()
        channels, layers = conv_layers(ctx)
        convs: list[nn.Module] = []
        for i in range(layers):
            convs += [nn.Conv2d(channels if i == 0 else CHANNELS, CHANNELS, 4, stride=2, padding=1), nn.ReLU()]
        self.trunk = nn.Sequential(
            *convs,
            nn.Flatten(),
            nn.Linear(FEATURES, HIDDEN), nn.ReLU(),
            nn.Linear(HIDDEN, HIDDEN), nn.ReLU(),
        )
        self.features = HIDDEN
        self.mu = nn.Linear(HIDDEN, ctx.latent_dim)
        self.logvar = nn.Linear(HIDDEN, ctx.latent_dim)
        self.to(memory_format=LAYOUT)

    def forward(self, x: Tensor) -> DiagonalGaussian:
        return self.posterior(self.trunk(x))

    def posterior(self, features: Tensor) -> DiagonalGaussian:
        """q(z|x) from the trunk's features [B, F]; wrappers that also use the features (an IAF
        posterior's context) call trunk and posterior themselves."""
        return DiagonalGaussian(self.mu(features), self.logvar(features))


class ConvDecoder(nn.Module):
    """z [..., D] -> logits [..., C', H, H]; leading sample dimensions are kept."""

    interface = "z [..., D] -> outputs"

    def __init__(self, ctx: BuildContext):
        super().__init__()
        _, layers = conv_layers(ctx)
        # in-place ReLUs: exact, and an evaluation that decodes thousands of codes per image then
        # writes each activation once (measured +6 % in importance sampling, neutral in training)
        self.dense = nn.Sequential(
            nn.Linear(ctx.latent_dim, HIDDEN), nn.ReLU(inplace=True),
            nn.Linear(HIDDEN, HIDDEN), nn.ReLU(inplace=True),
            nn.Linear(HIDDEN, FEATURES), nn.ReLU(inplace=True),
        )
        deconvs: list[nn.Module] = []
        for _ in range(layers - 1):
            deconvs += [ConvTranspose2d(CHANNELS, CHANNELS, 4, stride=2, padding=1), nn.ReLU(inplace=True)]
        self.deconv = nn.Sequential(*deconvs, ConvTranspose2d(CHANNELS, ctx.output_channels, 4, stride=2, padding=1))
        self.to(memory_format=LAYOUT)

    def forward(self, z: Tensor) -> Tensor:
        lead = z.shape[:-1]
        h = self.dense(z.reshape(-1, z.shape[-1])).view(-1, CHANNELS, SMALLEST, SMALLEST)
        logits = self.deconv(h)
        return logits.view(*lead, *logits.shape[1:])
