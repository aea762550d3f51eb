"""NVAE's residual cells (Vahdat & Kautz 2020, figure 3), each ending in squeeze-and-excitation.

Every cell returns skip(x) + 0.1 * branch(x), as NVlabs/NVAE does. A cell keeps the resolution
(`resample=0`), halves it while doubling the channels (`-1`, down), or doubles it while halving them
(`+1`, up); the skip path then changes shape too. Swish is torch's SiLU; squeeze-and-excitation is
torchvision's, with max(C / 16, 4) hidden units as in NVlabs/NVAE.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import SqueezeExcitation

from vaezoo_plugins.nvae.spectral import Conv2d

BN_MOMENTUM = 0.05  # NVlabs/NVAE's; the running statistics follow the training weights closely
RESIDUAL_SCALE = 0.1
DOWN, SAME, UP = -1, 0, 1


def batchnorm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, momentum=BN_MOMENTUM)


def squeeze_excitation(channels: int) -> SqueezeExcitation:
    return SqueezeExcitation(channels, max(channels // 16, 4))


def resampled_channels(channels: int, resample: int) -> int:
    return {DOWN: 2 * channels, SAME: channels, UP: channels // 2}[resample]


class Skip(nn.Module):
    """The skip path: identity, or for a resampling cell the cheapest map to the new shape.

    Down: Swish then a 2x2 stride-2 convolution (NVlabs/NVAE's "factorized reduce", four stride-2
    1x1 convolutions on the four pixel offsets, is this with a block-diagonal weight). Up: bilinear
    upsampling and a 1x1 convolution (NVlabs/NVAE's), computed in the cheaper order.
    """

    def __init__(self, channels: int, resample: int):
        super().__init__()
        out = resampled_channels(channels, resample)
        self.resample = resample
        self.conv = None if resample == SAME else Conv2d(channels, out, 2 if resample == DOWN else 1,
                                                         stride=2 if resample == DOWN else 1)

    def forward(self, x: Tensor) -> Tensor:
        if self.resample == DOWN:
            return self.conv(F.silu(x))
        if self.resample == UP:  # the 1x1 conv first: it commutes with the interpolation and halves the channels
            return F.interpolate(self.conv(x), scale_factor=2, mode="bilinear", align_corners=True)
        return x


class EncoderCell(nn.Module):
    """The bottom-up residual cell: BN-Swish-conv3x3-BN-Swish-conv3x3-SE (the first conv strides when going down)."""

    def __init__(self, channels: int, resample: int = SAME):
        super().__init__()
        out = resampled_channels(channels, resample)
        self.skip = Skip(channels, resample)
        self.branch = nn.Sequential(
            batchnorm(channels), nn.SiLU(),
            Conv2d(channels, out, 3, stride=2 if resample == DOWN else 1, padding=1),
            batchnorm(out), nn.SiLU(),
            Conv2d(out, out, 3, padding=1),
            squeeze_excitation(out),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.skip(x) + RESIDUAL_SCALE * self.branch(x)


class GenerativeCell(nn.Module):
    """The top-down inverted residual cell: BN-conv1x1-BN-Swish-dwconv5x5-BN-Swish-conv1x1-BN-SE.

    The 1x1 convolution expands the channels `expand` times, the depthwise 5x5 convolution mixes
    space cheaply, the last 1x1 projects back. An up cell upsamples (nearest) first in NVlabs/NVAE;
    here just before the depthwise convolution: BN, the 1x1 convolution and Swish act on each pixel
    alone and nearest upsampling copies pixels (leaving batch statistics unchanged), so the cell is
    the same function with a quarter of their cost (only BN's running variance differs, by its
    unbiased correction n / (n - 1) over four times fewer pixels: about 1e-5 relative).
    """

    def __init__(self, channels: int, expand: int, resample: int = SAME, kernel: int = 5):
        super().__init__()
        if resample == DOWN:
            raise ValueError("generative cells keep or raise the resolution")
        out, hidden = resampled_channels(channels, resample), channels * expand
        self.skip = Skip(channels, resample)
        self.branch = nn.Sequential(
            batchnorm(channels),
            Conv2d(channels, hidden, 1, bias=False), batchnorm(hidden), nn.SiLU(),
            *([nn.Upsample(scale_factor=2, mode="nearest")] if resample == UP else []),
            Conv2d(hidden, hidden, kernel, padding=kernel // 2, groups=hidden, bias=False), batchnorm(hidden), nn.SiLU(),
            Conv2d(hidden, out, 1, bias=False), batchnorm(out),
            squeeze_excitation(out),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.skip(x) + RESIDUAL_SCALE * self.branch(x)
